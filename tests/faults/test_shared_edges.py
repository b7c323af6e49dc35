"""Exactly once at the edges of a shared PostgreSQL store: a daemon paused past its lease, hosts whose clocks
disagree, a server down for longer than the lease, a server out of connections. Real daemons, a real server.

"Once" is checked where it matters: every recording is recorded done once, the result set in place is the
one written by the attempt the store recorded (its claim), and every attempt wrote into a folder of its own.
"""

from __future__ import annotations

import contextlib
import glob
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon, set_worker_command
from tests.fakes import make_video, read_runs
from tests.faults.test_shared_store import shared_settings, store_jobs, wait_all_done

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def fleet_settings(tmp: Path, url: str, name: str, *, job_seconds: float, lease: float) -> Path:
    settings = shared_settings(tmp, url, name, job_seconds=job_seconds, lease=lease)
    set_worker_command(settings, ["{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}",
                                  "--out", "{out}", "--seconds", str(job_seconds), "--record",
                                  str(tmp / "runs.jsonl")])
    return settings


def succeeded(daemons: list[Daemon]) -> Counter[str]:
    return Counter(e["video"] for d in daemons for e in d.events if e.get("event") == "job_succeeded")


def assert_published_once(tmp: Path, url: str, videos: list[Path], daemons: list[Daemon]) -> None:
    jobs = store_jobs(url)
    assert sorted(str(j.path) for j in jobs) == sorted(str(v) for v in videos)
    assert succeeded(daemons) == Counter({str(v): 1 for v in videos})  # recorded done once each
    for job in jobs:
        out = tmp / "results" / job.path.relative_to(tmp / "videos")
        summary = json.loads((out / "summary.json").read_text())
        assert summary["video"]["claim"] == job.claim_token  # the recorded attempt's own result set
        assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    runs = read_runs(tmp / "runs.jsonl")
    folders = Counter(r["out"] for r in runs)
    assert max(folders.values()) == 1, folders.most_common(3)  # never two writers in one folder


def assert_untouched(tmp: Path, url: str, videos: list[Path], daemons: list[Daemon]) -> None:
    """No daemon took another's live job: nothing taken over, nothing lost, each recording run once."""
    assert not any(d.count("job_recovered") or d.count("lease_lost") for d in daemons)
    completed = Counter(r["video"] for r in read_runs(tmp / "runs.jsonl") if r["exit"] == 0)
    assert completed == Counter({str(v): 1 for v in videos})
    assert_published_once(tmp, url, videos, daemons)


@contextlib.contextmanager
def fleet(daemons: list[Daemon]) -> Iterator[list[Daemon]]:
    """The daemons, killed at the end whatever happened."""
    try:
        yield daemons
    finally:
        for d in daemons:
            d.stop()


def finish(daemons: list[Daemon], url: str, count: int, timeout: float) -> list[int]:
    """Wait until the store holds `count` jobs, all done; then stop every daemon: their exit codes."""
    wait_all_done(url, count, timeout=timeout)
    for d in daemons:
        if d.proc.poll() is None:
            d.signal(signal.SIGTERM)
    return [d.wait(timeout=90) for d in daemons]


def test_a_daemon_paused_past_its_lease_loses_its_jobs_and_records_nothing_of_them(tmp_path, pg_url):
    videos = [make_video(tmp_path / "videos" / "cam" / f"cam_20251114_{h:02d}0000.mp4") for h in range(8)]
    daemons = [Daemon(fleet_settings(tmp_path, pg_url, f"host{i}", job_seconds=5.0, lease=3.0)) for i in range(3)]
    victim = daemons[0]
    with fleet(daemons):
        started = victim.wait_for("job_started", timeout=60)
        victim.signal(signal.SIGSTOP)
        deadline = time.monotonic() + 60
        while not any(d.count("job_recovered") for d in daemons[1:]):  # its jobs taken over elsewhere
            assert time.monotonic() < deadline, "the paused daemon's jobs were never taken over"
            time.sleep(0.1)
        victim.signal(signal.SIGCONT)
        lost = victim.wait_for("lease_lost", timeout=60)
        codes = finish(daemons, pg_url, len(videos), timeout=120)
    assert codes == [0, 0, 0]
    assert lost["job_id"] == started["job_id"] or lost.get("job_id") is None  # said of its own job
    assert_published_once(tmp_path, pg_url, videos, daemons)


def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")) + sorted(glob.glob("/usr/lib/faketime/"
                                                                                          "libfaketime.so.1"))
    if not found:
        pytest.skip("libfaketime is not installed (Debian: faketime; `make test` installs it)")
    return found[0]


@pytest.mark.parametrize("offset", ["+120s", "-120s"])
def test_hosts_whose_clocks_disagree_never_take_each_others_live_jobs(tmp_path, pg_url, offset):
    lib = _libfaketime()
    videos = [make_video(tmp_path / "videos" / f"cam{c}" / f"cam{c}_20251114_{h:02d}0000.mp4")
              for c in range(2) for h in range(6)]
    skewed = {"LD_PRELOAD": lib, "FAKETIME": offset, "FAKETIME_NO_CACHE": "1"}  # its workers inherit it too
    daemons = [Daemon(fleet_settings(tmp_path, pg_url, "host0", job_seconds=1.5, lease=4.0)),
               Daemon(fleet_settings(tmp_path, pg_url, "host1", job_seconds=1.5, lease=4.0), env=skewed)]
    with fleet(daemons):
        codes = finish(daemons, pg_url, len(videos), timeout=180)
    assert codes == [0, 0]
    skew = [r["start"] for r in read_runs(tmp_path / "runs.jsonl")]
    assert max(skew) - min(skew) > 100  # the workers of the skewed host did see its wrong clock
    assert_untouched(tmp_path, pg_url, videos, daemons)


def test_a_server_down_longer_than_the_lease_takes_no_live_daemons_jobs(tmp_path, pg_server, pg_url):
    videos = [make_video(tmp_path / "videos" / "cam" / f"cam_20251114_{h:02d}0000.mp4") for h in range(6)]
    daemons = [Daemon(fleet_settings(tmp_path, pg_url, f"host{i}", job_seconds=10.0, lease=3.0)) for i in range(2)]
    with fleet(daemons):
        deadline = time.monotonic() + 60
        while sum(d.count("job_started") for d in daemons) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pg_server.stop("fast")
        time.sleep(7)  # more than two leases with the server gone; the workers run on
        pg_server.start()
        codes = finish(daemons, pg_url, len(videos), timeout=180)
    assert codes == [0, 0]
    assert_untouched(tmp_path, pg_url, videos, daemons)


def test_a_server_out_of_connections_is_waited_for_not_taken_for_another_scheduler(tmp_path, pg_server):
    import psycopg

    role, database = f"vs_{uuid.uuid4().hex[:8]}", f"db_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 3")
        admin.execute(f"CREATE DATABASE {database} OWNER {role}")
    url = f"postgresql://{role}@127.0.0.1:{pg_server.port}/{database}"
    hogs = [psycopg.connect(url) for _ in range(3)]  # every connection this account may have
    videos = [make_video(tmp_path / "videos" / "cam" / f"cam_20251114_{h:02d}0000.mp4") for h in range(3)]
    d = Daemon(fleet_settings(tmp_path, url, "host0", job_seconds=0.2, lease=4.0))
    with fleet([d]):
        waiting = d.wait_for("store_unavailable", timeout=60)
        status = subprocess.run([sys.executable, "-m", "supervisor", "status", "--state-db", url],
                                capture_output=True, text=True, timeout=60)
        alive = d.proc.poll() is None
        for h in hogs:
            h.close()
        codes = finish([d], url, len(videos), timeout=120)
    assert d.count("store_recovered") >= 1
    assert alive and codes == [0]
    assert "too many connections" in waiting["error"]
    assert status.returncode == 1, status.stderr
    assert "cannot reach the job store" in status.stderr and "too many connections" in status.stderr
