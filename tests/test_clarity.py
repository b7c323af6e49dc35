"""Every mistake gets one clear line that blames the right thing, and the shipped settings work."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pytest

from supervisor.config import load_settings
from tests.fakes import REPO, cli, cli_env, make_video
from tests.test_cli import settings_file


def run_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, env=cli_env(), timeout=timeout, cwd=cwd)


@pytest.mark.parametrize(("flags", "blamed"), [
    (("--max-parallel", "0"), "command line: --max-parallel: must be >= 1"),
    (("--duration", "-5"), "command line: --duration: must be >= 0 (0 means the whole video)"),
    (("--gpus", "1,1"), "command line: --gpus: GPU indices must not repeat"),
])
def test_a_bad_flag_value_is_blamed_on_the_flag_not_the_settings_file(tmp_path, flags, blamed):
    settings = settings_file(tmp_path)
    (tmp_path / "videos").mkdir()
    proc = run_cli("--settings", str(settings), *flags, cwd=tmp_path)
    assert proc.returncode == 78
    assert proc.stderr.strip() == f"video-supervisor: {blamed}"


def test_a_once_run_with_every_file_still_settling_says_so_on_the_console(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4", age=0)
    settings = settings_file(tmp_path)
    settings.write_text(settings.read_text().replace("settle_seconds = 0", "settle_seconds = 600"))
    proc = run_cli("--settings", str(settings), cwd=tmp_path)
    assert proc.returncode == 0
    [line] = [json.loads(x) for x in proc.stdout.splitlines() if '"nothing_to_do"' in x]
    assert line["level"] == "warning" and "settle_seconds" in line["message"] and line["unsettled"] == 1


def test_log_level_debug_shows_every_event_on_the_console(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = settings_file(tmp_path)
    quiet = run_cli("--settings", str(settings), "--reprocess", cwd=tmp_path)
    loud = run_cli("--settings", str(settings), "--reprocess", "--log-level", "DEBUG", cwd=tmp_path)
    assert quiet.returncode == loud.returncode == 0
    quiet_events = {json.loads(x)["event"] for x in quiet.stdout.splitlines()}
    loud_events = {json.loads(x)["event"] for x in loud.stdout.splitlines()}
    assert "job_started" not in quiet_events
    assert {"job_started", "job_succeeded", "scan_complete"} <= loud_events


def test_a_read_only_store_is_not_called_damaged(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (root writes through file modes)")
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = settings_file(tmp_path)
    assert run_cli("--settings", str(settings), cwd=tmp_path).returncode == 0
    state = tmp_path / "state"
    proc = subprocess.run(["mount", "--bind", "-o", "ro", str(state), str(state)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here: {proc.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], capture_output=True, check=True)
        (tmp_path / "videos" / "cam" / "cam_20251114_110000.mp4").write_bytes(b"x" * 100)
        os.utime(tmp_path / "videos" / "cam" / "cam_20251114_110000.mp4", (1, 1))
        proc = run_cli("--settings", str(settings), cwd=tmp_path)
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True)
    assert proc.returncode in (75, 78)
    [line] = proc.stderr.strip().splitlines()
    assert "move it aside" not in line and "damaged" not in line
    assert "read-write" in line or "write" in line


def test_status_that_cannot_read_the_store_prints_one_line_without_a_traceback(tmp_path):
    not_a_store = tmp_path / "jobs.sqlite3"
    not_a_store.mkdir()  # what a permission problem looks like to SQLite: unable to open
    proc = run_cli("status", "--state-db", str(not_a_store), cwd=tmp_path)
    assert proc.returncode == 78
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"video-supervisor status: {not_a_store}: cannot read the job store")
    assert "can read" in line
    assert "Traceback" not in proc.stderr


def test_the_model_is_checked_at_start_and_paths_are_relative_to_the_settings_file(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "videos").mkdir()
    settings = tmp_path / "etc" / "vs.toml"
    settings.write_text('videos_dir = "../videos"\n[gpu]\nprobe = "none"\n')
    s = load_settings(settings)
    assert s.videos_dir == tmp_path / "videos"
    assert s.worker.model == tmp_path / "etc" / "models" / "person.pt"  # the default model, beside the file
    proc = run_cli("--settings", str(settings), cwd=Path("/"))
    assert proc.returncode == 78
    [line] = proc.stderr.strip().splitlines()
    assert f"worker.model: {tmp_path / 'etc' / 'models' / 'person.pt'}: missing" in line


def test_the_shipped_service_settings_name_every_path_and_the_model_explicitly():
    shipped = tomllib.loads((REPO / "systemd" / "video-supervisor.toml").read_text())
    assert Path(shipped["worker"]["model"]).is_absolute()
    for key in ("videos_dir", "output_dir", "state_db", "log_dir", "rois_file"):
        assert Path(shipped[key]).is_absolute(), key
    s = load_settings(REPO / "systemd" / "video-supervisor.toml")
    assert s.worker.model == Path(shipped["worker"]["model"])


def test_the_store_opens_without_writing_when_its_schema_is_current(tmp_path):
    from supervisor.jobs.store import JobStore

    db = tmp_path / "jobs.sqlite3"
    JobStore.open(db).close()
    before = db.stat().st_mtime_ns, sqlite3.connect(db).execute("PRAGMA data_version").fetchone()
    JobStore.open(db).close()
    assert db.stat().st_mtime_ns == before[0]
