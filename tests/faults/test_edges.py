"""Exactly once at the edges, on one host: a worker that hangs after its work, descendants that outlive
their job, and a SQLite store whose files are taken from under it. Real daemons, real signals, real files.

Each test ends the same way: every recording is done, its published result set was written by the
attempt the store recorded, and no recording was worked on to completion twice.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from tests.daemon_harness import Daemon, daemon_settings, set_worker_command, wait_gone
from tests.fakes import make_video, read_runs

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def fake_command(tmp: Path, seconds: float, *extra: str) -> list[str]:
    return ["{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
            "--seconds", str(seconds), "--record", str(tmp / "runs.jsonl"), *extra]


def stored_jobs(db: Path) -> list:
    store = JobStore.open(db, readonly=True)
    try:
        return store.jobs()
    finally:
        store.close()


def wait_all_done(db: Path, count: int, daemon: Daemon, timeout: float = 120.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        jobs = stored_jobs(db)
        if len(jobs) == count and all(j.state is JobState.DONE for j in jobs):
            return jobs
        assert daemon.proc.poll() is None, f"the daemon exited {daemon.proc.returncode}: {daemon.stderr_text()}"
        assert time.monotonic() < deadline, Counter(str(j.state) for j in jobs)
        time.sleep(0.1)


def finish_the_tree(settings: Path, db: Path, count: int) -> list:
    """A new daemon runs what is left to the end and stops cleanly; the jobs as it left them."""
    d = Daemon(settings)
    try:
        jobs = wait_all_done(db, count, d)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()
    return jobs


def assert_each_done_once(tmp: Path, videos: list[Path], jobs: list) -> None:
    """One completed worker run per recording, and the result set in place is the one the store recorded
    (its claim), with no staging folder left beside it."""
    runs = read_runs(tmp / "runs.jsonl")
    completed = Counter(r["video"] for r in runs if r["exit"] == 0)
    assert sorted(completed) == sorted(str(v) for v in videos)
    assert max(completed.values()) == 1, {v: n for v, n in completed.items() if n > 1}
    for job in jobs:
        out = tmp / "results" / job.path.relative_to(tmp / "videos")
        summary = json.loads((out / "summary.json").read_text())
        assert summary["video"]["claim"] == job.claim_token, (job.path, summary["video"], job.claim_token)
        assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_a_worker_that_hangs_after_its_done_event_is_done_once_and_not_retried(tmp_path):
    videos = [make_video(tmp_path / "videos" / "cam" / f"cam_20251114_10{i}000.mp4") for i in range(2)]
    settings = daemon_settings(tmp_path, extra="")
    set_worker_command(settings, fake_command(tmp_path, 0.1, "--hang-after-done"))
    settings.write_text(settings.read_text() + "timeout_seconds = 120.0\ndone_grace_seconds = 1.0\n")
    d = Daemon(settings)
    try:
        hung = [d.wait_for("worker_hung_after_done", n=i + 1, timeout=60) for i in range(2)]
        jobs = wait_all_done(tmp_path / "state" / "jobs.sqlite3", 2, d)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()
    assert all("did not exit within 1s" in h["message"] for h in hung)
    assert all(j.attempts == 1 and j.last_exit_code == 0 for j in jobs)  # not retried, not timed out
    assert d.count("job_failed") == 0 and d.count("job_succeeded") == 2
    assert_each_done_once(tmp_path, videos, jobs)


@pytest.mark.parametrize("escape", [False, True], ids=["in-its-group", "double-forked"])
def test_a_grandchild_neither_holds_up_its_job_nor_outlives_it(tmp_path, escape):
    video = make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    pids = tmp_path / "grandchildren.jsonl"
    settings = daemon_settings(tmp_path)
    set_worker_command(settings, fake_command(tmp_path, 0.2, "--grandchild", "300", "--grandchild-pids", str(pids),
                                              *(["--escape"] if escape else [])))
    d = Daemon(settings)
    try:
        done = d.wait_for("job_succeeded", timeout=60)
        [grandchild] = [r["pid"] for r in read_runs(pids)]
        assert wait_gone([grandchild], timeout=30) == [], "the grandchild outlived its job"
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()
    # Its pipes held open by the grandchild did not keep the job waiting for it.
    assert done["duration_seconds"] < 30
    assert_each_done_once(tmp_path, [video], stored_jobs(tmp_path / "state" / "jobs.sqlite3"))
    if escape:
        assert d.count("orphan_killed") == 1


def test_a_grandchild_of_a_running_job_ends_when_the_daemon_is_stopped(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    pids = tmp_path / "grandchildren.jsonl"
    settings = daemon_settings(tmp_path, drain=0.5)
    set_worker_command(settings, fake_command(tmp_path, 120, "--grandchild", "300", "--grandchild-pids", str(pids),
                                              "--escape"))
    d = Daemon(settings)
    try:
        d.wait_for("job_started", timeout=60)
        deadline = time.monotonic() + 60
        while not (pids.exists() and read_runs(pids)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [grandchild] = [r["pid"] for r in read_runs(pids)]
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=60) == 0
    finally:
        d.stop()
    assert wait_gone([grandchild], timeout=30) == [], "the grandchild outlived the daemon"
    [job] = stored_jobs(tmp_path / "state" / "jobs.sqlite3")
    assert job.state is JobState.QUEUED and job.attempts == 0  # stopped by us: not charged


def test_the_wal_deleted_under_a_running_daemon_stops_it_and_nothing_is_lost_or_run_twice(tmp_path):
    videos = [make_video(tmp_path / "videos" / f"camera_{c}" / f"camera_{c}_20251114_{h:02d}0000.mp4")
              for c in range(2) for h in range(8)]
    settings = daemon_settings(tmp_path, job_seconds=0.3)
    db = tmp_path / "state" / "jobs.sqlite3"
    d = Daemon(settings)
    try:
        d.wait_for("job_succeeded", n=4, timeout=60)
        os.unlink(db.with_name(db.name + "-wal"))
        assert d.wait(timeout=60) == 70
        crashed = d.wait_for("task_crashed", timeout=5)
    finally:
        d.stop()
    assert "jobs.sqlite3-wal" in crashed["error"] and "deleted or replaced" in crashed["error"]
    jobs = finish_the_tree(settings, db, len(videos))
    assert_each_done_once(tmp_path, videos, jobs)


def _mount_image(image: Path, where: Path) -> str:
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(where)], check=True,
                   capture_output=True, timeout=60)
    source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(where)], check=True, capture_output=True,
                            text=True, timeout=30).stdout.strip()
    return Path(source).name


def test_a_state_disk_forced_read_only_then_repaired_keeps_every_committed_job(tmp_path):
    """The kernel remounts a file system read-only on an I/O error, dropping what was not on the disk yet;
    after fsck the store still holds every job it had committed, and nothing runs twice."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4") or not Path("/dev/loop-control").exists():
        pytest.skip("needs root, mkfs.ext4 and loop devices to mount a file system image")
    image, state = tmp_path / "state.img", tmp_path / "state"
    state.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True, timeout=60)
    try:
        device = _mount_image(image, state)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot mount a loop device here: {exc.stderr.decode().strip()}")
    videos = [make_video(tmp_path / "videos" / "cam" / f"cam_20251114_{h:02d}0000.mp4") for h in range(12)]
    settings = daemon_settings(tmp_path, job_seconds=0.3, drain=1.0)
    db = state / "jobs.sqlite3"
    mounted = True
    try:
        d = Daemon(settings)
        try:
            d.wait_for("job_succeeded", n=4, timeout=60)
            Path(f"/sys/fs/ext4/{device}/trigger_fs_error").write_text("1")
            d.wait_for("store_unavailable", timeout=60)
            d.signal(signal.SIGTERM)
            d.wait(timeout=90)
        finally:
            d.stop()
        subprocess.run(["umount", str(state)], check=True, capture_output=True, timeout=60)
        mounted = False
        fsck = subprocess.run(["e2fsck", "-fy", str(image)], capture_output=True, text=True, timeout=120)
        assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr  # 1: errors corrected
        _mount_image(image, state)
        mounted = True
        jobs = finish_the_tree(settings, db, len(videos))
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(state)], capture_output=True, timeout=60)
    assert_each_done_once(tmp_path, videos, jobs)
