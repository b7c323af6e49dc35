"""Promise: whatever a site drops into the videos directory, each bad file gets one clear line, none
crashes the daemon or reaches the worker as anything but one argument, and nothing is retried forever."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from tests.daemon_harness import Daemon, daemon_settings, set_worker_command
from tests.fakes import REPO, cli, cli_env, make_video, write_bad_video
from workers.scenes import DEFAULT_ACTORS, write_scene


def jobs_by_name(tmp_path: Path) -> dict[str, object]:
    store = JobStore.open(tmp_path / "state" / "jobs.sqlite3", readonly=True)
    try:
        return {j.path.name: j for j in store.jobs()}
    finally:
        store.close()


def detect_settings(tmp_path: Path, **kw) -> Path:
    """Daemon settings with the real detection worker and the offline person model."""
    p = daemon_settings(tmp_path, **kw)
    p.write_text(p.read_text().replace("retry_backoff_seconds = 0.1", "retry_backoff_seconds = 0.1\nmax_attempts = 2"))
    cmd = ["{python}", "-m", "workers.detect", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
           "--model", str(REPO / "models" / "person.pt"), "--duration", "1"]
    return set_worker_command(p, cmd)


def test_a_growing_recording_waits_until_it_has_been_stable_for_settle_seconds(tmp_path):
    growing = tmp_path / "videos" / "cam" / "cam_20251114_100000.ts"
    growing.parent.mkdir(parents=True)
    growing.write_bytes(b"\0" * 1000)
    settings = daemon_settings(tmp_path, rescan=0.2)
    settings.write_text(settings.read_text().replace("settle_seconds = 0", "settle_seconds = 1.0"))
    stop = threading.Event()
    last_write = [time.time()]

    def keep_writing():
        for _ in range(12):  # a recorder appending for about 2.4 s
            if stop.is_set():
                return
            with open(growing, "ab") as f:
                f.write(b"\1" * 500)
            last_write[0] = time.time()
            time.sleep(0.2)

    writer = threading.Thread(target=keep_writing)
    d = Daemon(settings)
    try:
        writer.start()
        started = d.wait_for("job_started", timeout=30)
        writer.join()
        runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()] \
            if (tmp_path / "runs.jsonl").exists() else []
        d.wait_for("job_succeeded")
        d.signal(signal.SIGTERM)
        d.wait()
    finally:
        stop.set()
        d.stop()
    first_start = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[0])["start"]
    assert first_start >= last_write[0] + 1.0  # stable for settle_seconds before it began
    assert started["video"] == str(growing) and len(runs) <= 1
    assert jobs_by_name(tmp_path)[growing.name].size == growing.stat().st_size


def test_an_mp4_without_its_index_is_bad_input_once_and_retried_when_the_file_changes(tmp_path):
    good = write_scene(tmp_path / "scene.mp4", DEFAULT_ACTORS, seconds=2)
    broken = tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4"
    broken.parent.mkdir(parents=True)
    data = good.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # the recorder was killed: no moov atom
    old = time.time() - 3600
    os.utime(broken, (old, old))
    d = Daemon(detect_settings(tmp_path, rescan=0.3))
    try:
        dead = d.wait_for("job_dead", timeout=60)
        assert dead["exit_code"] == 65 and dead["attempts"] == 1
        assert "cannot open as a video" in dead["error"] and str(broken) in dead["error"]
        scans = d.count("scan_complete")
        d.wait_for("scan_complete", n=scans + 3, timeout=60)  # three rescans: not retried while the file stays
        assert d.count("job_started") == 1
        # The file changes (recovered, re-uploaded, put in place whole as an upload tool does): another go.
        staged = broken.with_name(f".{broken.name}.upload")
        shutil.copyfile(good, staged)
        os.utime(staged, (old + 60, old + 60))
        os.replace(staged, broken)
        d.wait_for("job_succeeded", timeout=90)
        d.signal(signal.SIGTERM)
        d.wait()
    finally:
        d.stop()
    assert jobs_by_name(tmp_path)[broken.name].state is JobState.DONE


ODD_NAMES = [
    "name with spaces_20251114_100000.mp4",
    "quote's \"double\"_20251114_100100.mp4",
    "ünïcödé_カメラ_20251114_100200.mp4",
    "--help_20251114_100300.mp4",
    "-rf _20251114_100400.mp4",
    "new\nline_20251114_100500.mp4",
    "$(touch pwned)_20251114_100600.mp4",
]


def test_odd_names_reach_the_worker_as_exactly_one_argument(tmp_path):
    for name in ODD_NAMES:
        make_video(tmp_path / "videos" / "cam 1" / name)
    argv_log = tmp_path / "argv.jsonl"
    settings = daemon_settings(tmp_path)
    # The worker records the argv it received: python -c '...' VIDEO
    cmd = ["{python}", "-c", "import json, sys; open(sys.argv[2], 'a').write(json.dumps(sys.argv[1:]) + '\\n')",
           "{video}", str(argv_log)]
    set_worker_command(settings, cmd)
    proc = subprocess.run(cli("--settings", str(settings)), capture_output=True, text=True, env=cli_env(),
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    received = [json.loads(line)[0] for line in argv_log.read_text().splitlines()]
    expected = {str(tmp_path / "videos" / "cam 1" / n) for n in ODD_NAMES}
    assert set(received) == expected and len(received) == len(ODD_NAMES)
    assert not (tmp_path / "pwned").exists()
    listing = subprocess.run(cli("--settings", str(settings), "--list"), capture_output=True, text=True,
                             env=cli_env(), timeout=60)
    assert listing.returncode == 0
    assert "new\\nline_20251114_100500.mp4" in listing.stdout  # one line per video, newline shown escaped
    assert len(listing.stdout.splitlines()) == len(ODD_NAMES) + 2


@pytest.mark.parametrize("kind", ["empty", "random", "text", "directory"])
def test_corrupt_files_get_one_clear_line_and_do_not_stop_the_rest(tmp_path, kind):
    cam = tmp_path / "videos" / "cam"
    good = write_scene(cam / "cam_20251114_090000.mp4", DEFAULT_ACTORS, seconds=1)
    old = time.time() - 3600
    os.utime(good, (old, old))
    bad = write_bad_video(cam, "cam_20251114_100000", kind)
    if bad.is_file():
        os.utime(bad, (old, old))
    settings = detect_settings(tmp_path)
    proc = subprocess.run(cli("--settings", str(settings)), capture_output=True, text=True, env=cli_env(),
                          timeout=300)
    jobs = jobs_by_name(tmp_path)
    assert jobs[good.name].state is JobState.DONE
    if kind in ("empty", "directory"):
        # Never a job: an empty file may still be recording, a directory is not a file.
        assert bad.name not in jobs and proc.returncode == 0
        return
    assert proc.returncode == 1
    assert jobs[bad.name].state is JobState.DEAD and jobs[bad.name].attempts == 1
    dead = [json.loads(line) for line in proc.stdout.splitlines() if '"job_dead"' in line]
    assert len(dead) == 1 and str(bad) in dead[0]["error"] and dead[0]["error"].count("\n") == 0


def test_an_unreadable_file_is_reported_not_fatal(tmp_path):
    """Root reads everything; without the DAC override capabilities a mode-000 file is unreadable even to it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the file-permission override capabilities")
    cam = tmp_path / "videos" / "cam"
    secret = write_scene(cam / "cam_20251114_100000.mp4", DEFAULT_ACTORS, seconds=1)
    readable = write_scene(cam / "cam_20251114_110000.mp4", DEFAULT_ACTORS, seconds=1)
    old = time.time() - 3600
    for f in (secret, readable):
        os.utime(f, (old, old))
    secret.chmod(0o000)
    settings = detect_settings(tmp_path)
    proc = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cli(
        "--settings", str(settings))], capture_output=True, text=True, env=cli_env(), timeout=180)
    assert proc.returncode == 1, proc.stderr
    dead = [json.loads(line) for line in proc.stdout.splitlines() if '"job_dead"' in line]
    assert len(dead) == 1 and dead[0]["exit_code"] == 65 and str(secret) in dead[0]["error"], dead
    assert "cannot read the file: Permission denied" in dead[0]["error"]
    jobs = jobs_by_name(tmp_path)
    assert jobs[readable.name].state is JobState.DONE and jobs[secret.name].state is JobState.DEAD
