"""Promise: a daemon or worker killed at any moment loses nothing and runs nothing twice to completion."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter

from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from tests.daemon_harness import Daemon, alive, children, daemon_settings, wait_gone
from tests.fakes import make_video, read_runs


def test_kill_9_of_the_daemon_at_random_moments_loses_nothing(tmp_path):
    """20 seeded SIGKILLs while jobs run; after a clean restart every video is done exactly once."""
    rng = random.Random(20251114)
    videos = [make_video(tmp_path / "videos" / f"camera_{c}" / f"camera_{c}_20251114_{h:02d}0000.mp4")
              for c in range(3) for h in range(8)]
    settings = daemon_settings(tmp_path, job_seconds=0.25, rescan=0.5)
    killed_workers = 0
    for trial in range(20):
        d = Daemon(settings)
        try:
            d.wait_for("supervisor_started", timeout=20)
            time.sleep(rng.uniform(0.05, 0.8))
            workers = children(d.proc.pid)
            d.signal(signal.SIGKILL)
            d.wait()
            killed_workers += len(workers)
            assert wait_gone(workers) == [], f"trial {trial}: workers outlived the daemon"
        finally:
            d.stop()
    d = Daemon(settings)
    try:
        d.wait_for("supervisor_started", timeout=20)
        deadline = time.monotonic() + 120
        while True:
            store = JobStore.open(tmp_path / "state" / "jobs.sqlite3", readonly=True)
            jobs = store.jobs()
            store.close()
            if len(jobs) == len(videos) and all(j.state is JobState.DONE for j in jobs):
                break
            assert time.monotonic() < deadline, [(j.path.name, j.state) for j in jobs]
            time.sleep(0.2)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()
    assert sorted(str(j.path) for j in jobs) == sorted(str(v) for v in videos)  # one row per video
    assert all(j.attempts >= 1 for j in jobs)
    for job in jobs:
        out = tmp_path / "results" / job.path.relative_to(tmp_path / "videos")
        assert sorted(os.listdir(out)) == ["summary.json"], os.listdir(out)  # no temporary leftovers
        assert sorted(os.listdir(out.parent)) == sorted(  # nor any attempt's folder beside it
            p.name for p in out.parent.iterdir() if not p.name.startswith("."))
        identity = json.loads((out / "summary.json").read_text())["video"]
        # The result set in place is the one the store recorded: written by the attempt of the job's last claim.
        assert identity["path"] == str(job.path) and identity["claim"] == job.claim_token
    runs = read_runs(tmp_path / "runs.jsonl")
    completed = Counter(r["video"] for r in runs if r["exit"] == 0)
    # A worker killed after its summary but before its own record line is done without that line (its result
    # set is complete); one that finished before its daemon died is recorded done from its results, never
    # run again.
    assert set(completed) <= {str(v) for v in videos}
    assert max(completed.values(), default=0) <= 1, {v: n for v, n in completed.items() if n > 1}
    assert killed_workers > 0, "the trials should have caught workers mid-job"


def test_kill_9_of_a_worker_mid_write_leaves_no_partial_result_and_the_job_is_retried(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = daemon_settings(tmp_path, job_seconds=0.05)
    text = settings.read_text().replace('"--seconds"', '"--output-bytes", "2000000", "--write-seconds", "3", '
                                                       '"--seconds"')
    settings.write_text(text)
    d = Daemon(settings)
    out = tmp_path / "results" / "cam" / "cam_20251114_100000.mp4"
    staging = out.with_name(f".{out.name}.attempt-1")  # the first attempt writes into a folder of its own
    try:
        deadline = time.monotonic() + 20
        while not (staging.is_dir() and any(p.name.endswith(".tmp") for p in staging.iterdir())):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        [worker] = children(d.proc.pid)
        time.sleep(0.3)
        os.kill(worker, signal.SIGKILL)  # mid-write
        assert not (out / "summary.json").exists()
        failed = d.wait_for("job_failed")
        assert failed["outcome"] == "killed" and "SIGKILL" in failed["error"]
        assert not (out / "summary.json").exists()
        d.wait_for("job_succeeded", timeout=30)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()
    assert os.listdir(out) == ["summary.json"]
    assert sorted(os.listdir(out.parent)) == [out.name]  # the killed attempt's folder is gone
    assert len((out / "summary.json").read_text()) > 2_000_000
    store = JobStore.open(tmp_path / "state" / "jobs.sqlite3", readonly=True)
    [job] = store.jobs()
    store.close()
    assert job.state is JobState.DONE and job.attempts == 2
    assert not any(alive(p) for p in children(os.getpid()) if p != d.proc.pid)


def test_the_real_worker_killed_mid_run_leaves_nothing_visible_and_the_retry_clears_temporaries(tmp_path):
    import subprocess
    import sys

    from tests.fakes import REPO
    from workers.scenes import DEFAULT_ACTORS, write_scene

    video = write_scene(tmp_path / "cam" / "cam_20251114_100000.mp4", DEFAULT_ACTORS, seconds=30, fps=5)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "workers.detect", "--video", str(video), "--camera", "cam", "--out", str(out),
           "--model", str(REPO / "models" / "person.pt")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    for line in proc.stdout:
        if json.loads(line).get("frame", 0) > 0:
            break
    proc.kill()
    proc.wait()
    proc.stdout.close()
    left = os.listdir(out)
    assert all(name.startswith(".") and name.endswith(".tmp") for name in left)  # nothing visible
    # Results are written at the end, so a kill mid-run rarely leaves a temporary; one killed while
    # writing does (its process id in the name), and the next attempt clears it.
    (out / ".counts.csv.999999.tmp").write_text("video_time_s,recorded_time,frame\n0.000,,1\n")
    again = subprocess.run([*cmd, "--duration", "2"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert again.returncode == 0, again.stderr
    assert sorted(os.listdir(out)) == ["counts.csv", "events.jsonl", "summary.json"]
