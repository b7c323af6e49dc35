"""The job store's promises under a real site's accidents: one scheduler per store whatever the path,
a store deleted or replaced under a running daemon, and exactly once across a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from supervisor.jobs.model import JobState, StoreError
from supervisor.jobs.sqlite_store import JobStore, SchedulerLock
from supervisor.protocol.results import video_identity
from tests.fakes import make_settings, make_video
from tests.test_event_order import run_on_clock
from tests.test_scheduling import jobs
from tests.test_store import HOLD_LOCK

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def held_store(tmp_path):
    db = tmp_path / "state" / "jobs.db"
    db.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "locked"
    yield db, holder
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    holder.stdout.close()


def test_a_symlink_to_the_store_does_not_get_around_the_lock(tmp_path, held_store):
    db, holder = held_store
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "jobs.db").symlink_to(db)
    with pytest.raises(StoreError, match=f"already in use by another scheduler \\(pid {holder.pid}\\)"):
        SchedulerLock(other / "jobs.db").acquire()


def test_deleting_the_lock_note_does_not_get_around_the_lock(held_store):
    db, _ = held_store
    db.with_name("jobs.db.lock").unlink()
    with pytest.raises(StoreError, match="already in use by another scheduler"):
        SchedulerLock(db).acquire()


@pytest.mark.parametrize("accident", ["deleted", "replaced"])
def test_a_store_deleted_or_replaced_under_a_running_daemon_stops_it_loudly(tmp_path, accident):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path)

    async def scenario(sup, clock, launcher):
        await clock.advance(30)  # the job is done; the daemon idles
        if accident == "deleted":
            s.state_db.unlink()
        else:
            replacement = s.state_db.with_name("new.db")
            JobStore.open(replacement).close()
            os.replace(replacement, s.state_db)
        await clock.advance(5)  # two heartbeats

    with capture_logs() as logs:
        code, sup, _ = run_on_clock(s, scenario, daemon=True)
    assert code == 70 and not sup.watchdog.healthy()
    [crashed] = [e for e in logs if e["event"] == "task_crashed"]
    assert f"the job store was {accident} under the running scheduler" in crashed["error"]
    assert str(s.state_db) in crashed["error"]


def _crashed_mid_job(tmp_path, summary_age: float):
    """A job claimed by a scheduler that then died, its worker having written summary.json
    `summary_age` seconds after the claim (negative: before it, an earlier run's)."""
    video = make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path)
    store = JobStore.open(s.state_db)
    [job_id] = store.sync([_video_file(video)]).new
    claimed_at = time.time() - 60
    job = store.claim(job_id, now=claimed_at, result_key="cam/cam_20251114_100000.mp4")
    store.close()
    out = tmp_path / "results" / "cam" / "cam_20251114_100000.mp4"
    out.mkdir(parents=True)
    summary = out / "summary.json"
    identity = video_identity(video, {"VIDEO_SUPERVISOR_JOB_ID": str(job.id)})
    summary.write_text(json.dumps({"video": identity, "processed_seconds": 42.0, "duration_limited": False,
                                   "damage": {"seconds": 1.5}}))
    written = claimed_at + summary_age
    os.utime(summary, (written, written))
    return s, video


def _video_file(path: Path):
    from datetime import datetime

    from supervisor.jobs.discovery import VideoFile

    st = path.stat()
    return VideoFile("cam", datetime(2025, 11, 14, 10), path, st.st_size, st.st_mtime)


def test_a_job_whose_worker_finished_just_before_the_crash_is_done_once_not_run_again(tmp_path):
    s, _ = _crashed_mid_job(tmp_path, summary_age=30)
    with capture_logs() as logs:
        code, _, launcher = run_on_clock(s)
    assert code == 0
    assert launcher.events == []  # never run a second time
    job = jobs(s)["cam_20251114_100000.mp4"]
    assert job.state is JobState.DONE and job.video_seconds == 42.0 and job.damaged_seconds == 1.5
    assert job.attempts == 1  # the attempt that finished counts
    assert job.output.endswith("cam/cam_20251114_100000.mp4/summary.json")
    assert [e["job_id"] for e in logs if e["event"] == "job_done_before_restart"] == [job.id]


def test_a_result_set_from_an_earlier_run_does_not_count_for_the_crashed_attempt(tmp_path):
    s, _ = _crashed_mid_job(tmp_path, summary_age=-3600)  # a reprocess that was cut short
    code, _, launcher = run_on_clock(s)
    assert code == 0
    assert [kind for _, kind, _, _ in launcher.events] == ["start", "end"]
    assert jobs(s)["cam_20251114_100000.mp4"].state is JobState.DONE


def test_a_result_set_of_another_recording_at_that_path_does_not_count(tmp_path):
    s, video = _crashed_mid_job(tmp_path, summary_age=30)
    with open(video, "ab") as f:  # the file changed since: another recording
        f.write(b"more")
    code, _, launcher = run_on_clock(s)
    assert code == 0 and [kind for _, kind, _, _ in launcher.events] == ["start", "end"]
