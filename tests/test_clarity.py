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
    from supervisor.jobs.sqlite_store import JobStore

    db = tmp_path / "jobs.sqlite3"
    JobStore.open(db).close()
    before = db.stat().st_mtime_ns, sqlite3.connect(db).execute("PRAGMA data_version").fetchone()
    JobStore.open(db).close()
    assert db.stat().st_mtime_ns == before[0]


def _tree(root: Path, cameras: tuple[str, ...] = ("cam1", "cam2")) -> Path:
    for cam in cameras:
        make_video(root / "site" / "videos" / cam / "2025-12-01" / "14-30-00.mp4")
    return root / "site" / "videos"


@pytest.mark.parametrize(("where", "says"), [
    ("site", "every recording is under one camera named 'videos': videos_dir is probably one level too high; "
             "try videos_dir = {root}/site/videos"),
    ("site/videos/cam1", "the camera ids under {root}/site/videos/cam1 look like dates (2025-12-01): videos_dir is "
                         "probably one level too low; the camera folders are likely in {root}/site/videos"),
])
def test_a_videos_folder_one_level_off_is_named_with_the_likely_one(tmp_path, where, says):
    _tree(tmp_path)
    settings = settings_file(tmp_path)
    listed = run_cli("--settings", str(settings), "--videos-dir", str(tmp_path / where), "--list", cwd=tmp_path)
    assert listed.returncode == 0 and f"warning: {says.format(root=tmp_path)}" in listed.stdout.splitlines()
    ran = run_cli("--settings", str(settings), "--videos-dir", str(tmp_path / where), cwd=tmp_path)
    assert f"video-supervisor: warning: {says.format(root=tmp_path)}" in ran.stderr.splitlines()


def test_a_camera_asked_for_that_is_not_there_is_a_usage_error_listing_the_ones_that_are(tmp_path):
    videos = _tree(tmp_path)
    proc = run_cli("--settings", str(settings_file(tmp_path)), "--videos-dir", str(videos), "--cameras", "cam3",
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"video-supervisor: command line: cameras: no camera 'cam3' under {videos}; "
                                   "did you mean 'cam2'? cameras here: cam1, cam2")
    assert not (tmp_path / "runs.jsonl").exists()  # nothing ran


@pytest.mark.parametrize(("roi_camera", "says"), [
    ("cam29", "has regions but no recordings under its name; did you mean 'camera_29'?; until it has, its "
              "regions count nothing"),
    ("patio", "has regions but no recordings under its name (a camera not installed yet is fine); until it has, "
              "its regions count nothing"),
])
def test_an_roi_camera_without_recordings_is_a_warning_naming_the_nearest(tmp_path, roi_camera, says):
    videos = _tree(tmp_path, ("camera_29", "camera_22"))
    rois = tmp_path / "rois.toml"
    rois.write_text(f'[cameras.{roi_camera}]\n[[cameras.{roi_camera}.regions]]\nname = "door"\n'
                    "points = [[0, 0], [1, 0], [1, 1], [0, 1]]\n")
    proc = run_cli("--settings", str(settings_file(tmp_path)), "--videos-dir", str(videos), "--config", str(rois),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert line == f"video-supervisor: warning: {rois}: camera {roi_camera!r} {says}"


def test_status_and_report_say_when_there_is_no_store_where_they_looked(tmp_path):
    for command in ("status", "report"):
        proc = run_cli(command, cwd=tmp_path)
        assert proc.returncode == 1
        assert proc.stderr.strip() == (f"video-supervisor {command}: no job store at {tmp_path}/state/jobs.sqlite3: "
                                       "run it where the supervisor ran (relative paths are from there), or pass "
                                       "--settings or --state-db")


@pytest.mark.parametrize("key", ["output_dir", "log_dir"])
def test_an_output_or_log_folder_that_cannot_be_written_stops_the_run_before_any_job(tmp_path, key):
    _tree(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    settings = settings_file(tmp_path, extra=f'{key} = "a-file/inside"')
    text = settings.read_text()
    settings.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith(f"{key} = \"")
                                  or "a-file" in ln))
    proc = run_cli("--settings", str(settings), "--videos-dir", str(tmp_path / "site" / "videos"), cwd=tmp_path)
    assert proc.returncode == 78
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"video-supervisor: {settings}: {key}: {tmp_path}/a-file/inside: cannot write there as "
                           f"uid {os.getuid()} (")
    assert line.endswith("); make it writable by this user, or choose another") and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs.jsonl").exists()


def test_the_model_flag_sets_the_workers_model_and_is_blamed_when_missing(tmp_path):
    from supervisor.commands.cli import build_parser, settings_from_args

    args = build_parser().parse_args(["--model", str(tmp_path / "mine.pt")])
    assert settings_from_args(args).worker.model == tmp_path / "mine.pt"
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    proc = run_cli("--videos-dir", "videos", "--model", "nowhere.pt", cwd=tmp_path)
    assert proc.returncode == 78
    assert f"{tmp_path}/nowhere.pt: missing" in proc.stderr and "pass --model PATH" in proc.stderr


@pytest.mark.parametrize(("name", "present", "meant"), [
    ("camera_53", {"camera_35"}, "camera_35"),  # digits swapped: a typo
    ("camera_3S", {"camera_35"}, "camera_35"),  # a letter for a digit
    ("cam13", {"cam1"}, None),  # another camera's number: not installed yet, perhaps
    ("entrance_2", {"entrance_1"}, None),
    ("patio", {"camera_35"}, None),
])
def test_a_typo_is_told_from_another_cameras_name(name, present, meant):
    from supervisor.commands.mistakes import typo_of

    assert typo_of(name, present) == meant


def test_a_camera_of_the_settings_file_not_recording_yet_is_a_warning_and_a_typo_stops(tmp_path):
    videos = _tree(tmp_path, ("cam1", "cam2"))
    for listed, code in (('cameras = ["cam13"]', 0), ('cameras = ["camm1"]', 78)):
        settings = settings_file(tmp_path, extra=listed)
        proc = run_cli("--settings", str(settings), "--videos-dir", str(videos), cwd=tmp_path)
        assert proc.returncode == code, proc.stderr
        if code == 0:
            assert f"video-supervisor: warning: {settings}: cameras[0]: no camera 'cam13'" in proc.stderr
        else:
            assert "did you mean 'cam1'?" in proc.stderr
