"""The program as a user runs it: real processes, real files, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from supervisor.jobs.sqlite_store import JobStore
from supervisor.logs import cleanup_old_logs
from tests.fakes import cli, cli_env, make_video, read_runs


def settings_file(tmp: Path, *, extra: str = "", seconds: float = 0.05, exit_code: int = 0) -> Path:
    p = tmp / "vs.toml"
    cmd = ["{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
           "--seconds", str(seconds), "--exit", str(exit_code), "--record", str(tmp / "runs.jsonl")]
    p.write_text(
        f'videos_dir = "videos"\noutput_dir = "results"\nstate_db = "state/jobs.sqlite3"\nlog_dir = "logs"\n{extra}\n'
        "[discovery]\nsettle_seconds = 0\n[gpu]\nprobe = \"none\"\n"
        f"[worker]\ncommand = {json.dumps(cmd)}\nmax_attempts = 1\n"
    )
    return p


def _jobs(db: Path):
    if not db.exists():
        return []
    store = JobStore.open(db, readonly=True)
    try:
        return store.jobs()
    finally:
        store.close()


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, env=cli_env(), timeout=timeout)


def test_once_run_processes_everything_writes_the_seed_logs_and_exits_0(tmp_path):
    for c in ("camera_35", "camera_22"):
        for h in (10, 11):
            make_video(tmp_path / "videos" / c / f"{c}_20251114_{h}0000.mp4")
    p = settings_file(tmp_path)
    proc = run_cli("--settings", str(p), "--cameras", "camera_35", "--max-parallel", "1")  # one at a time: order shows
    assert proc.returncode == 0, proc.stderr
    assert [Path(r["video"]).name for r in sorted(read_runs(tmp_path / "runs.jsonl"), key=lambda r: r["start"])] == [
        "camera_35_20251114_100000.mp4", "camera_35_20251114_110000.mp4"]
    console = [json.loads(line) for line in proc.stdout.splitlines()]
    events = [e["event"] for e in console]
    assert events[0] == "supervisor_started" and events[-1] == "run_summary"
    assert "job_started" not in events  # the console stays minimal in a once run
    summary = console[-1]
    assert summary["completed"] == 2 and summary["dead"] == 0
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir() if p.is_file())
    assert len(logs) == 1 and logs[0].startswith("processing_") and logs[0].endswith(".log")
    full = [json.loads(line)["event"] for line in (tmp_path / "logs" / logs[0]).read_text().splitlines()]
    assert full.count("job_started") == 2 and full.count("job_succeeded") == 2
    # Each job's worker output, for `video-supervisor log`.
    assert sorted(os.listdir(tmp_path / "logs" / "jobs")) == ["1.log", "2.log"]
    assert (tmp_path / "results" / "camera_35" / "camera_35_20251114_100000.mp4" / "summary.json").is_file()


def test_failures_exit_1_and_land_in_the_daily_error_log(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    p = settings_file(tmp_path, exit_code=3)
    proc = run_cli("--settings", str(p))
    assert proc.returncode == 1
    errors = list((tmp_path / "logs").glob("errors_*.log"))
    assert len(errors) == 1
    entries = [json.loads(line) for line in errors[0].read_text().splitlines()]
    assert [e["event"] for e in entries] == ["job_dead"]
    assert entries[0]["camera"] == "cam" and "failing on purpose" in entries[0]["stderr_tail"]


def test_list_prints_videos_per_camera_with_time_size_and_state(tmp_path):
    make_video(tmp_path / "videos" / "camera_35" / "camera_35_20251114_100000.mp4", size=3 * 1024 * 1024)
    make_video(tmp_path / "videos" / "camera_35" / "camera_35_20251113_090000.mp4")
    make_video(tmp_path / "videos" / "camera_22" / "clip.mkv")
    p = settings_file(tmp_path)
    assert run_cli("--settings", str(p), "--cameras", "camera_35").returncode == 0
    proc = run_cli("--settings", str(p), "--list")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "camera_22  (1 video)"
    assert "new" in lines[1] and "*" in lines[1]  # time from mtime is marked
    assert lines[2] == "camera_35  (2 videos)"
    assert "2025-11-13 09:00:00" in lines[3] and "done" in lines[3]
    assert "2025-11-14 10:00:00" in lines[4] and "3.0 MB" in lines[4] and "done" in lines[4]
    assert lines[5].startswith("3 videos in 2 cameras")
    assert not (tmp_path / "runs.jsonl").read_text().count("camera_22")


def test_a_second_scheduler_on_the_same_store_is_refused_but_list_works(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    p = settings_file(tmp_path, seconds=30, extra="[scheduler]\ndrain_seconds = 0.2")
    first = subprocess.Popen(cli("--settings", str(p)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=cli_env(), text=True)
    try:
        deadline = time.monotonic() + 30
        while not any(j.state == "running" for j in _jobs(tmp_path / "state" / "jobs.sqlite3")):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        second = run_cli("--settings", str(p))
        assert second.returncode == 75
        assert "already in use by another scheduler" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        listing = run_cli("--settings", str(p), "--list")
        assert listing.returncode == 0 and "running" in listing.stdout
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
    assert first.returncode == 130  # interrupted once run: the job went back to the queue


def test_bad_roi_file_exits_78_naming_camera_and_region(tmp_path):
    rois = tmp_path / "rois.toml"
    rois.write_text('[cameras.camera_35]\n[[cameras.camera_35.regions]]\nname = "door"\npoints = [[0,0],[1,1]]\n')
    (tmp_path / "videos").mkdir()
    proc = run_cli("--settings", str(settings_file(tmp_path)), "--config", str(rois))
    assert proc.returncode == 78
    assert proc.stderr.strip() == (f"video-supervisor: {rois}: camera 'camera_35', region 'door': "
                                   "a polygon needs at least 3 points, got 2")


def test_missing_videos_dir_is_a_clear_error(tmp_path):
    proc = run_cli("--settings", str(settings_file(tmp_path)))
    assert proc.returncode == 78 and "videos directory does not exist" in proc.stderr


def test_old_log_files_are_deleted_after_retention(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    old, new, other = logs / "processing_20250101_000000.log", logs / "errors_20251101.log", logs / "keep.txt"
    for f in (old, new, other):
        f.write_text("x")
    fifteen_days = time.time() - 15 * 86400
    os.utime(old, (fifteen_days, fifteen_days))
    os.utime(other, (fifteen_days, fifteen_days))
    assert cleanup_old_logs(logs, 14) == [old]
    assert not old.exists() and new.exists() and other.exists()


def test_daemon_refuses_root_unless_allowed(tmp_path):
    if os.geteuid() != 0:
        return
    (tmp_path / "videos").mkdir()
    proc = run_cli("--settings", str(settings_file(tmp_path)), "--daemon")
    assert proc.returncode == 2 and "refusing to run the daemon as root" in proc.stderr
