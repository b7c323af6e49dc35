"""The daemon under systemd's protocol: notify socket, HUP rescan/reload, TERM drain, KILL cleanup."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from tests.daemon_harness import Daemon, NotifySocket, children, daemon_settings, wait_gone
from tests.fakes import make_video, read_runs

LOOPS = ["uvloop", "asyncio"]


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def stored(tmp_path):
    store = JobStore.open(tmp_path / "state" / "jobs.sqlite3", readonly=True)
    try:
        return {j.path.name: j for j in store.jobs()}
    finally:
        store.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_notify_protocol_ready_status_watchdog_reloading_stopping(tmp_path, notify, loop):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    d = Daemon(daemon_settings(tmp_path), loop=loop,
               env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"})
    try:
        ready = notify.wait_for("READY", "1")
        assert "STATUS" in ready and "queued" in ready["STATUS"]
        notify.wait_for("WATCHDOG", "1")
        d.wait_for("job_succeeded")
        status = notify.wait_for("STATUS", after=notify.messages.index(ready) + 1)
        assert "running" in status["STATUS"] and "no GPU monitoring" in status["STATUS"]
        # Watchdog pings keep coming (at about half of WATCHDOG_USEC; how soon is the manual clock's to test).
        before = sum("WATCHDOG" in m for m in notify.messages)
        deadline = time.monotonic() + 60
        while sum("WATCHDOG" in m for m in notify.messages) - before < 3:
            assert time.monotonic() < deadline, "the watchdog pings stopped"
            time.sleep(0.05)
        mark = len(notify.messages)
        d.signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING", "1", after=mark)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        notify.wait_for("READY", "1", after=notify.messages.index(reloading))
        d.signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1")
        assert d.wait() == 0
    finally:
        d.stop()


def test_abstract_notify_socket_names_work(tmp_path):
    sock = NotifySocket(abstract=f"video-supervisor-test-{time.monotonic_ns()}")
    d = Daemon(daemon_settings(tmp_path), env={"NOTIFY_SOCKET": sock.address})
    try:
        sock.wait_for("READY", "1")
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()
        sock.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_hup_rescans_at_once_and_a_burst_makes_no_duplicates(tmp_path, loop):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    d = Daemon(daemon_settings(tmp_path, rescan=3600), loop=loop)
    try:
        d.wait_for("job_succeeded")
        make_video(tmp_path / "videos" / "cam" / "cam_20251114_110000.mp4")
        d.signal(signal.SIGHUP)
        d.wait_for("job_succeeded", n=2, timeout=10)  # without waiting an hour for the periodic rescan
        scans_before = d.count("scan_complete")
        make_video(tmp_path / "videos" / "cam" / "cam_20251114_120000.mp4")
        for _ in range(100):
            d.signal(signal.SIGHUP)
            time.sleep(0.005)
        d.wait_for("job_succeeded", n=3, timeout=10)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
        assert 1 <= d.count("scan_complete") - scans_before <= 3  # every scan of its life counted
    finally:
        d.stop()
    runs = read_runs(tmp_path / "runs.jsonl")
    assert sorted(r["video"].rsplit("/", 1)[1] for r in runs) == [
        "cam_20251114_100000.mp4", "cam_20251114_110000.mp4", "cam_20251114_120000.mp4"]  # each exactly once


def test_invalid_settings_on_reload_keep_the_daemon_on_the_old_ones(tmp_path):
    settings = daemon_settings(tmp_path)
    d = Daemon(settings)
    try:
        d.wait_for("scan_complete")
        good = settings.read_text()
        settings.write_text(good.replace("max_parallel = 2", "max_parallel = \"lots\""))
        d.signal(signal.SIGHUP)
        failed = d.wait_for("reload_failed")
        assert "scheduler.max_parallel" in failed["error"] and "expected integer" in failed["error"]
        make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
        d.signal(signal.SIGHUP)
        d.wait_for("job_succeeded")  # still alive and working on the old settings
        settings.write_text(good.replace("max_parallel = 2", "max_parallel = 3"))
        d.signal(signal.SIGHUP)
        assert d.wait_for("settings_reloaded")["max_parallel"] == 3
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()


def test_bad_roi_file_on_reload_is_refused_too(tmp_path):
    rois = tmp_path / "rois.toml"
    rois.write_text('[cameras.cam]\n[[cameras.cam.regions]]\nname = "a"\npoints = [[0,0],[1,0],[1,1]]\n')
    d = Daemon(daemon_settings(tmp_path, extra=f'rois_file = "{rois}"'))
    try:
        d.wait_for("scan_complete")
        rois.write_text('[cameras.cam]\n[[cameras.cam.regions]]\nname = "a"\npoints = [[0,0],[2,0],[1,1]]\n')
        d.signal(signal.SIGHUP)
        assert "out of range" in d.wait_for("reload_failed")["error"]
        assert d.proc.poll() is None
    finally:
        d.signal(signal.SIGTERM)
        d.wait()
        d.stop()


@pytest.mark.parametrize("loop", LOOPS)
def test_term_drains_then_the_next_start_finishes_exactly_the_interrupted_jobs(tmp_path, loop):
    for h in range(4):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_1{h}0000.mp4")
    d = Daemon(daemon_settings(tmp_path, job_seconds=30, drain=0.5), loop=loop)
    try:
        d.wait_for("job_started", n=2)
        _workers_catch_term(d, 2)  # so each records its interruption
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
        done = d.wait_for("shutdown_complete")
        assert done["stopped"] == 2
    finally:
        d.stop()
    jobs = stored(tmp_path)
    assert {j.state for j in jobs.values()} == {JobState.QUEUED}
    assert all(j.attempts == 0 for j in jobs.values())  # an interruption is not a failed attempt
    interrupted = {r["video"] for r in read_runs(tmp_path / "runs.jsonl") if r["exit"] == 143}
    assert len(interrupted) == 2
    d2 = Daemon(daemon_settings(tmp_path, job_seconds=0.05))
    try:
        d2.wait_for("job_succeeded", n=4)
        d2.signal(signal.SIGTERM)
        assert d2.wait() == 0
    finally:
        d2.stop()
    runs = read_runs(tmp_path / "runs.jsonl")
    succeeded = [r["video"] for r in runs if r["exit"] == 0]
    assert sorted(succeeded) == sorted(str(p) for p in (tmp_path / "videos" / "cam").iterdir())
    assert {j.state for j in stored(tmp_path).values()} == {JobState.DONE}


def test_a_second_term_stops_at_once(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    d = Daemon(daemon_settings(tmp_path, job_seconds=60, drain=60))
    try:
        d.wait_for("job_started")
        _workers_catch_term(d, 1)
        d.signal(signal.SIGTERM)
        d.wait_for("shutdown_requested")
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=120) == 0
    finally:
        d.stop()
    # Drained, the 60 s job would have finished: stopped at once, it waits in the queue for the next run.
    assert stored(tmp_path)["cam_20251114_100000.mp4"].state is JobState.QUEUED


@pytest.mark.parametrize("loop", LOOPS)
def test_sigkill_of_the_daemon_leaves_no_worker_behind(tmp_path, loop):
    for h in range(2):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_1{h}0000.mp4")
    d = Daemon(daemon_settings(tmp_path, job_seconds=60), loop=loop)
    try:
        d.wait_for("job_started", n=2)
        deadline = time.monotonic() + 60
        while len(workers := children(d.proc.pid)) < 2:
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        d.signal(signal.SIGKILL)
        d.wait()
        assert wait_gone(workers) == []
    finally:
        d.stop()


def test_under_journald_each_line_carries_its_priority(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = daemon_settings(tmp_path)
    settings.write_text(settings.read_text().replace('"--seconds"', '"--exit", "3", "--seconds"')
                        .replace("retry_backoff_seconds = 0.1", "retry_backoff_seconds = 0.1\nmax_attempts = 1"))
    d = Daemon(settings, env={"JOURNAL_STREAM": "8:12345"})
    try:
        d.wait_for("job_dead")
        d.signal(signal.SIGTERM)
        d.wait()
    finally:
        d.stop()
    assert all(line.startswith("<") for line in d.lines if line)
    dead = next(line for line in d.lines if '"job_dead"' in line)
    assert dead.startswith("<3>{")
    started = next(line for line in d.lines if '"job_started"' in line)
    assert started.startswith("<6>{") and '"camera": "cam"' in started and '"job_id": 1' in started


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process `pid` has a handler installed for `sig` (the kernel's SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:")), 0)
    return bool(mask & (1 << (sig - 1)))


def _workers_catch_term(d: Daemon, n: int) -> None:
    """Wait until the daemon's `n` workers are up and handle SIGTERM (a generous cap, never a fixed sleep)."""
    deadline = time.monotonic() + 60
    while not (len(pids := children(d.proc.pid)) >= n and all(_catches(p, signal.SIGTERM) for p in pids)):
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.01)


def test_a_term_during_start_up_is_honoured_not_fatal(tmp_path):
    """SIGTERM while the program is still importing: remembered, then a clean stop (exit 0)."""
    d = Daemon(daemon_settings(tmp_path))
    try:
        # The moment the program catches SIGTERM (its first code does, before the heavy imports), not a
        # guess at how long a busy machine takes to get there.
        deadline = time.monotonic() + 60
        while not _catches(d.proc.pid, signal.SIGTERM):
            assert time.monotonic() < deadline and d.proc.poll() is None, "SIGTERM was never caught"
            time.sleep(0.001)
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=60) == 0
        assert d.count("shutdown_complete") == 1
    finally:
        d.stop()
