"""The scheduling core end to end: real fake-worker subprocesses, a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import replace

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs as _capture_logs

from supervisor.config import SchedulerSettings, WorkerSettings
from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from supervisor.scheduling.supervisor import Supervisor
from tests.fakes import engine, fake_worker_command, make_settings, make_video, max_overlap, read_runs


def capture_logs():
    return _capture_logs(processors=[merge_contextvars])


def run_sup(settings, *, daemon=False, during=None, probe=None):
    """Run a supervisor in-process; `during(sup)` runs beside it (a coroutine)."""

    async def main():
        store = JobStore.open(settings.state_db)
        try:
            kwargs = {"probe": probe} if probe is not None else {}
            sup = Supervisor(settings, engine(store), daemon=daemon, **kwargs)
            if during is None:
                return await sup.run(), sup
            side = asyncio.create_task(during(sup))
            code = await sup.run()
            await side
            return code, sup
        finally:
            store.close()

    return asyncio.run(main())


def jobs(settings):
    store = JobStore.open(settings.state_db, readonly=True)
    try:
        return {j.path.name: j for j in store.jobs()}
    finally:
        store.close()


def test_jobs_start_oldest_recording_first(tmp_path):
    names = [f"camera_{c}/camera_{c}_20251114_{h:02d}{m:02d}00.mp4" for c, h, m in
             [(1, 10, 0), (2, 9, 30), (1, 8, 0), (3, 11, 15), (2, 8, 0), (3, 7, 59)]]
    shuffled = names[:]
    random.Random(4).shuffle(shuffled)
    for n in shuffled:
        make_video(tmp_path / "videos" / n)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=1))
    code, _ = run_sup(s)
    assert code == 0
    started = [r["video"].rsplit("_", 2)[-2:] for r in sorted(read_runs(tmp_path / "runs.jsonl"),
                                                               key=lambda r: r["start"])]
    stamps = ["".join(x) for x in started]
    assert stamps == sorted(stamps)
    # Ties (same recording time, two cameras) go in a stable order: camera, then path.
    order = [r["camera"] for r in sorted(read_runs(tmp_path / "runs.jsonl"), key=lambda r: r["start"])]
    assert order[:3] == ["camera_3", "camera_1", "camera_2"]


def test_running_workers_never_exceed_the_limit(tmp_path):
    for i in range(9):
        make_video(tmp_path / "videos" / f"cam/cam_20251114_10{i:02d}00.mp4")
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=3),
                      worker=WorkerSettings(command=fake_worker_command(seconds=0.4, record=tmp_path / "runs.jsonl")))
    code, sup = run_sup(s)
    runs = read_runs(tmp_path / "runs.jsonl")
    assert code == 0 and len(runs) == 9
    assert max_overlap(runs) == 3  # never above, and the limit was used
    assert sup.stats.completed == 9


def test_retries_transient_and_failing_jobs_and_gives_up_on_bad_input(tmp_path):
    for n in ("a", "b", "c"):
        make_video(tmp_path / "videos" / f"cam/{n}_20251114_10000{ord(n) - 97}.mp4")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({
        "a_20251114_100000.mp4": {"exit": [75, 75, 75, 0]},  # transient: not counted against max_attempts
        "b_20251114_100001.mp4": {"exit": [1, 1, 1, 0]},  # fails 3 times: dead
        "c_20251114_100002.mp4": {"exit": [65, 0]},  # bad input: dead at once
    }))
    s = make_settings(tmp_path, worker=WorkerSettings(
        command=fake_worker_command(record=tmp_path / "runs.jsonl", plan=plan), max_attempts=3,
        retry_backoff_seconds=0.05, retry_backoff_max_seconds=0.1))
    with capture_logs() as logs:
        code, sup = run_sup(s)
    assert code == 1  # something went dead
    j = jobs(s)
    assert j["a_20251114_100000.mp4"].state is JobState.DONE and j["a_20251114_100000.mp4"].attempts == 4
    assert j["b_20251114_100001.mp4"].state is JobState.DEAD and j["b_20251114_100001.mp4"].attempts == 3
    assert j["b_20251114_100001.mp4"].last_exit_code == 1
    assert j["c_20251114_100002.mp4"].state is JobState.DEAD and j["c_20251114_100002.mp4"].attempts == 1
    assert "exit 65" in j["c_20251114_100002.mp4"].last_error
    dead = [e for e in logs if e["event"] == "job_dead"]
    assert {e["log_level"] for e in dead} == {"error"} and len(dead) == 2
    assert all("failing on purpose" in e["stderr_tail"] for e in dead)
    retries = [e for e in logs if e["event"] == "job_failed"]
    b_retries = [round(e["retry_in_seconds"], 2) for e in retries if e["video"].endswith("b_20251114_100001.mp4")]
    assert b_retries == [0.05, 0.1]  # exponential backoff, capped at 0.1
    assert sup.stats.dead == 2 and sup.stats.completed == 1


def test_done_videos_are_skipped_next_time_and_rerun_with_reprocess(tmp_path):
    for i in range(3):
        make_video(tmp_path / "videos" / f"cam/cam_20251114_10{i:02d}00.mp4")
    s = make_settings(tmp_path)
    assert run_sup(s)[0] == 0
    assert len(read_runs(tmp_path / "runs.jsonl")) == 3
    assert run_sup(s)[0] == 0
    assert len(read_runs(tmp_path / "runs.jsonl")) == 3  # nothing ran again
    make_video(tmp_path / "videos" / "cam/cam_20251114_100100.mp4", size=999)  # a changed file runs again
    assert run_sup(s)[0] == 0
    assert len(read_runs(tmp_path / "runs.jsonl")) == 4
    assert run_sup(replace(s, reprocess=True))[0] == 0
    assert len(read_runs(tmp_path / "runs.jsonl")) == 7


def test_jobs_left_running_by_a_crash_run_again(tmp_path):
    make_video(tmp_path / "videos" / "cam/cam_20251114_100000.mp4")
    s = make_settings(tmp_path)
    store = JobStore.open(s.state_db)
    from supervisor.jobs.discovery import scan
    from supervisor.protocol.names import PathParser

    found = scan(s.videos_dir, extensions=("mp4",), settle_seconds=0, now=time.time(), parser=PathParser())
    jid = store.sync(found.videos).new[0]
    store.claim(jid, now=time.time())  # ...and then the daemon died
    store.close()
    with capture_logs() as logs:
        code, _ = run_sup(s)
    assert code == 0
    started = next(e for e in logs if e["event"] == "supervisor_started")
    assert started["recovered_running"] == 1
    job = jobs(s)["cam_20251114_100000.mp4"]
    assert job.state is JobState.DONE and job.attempts == 1


def test_recordings_still_being_written_wait_for_the_settle_time(tmp_path):
    make_video(tmp_path / "videos" / "cam/cam_20251114_100000.mp4")
    make_video(tmp_path / "videos" / "cam/cam_20251114_110000.mp4", age=0)
    s = make_settings(tmp_path)
    s = replace(s, discovery=replace(s.discovery, settle_seconds=30))
    with capture_logs() as logs:
        assert run_sup(s)[0] == 0
    assert [r["video"].rsplit("/", 1)[1] for r in read_runs(tmp_path / "runs.jsonl")] == ["cam_20251114_100000.mp4"]
    assert next(e for e in logs if e["event"] == "videos_unsettled")["count"] == 1


def test_daemon_picks_up_new_recordings_and_drains_on_stop(tmp_path):
    make_video(tmp_path / "videos" / "cam/cam_20251114_100000.mp4")
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=2, rescan_seconds=0.2, drain_seconds=0.3),
                      worker=WorkerSettings(command=fake_worker_command(seconds=0.1, record=tmp_path / "runs.jsonl"),
                                            stop_grace_seconds=1))

    async def drive(sup):
        while sup.stats.completed < 1:
            await asyncio.sleep(0.02)
        make_video(tmp_path / "videos" / "cam/cam_20251114_110000.mp4")
        while sup.stats.completed < 2:
            await asyncio.sleep(0.02)
        # A long job, then stop: it is interrupted after the drain period and goes back to the queue.
        sup.settings = replace(sup.settings, worker=replace(
            sup.settings.worker, command=fake_worker_command(seconds=30, record=tmp_path / "runs.jsonl")))
        make_video(tmp_path / "videos" / "cam/cam_20251114_120000.mp4")
        while not sup.running:
            await asyncio.sleep(0.02)
        sup.request_stop()

    with capture_logs() as logs:
        code, _ = run_sup(s, daemon=True, during=drive)
    assert code == 0
    j = jobs(s)
    assert j["cam_20251114_110000.mp4"].state is JobState.DONE
    interrupted = j["cam_20251114_120000.mp4"]
    assert interrupted.state is JobState.QUEUED and interrupted.attempts == 0
    done = next(e for e in logs if e["event"] == "shutdown_complete")
    assert done["stopped"] == 1


def test_a_vanished_video_is_dead_with_a_clear_reason(tmp_path):
    v = make_video(tmp_path / "videos" / "cam/cam_20251114_100000.mp4")
    s = make_settings(tmp_path)

    store = JobStore.open(s.state_db)
    from supervisor.jobs.discovery import scan
    from supervisor.protocol.names import PathParser

    store.sync(scan(s.videos_dir, extensions=("mp4",), settle_seconds=0, now=time.time(),
                    parser=PathParser()).videos)
    store.close()
    v.unlink()
    code, _ = run_sup(s)
    assert code == 1
    job = jobs(s)["cam_20251114_100000.mp4"]
    assert job.state is JobState.DEAD and "the video is gone" in job.last_error
