"""Promise: ten thousand queued videos run once each in a daemon under 200 MB, SIGHUP storm or not."""

from __future__ import annotations

import os
import signal
import time

import pytest

from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from tests.daemon_harness import Daemon, daemon_settings, set_worker_command

JOBS = 10_000


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
@pytest.mark.timeout(900)  # its own budget: the rest of the suite keeps the short default
def test_ten_thousand_videos_each_once_under_200_mb_through_a_sighup_storm(tmp_path):
    old = time.time() - 3600
    for c in range(10):
        folder = tmp_path / "videos" / f"camera_{c}"
        folder.mkdir(parents=True)
        for i in range(JOBS // 10):
            p = folder / f"camera_{c}_20251114_{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}.mp4"
            p.write_bytes(b"x")
            os.utime(p, (old, old))
    log = tmp_path / "ran.txt"
    settings = daemon_settings(tmp_path)
    # A tiny worker: appends the video it was given to a file (an argument list: the name is never parsed).
    cmd = ["/bin/sh", "-c", 'printf "%s\\n" "$1" >> "$2"', "worker", "{video}", str(log)]
    set_worker_command(settings, cmd)
    settings.write_text(settings.read_text().replace("max_parallel = 2", "max_parallel = 4"))
    d = Daemon(settings)
    peak = 0.0
    hups = 0
    try:
        d.wait_for("supervisor_started", timeout=60)
        deadline = time.monotonic() + 600
        while True:
            peak = max(peak, rss_mb(d.proc.pid))
            done = log.read_bytes().count(b"\n") if log.exists() else 0
            if 2000 < done < 6000 and hups < 100:
                for _ in range(50):  # a storm of reloads in the middle of the run
                    d.signal(signal.SIGHUP)
                    hups += 1
                    time.sleep(0.002)
            store = JobStore.open(tmp_path / "state" / "jobs.sqlite3", readonly=True)
            counts = store.counts()
            store.close()
            if counts["done"] == JOBS:
                break
            assert time.monotonic() < deadline, counts
            time.sleep(0.5)
        peak = max(peak, rss_mb(d.proc.pid))
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=60) == 0
    finally:
        d.stop()
    ran = log.read_text().splitlines()
    assert len(ran) == JOBS and len(set(ran)) == JOBS  # every video exactly once
    assert hups == 100
    assert peak < 200, f"daemon RSS peaked at {peak:.0f} MB"
    store = JobStore.open(tmp_path / "state" / "jobs.sqlite3", readonly=True)
    jobs = store.jobs()
    store.close()
    assert len(jobs) == JOBS and all(j.state is JobState.DONE and j.attempts == 1 for j in jobs)
    print(f"\n10,000 jobs: daemon RSS peak {peak:.0f} MB, {hups} SIGHUPs")
