"""Several daemons on one PostgreSQL store, as several GPU hosts on one NAS: real processes, a real server."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import pytest

from supervisor.jobs.model import JobState
from supervisor.jobs.postgres import PostgresReader
from tests.daemon_harness import Daemon, children, daemon_settings, wait_gone
from tests.fakes import make_video, read_runs

# Three daemons and a real PostgreSQL server on a busy 2-core machine: minutes, not the two a unit test gets.
pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(600)]


def shared_settings(tmp_path, url, name, *, job_seconds, lease=4.0):
    folder = tmp_path / name
    folder.mkdir()
    settings = daemon_settings(folder, job_seconds=job_seconds, rescan=1.0)
    text = settings.read_text()
    text = text.replace('videos_dir = "videos"', f'videos_dir = "{tmp_path / "videos"}"')
    text = text.replace('output_dir = "results"', f'output_dir = "{tmp_path / "results"}"')
    text = text.replace('state_db = "state/jobs.sqlite3"', f'state_db = "{url}"')
    text = text.replace("[scheduler]\n", f"[scheduler]\nlease_seconds = {lease}\n")
    text = text.replace(str(folder / "runs.jsonl"), str(tmp_path / "runs.jsonl"))  # one record for all hosts
    settings.write_text(text + "[metrics]\nlisten = \"\"\n")
    return settings


def store_jobs(url):
    reader = PostgresReader(url)
    try:
        return reader.jobs()
    finally:
        reader.close()


def wait_all_done(url, count, timeout):
    deadline = time.monotonic() + timeout
    while True:
        jobs = store_jobs(url)
        if len(jobs) == count and all(j.state is JobState.DONE for j in jobs):
            return jobs
        assert time.monotonic() < deadline, Counter(str(j.state) for j in jobs)
        time.sleep(0.2)


def test_three_daemons_share_the_work_and_a_killed_ones_jobs_are_taken_over(tmp_path, pg_url):
    videos = [make_video(tmp_path / "videos" / f"camera_{c}" / f"camera_{c}_20251114_{h:02d}0000.mp4")
              for c in range(3) for h in range(10)]
    daemons = [Daemon(shared_settings(tmp_path, pg_url, f"host{i}", job_seconds=0.6)) for i in range(3)]
    try:
        for d in daemons:
            d.wait_for("supervisor_started", timeout=30)
        hosts = _status_hosts(pg_url, want=3)
        victim = daemons[0]
        deadline = time.monotonic() + 120  # a cap for a broken build, not a timing
        while not children(victim.proc.pid):  # kill it while it runs jobs
            assert time.monotonic() < deadline
            time.sleep(0.05)
        orphans = children(victim.proc.pid)
        killed_at = time.monotonic()
        victim.signal(signal.SIGKILL)
        victim.wait()
        assert wait_gone(orphans) == [], "a worker outlived its daemon"
        jobs = wait_all_done(pg_url, len(videos), timeout=120)
        taken_over_after = time.monotonic() - killed_at
        for d in daemons[1:]:
            d.signal(signal.SIGTERM)
            assert d.wait(timeout=60) == 0
    finally:
        for d in daemons:
            d.stop()
    completed = Counter(r["video"] for r in read_runs(tmp_path / "runs.jsonl") if r["exit"] == 0)
    assert sorted(completed) == sorted(str(v) for v in videos)
    assert max(completed.values()) == 1, [v for v, n in completed.items() if n > 1]  # none completed twice
    assert {j.path for j in jobs} == set(videos)
    # The dead daemon's claims ran out after the lease (4 s) and were taken over well within a minute.
    assert taken_over_after < 60
    assert sorted(h["pid"] for h in hosts) == sorted(d.proc.pid for d in daemons)  # `status` saw every host


def _status_hosts(url, want):
    """`video-supervisor status --json` against the shared store, until it lists `want` daemons."""
    import subprocess
    import sys

    deadline = time.monotonic() + 120  # a cap for a broken build, not a timing
    while True:
        proc = subprocess.run([sys.executable, "-m", "supervisor", "status", "--state-db", url, "--json"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        hosts = json.loads(proc.stdout)["hosts"]
        if len(hosts) >= want:
            return hosts
        assert time.monotonic() < deadline, hosts
        time.sleep(0.3)


def test_a_server_stopped_for_ten_seconds_pauses_new_work_and_everything_resumes(tmp_path, pg_server, pg_url):
    videos = [make_video(tmp_path / "videos" / "cam" / f"cam_20251114_10{i:02d}00.mp4") for i in range(12)]
    daemons = [Daemon(shared_settings(tmp_path, pg_url, f"host{i}", job_seconds=1.0, lease=30.0)) for i in range(2)]
    try:
        for d in daemons:
            d.wait_for("supervisor_started", timeout=30)
        deadline = time.monotonic() + 120  # a cap for a broken build, not a timing
        while not any(children(d.proc.pid) for d in daemons):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pg_server.stop("fast")
        time.sleep(10)
        alive = [d.proc.poll() is None for d in daemons]
        pg_server.start()
        wait_all_done(pg_url, len(videos), timeout=120)
        for d in daemons:
            d.wait_for("store_recovered", timeout=30)
        assert any(d.count("claims_not_renewed") for d in daemons)  # said, not silent
        for d in daemons:
            d.signal(signal.SIGTERM)
            assert d.wait(timeout=60) == 0
    finally:
        for d in daemons:
            d.stop()
    assert alive == [True, True]  # no restart needed
    completed = Counter(r["video"] for r in read_runs(tmp_path / "runs.jsonl") if r["exit"] == 0)
    assert sorted(completed) == sorted(str(v) for v in videos) and max(completed.values()) == 1


def test_a_database_the_server_refuses_for_good_stops_the_daemon_with_78_naming_the_fix(tmp_path, pg_url):
    """A server that is down is waited for; one that answers "no such database" (or a wrong password)
    will answer the same for ever, so the daemon stops at once and says what to check."""
    import subprocess

    from tests.fakes import cli, cli_env

    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    bad = pg_url.rsplit("/", 1)[0] + "/no_such_database"
    proc = subprocess.run(cli("--settings", str(daemon_settings(tmp_path)), "--state-db", bad, "--daemon",
                              "--allow-root"), capture_output=True, text=True, env=cli_env(), timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 78, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "no_such_database" in line]
    assert said and "check the user, the password and the database name" in said[-1], proc.stderr
