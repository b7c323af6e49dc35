"""Promise: a full disk, a read-only output, a broken store or a typo in the configuration ends in a clear
message; nothing half-written is ever visible, and the daemon carries on when it can."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from tests.daemon_harness import Daemon, alive, daemon_settings
from tests.fakes import cli, cli_env, make_video


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    target = tmp_path / "results"
    target.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(target))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc.stderr.decode().strip()}")
    yield target
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_full_disk_is_transient_leaves_nothing_partial_and_recovers_when_space_returns(tmp_path, small_disk):
    for h in range(2):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_1{h}0000.mp4")
    settings = daemon_settings(tmp_path, job_seconds=0.05)
    text = settings.read_text().replace('"--seconds"', '"--output-bytes", "400000", "--seconds"')
    settings.write_text(text.replace("retry_backoff_seconds = 0.1", "retry_backoff_seconds = 0.2\n"
                                                                    "retry_backoff_max_seconds = 0.4"))
    d = Daemon(settings)
    try:
        failed = d.wait_for("job_failed", n=3, timeout=30)
        assert failed["outcome"] == "transient" and failed["exit_code"] == 75
        assert "No space left on device" in failed["error"]
        # Nothing partial: no result file, and no temporary file but one a worker is writing right now (the
        # next attempt may be under way; its writer removes it when the disk refuses it).
        files = [p for p in small_disk.rglob("*") if p.is_file()]
        assert [p for p in files if not p.name.startswith(".")] == []
        assert [p for p in files if p.exists() and not alive(int(p.name.rsplit(".", 2)[-2]))] == []
        assert d.proc.poll() is None
        _mount("-o", "remount,size=8m", str(small_disk))  # the operator frees space
        d.wait_for("job_succeeded", n=2, timeout=30)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()
    assert [p for p in small_disk.rglob(".*.tmp")] == []  # every attempt over: no temporary file left
    store = JobStore.open(tmp_path / "state" / "jobs.sqlite3", readonly=True)
    jobs = store.jobs()
    store.close()
    assert all(j.state is JobState.DONE for j in jobs) and max(j.attempts for j in jobs) >= 2
    for j in jobs:
        summary = small_disk / "cam" / j.path.name / "summary.json"
        assert len(summary.read_bytes()) > 400_000


def test_read_only_output_fails_as_transient_and_the_daemon_carries_on(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    target = tmp_path / "results"
    target.mkdir()
    try:
        _mount("--bind", str(target), str(target))
        _mount("-o", "remount,bind,ro", str(target))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot make a read-only bind mount here: {exc.stderr.decode().strip()}")
    try:
        make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
        d = Daemon(daemon_settings(tmp_path))
        try:
            failed = d.wait_for("job_failed", timeout=30)
            assert failed["exit_code"] == 75 and "Read-only file system" in failed["error"]
            _mount("-o", "remount,bind,rw", str(target))
            d.wait_for("job_succeeded", timeout=30)
            d.signal(signal.SIGTERM)
            assert d.wait() == 0
        finally:
            d.stop()
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, env=cli_env(), timeout=60)


def test_a_corrupt_store_is_refused_with_advice_and_never_overwritten(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = daemon_settings(tmp_path)
    db = tmp_path / "state" / "jobs.sqlite3"
    db.parent.mkdir()
    junk = b"SQLite format 3\0" + os.urandom(10_000)
    db.write_bytes(junk)
    proc = run_cli("--settings", str(settings))
    assert proc.returncode == 78
    assert proc.stderr.strip().startswith(f"video-supervisor: {db}: not a usable job store")
    assert "move it aside" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert db.read_bytes() == junk
    assert run_cli("status", "--state-db", str(db)).returncode == 78


@pytest.mark.parametrize(
    ("settings_text", "key", "reason"),
    [
        ("[worker]\nmax_attempts = 2.5\n", "worker.max_attempts", "expected integer"),
        ("[scheduler]\nmax_parallel = -1\n", "scheduler.max_parallel", ">= 1"),
        ("[gpu]\ntemp_limit = 60\n", "gpu.temp_warm", "below gpu.temp_limit"),
        ("[sheduler]\nmax_parallel = 2\n", "sheduler", "unknown key"),
        ("cameras = [\"camera_3S\"]\n", "cameras[0]", "did you mean 'camera_35'?"),
    ],
)
def test_configuration_mistakes_are_refused_at_start_naming_the_key(tmp_path, settings_text, key, reason):
    make_video(tmp_path / "videos" / "camera_35" / "camera_35_20251114_100000.mp4")
    p = tmp_path / "vs.toml"
    p.write_text('videos_dir = "videos"\n' + settings_text)
    proc = run_cli("--settings", str(p))
    assert proc.returncode == 78
    [line] = proc.stderr.strip().splitlines()
    assert key in line and reason in line and str(p) in line


def test_a_roi_file_naming_a_camera_that_is_not_there_is_a_typo(tmp_path):
    make_video(tmp_path / "videos" / "camera_35" / "camera_35_20251114_100000.mp4")
    rois = tmp_path / "rois.toml"
    rois.write_text('[cameras.camera_53]\n[[cameras.camera_53.regions]]\nname = "a"\n'
                    'points = [[0,0],[1,0],[1,1]]\n')
    proc = run_cli("--videos-dir", str(tmp_path / "videos"), "--config", str(rois), "--state-db",
                   str(tmp_path / "s.db"), "--log-dir", str(tmp_path / "logs"))
    assert proc.returncode == 78
    assert f"{rois}: camera 'camera_53': no such camera" in proc.stderr and "did you mean 'camera_35'" in proc.stderr


def test_a_bad_reload_keeps_the_old_configuration(tmp_path):
    make_video(tmp_path / "videos" / "camera_35" / "camera_35_20251114_100000.mp4")
    settings = daemon_settings(tmp_path)
    d = Daemon(settings)
    try:
        d.wait_for("job_succeeded")
        good = settings.read_text()
        for bad, expect in ((good.replace("[gpu]", "[gpu]\ntemp_warm = 99"), "gpu.temp_warm"),
                            ("cameras = [\"camera_3S\"]\n" + good, "did you mean"),
                            ("not toml [", "invalid TOML")):
            settings.write_text(bad)
            d.signal(signal.SIGHUP)
            failed = d.wait_for("reload_failed", n=d.count("reload_failed") + 1)
            assert expect in failed["error"]
        settings.write_text(good)
        make_video(tmp_path / "videos" / "camera_35" / "camera_35_20251114_110000.mp4")
        d.signal(signal.SIGHUP)
        d.wait_for("job_succeeded", n=2, timeout=20)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()


def test_store_files_logs_and_status_are_not_world_readable(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = daemon_settings(tmp_path, job_seconds=0.5)
    d = Daemon(settings)
    try:
        d.wait_for("job_started")
        status = tmp_path / "state" / "jobs.sqlite3.status.json"
        deadline = time.monotonic() + 120  # a cap for a broken build: a heartbeat writes it within seconds
        while not status.exists():
            assert time.monotonic() < deadline and d.proc.poll() is None
            time.sleep(0.05)
        assert status.stat().st_mode & 0o777 == 0o640
        d.signal(signal.SIGTERM)
        d.wait()
    finally:
        d.stop()
    for f in [tmp_path / "state" / "jobs.sqlite3", tmp_path / "state" / "jobs.sqlite3.lock",
              *(tmp_path / "logs").iterdir()]:
        assert f.stat().st_mode & 0o007 == 0, f  # nothing for "other"
    assert json.loads(next((tmp_path / "logs").glob("processing_*")).read_text().splitlines()[0])
