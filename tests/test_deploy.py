"""What a host is set up with: `model check|export`, `setup-service --root`, `files`, and `log JOB`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes import REPO, cli, cli_env, fake_worker_command, make_video

MODEL = REPO / "models" / "person.pt"
needs_model = pytest.mark.skipif(not MODEL.is_file(), reason="make test fetches models/person.pt first")


def run(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, env=cli_env(**env), cwd=cwd, timeout=300)


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


def copy_model(dest: Path, *, exports: bool = True, class_map: dict[str, str] | None = None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    model = dest / "person.pt"
    shutil.copyfile(MODEL, model)
    sidecar = json.loads(MODEL.with_name("person.pt.json").read_text())
    if class_map is not None:
        sidecar["class_map"] = class_map
    model.with_name("person.pt.json").write_text(json.dumps(sidecar))
    if exports:
        for engine in ("openvino", "onnxruntime"):
            shutil.copytree(MODEL.with_name(f"person.pt.{engine}"), dest / f"person.pt.{engine}")
    return model


# --- model check ----------------------------------------------------------------------------------


@needs_model
def test_model_check_finds_the_counted_class_through_the_sidecar_and_current_exports(tmp_path):
    model = copy_model(tmp_path / "m")
    out = run("model", "check", str(model))
    assert out.returncode == 0, out.stderr
    assert f"{model}: usable; counts person" in out.stdout
    assert "openvino: current" in out.stdout and "onnxruntime: current" in out.stdout


@needs_model
def test_a_model_without_a_counted_class_is_refused_at_start_before_any_job(tmp_path):
    """The README's old steps installed the weights without their sidecar: the service started, then halted
    on its first job. Now the start says so, in one line, and no job runs."""
    model = copy_model(tmp_path / "m", class_map={})
    make_video(tmp_path / "videos" / "camera_35" / "camera_35_20251114_100000.mp4")
    out = run("--videos-dir", str(tmp_path / "videos"), "--model", str(model), "--output-dir",
              str(tmp_path / "results"), "--state-db", str(tmp_path / "jobs.sqlite3"), "--log-dir",
              str(tmp_path / "logs"), "--allow-root")
    assert out.returncode == 78
    line = one_line(out.stderr)
    assert f"{model}: no class among ['person']: its classes are ['Fall', 'Normal']" in line
    assert "person.pt.json" in line  # the fix: map its classes in the sidecar
    assert not (tmp_path / "jobs.sqlite3").exists() and not (tmp_path / "results").exists()


def test_weights_that_do_not_load_are_refused_with_the_file_named(tmp_path):
    junk = tmp_path / "yolo11n.pt"
    junk.write_bytes(b"<html>a download page, not weights</html>")
    out = run("model", "check", str(junk))
    assert out.returncode == 78
    assert one_line(out.stderr).startswith(f"{junk}: cannot load it as YOLO weights (")


@needs_model
def test_a_model_without_cpu_exports_is_a_warning_at_start_naming_the_command(tmp_path):
    model = copy_model(tmp_path / "m", exports=False)
    (tmp_path / "videos").mkdir()
    settings = tmp_path / "s.toml"
    settings.write_text(f'videos_dir = "videos"\n[worker]\nmodel = "{model}"\n')
    warning = (f"{model}: no current CPU export, so jobs run on torch, 3-4x slower; make them: "
               f"video-supervisor model export {model}")
    start = run("--settings", str(settings), "--allow-root", cwd=tmp_path)
    assert start.returncode == 0  # nothing to do, but said at start, once
    assert start.stderr.count(warning) == 1 and f"video-supervisor: warning: {warning}" in start.stderr
    out = run("model", "check", "--settings", str(settings))
    assert out.returncode == 0
    assert f"warning: {warning}" in out.stderr
    made = run("model", "export", str(model), "--engines", "onnxruntime")
    assert made.returncode == 0, made.stderr
    assert f"{model}.onnxruntime: made from {model}" in made.stdout
    again = run("model", "check", "--settings", str(settings))
    assert again.returncode == 0 and "warning" not in again.stderr and "onnxruntime: current" in again.stdout


def test_model_verbs_need_a_known_verb():
    out = run("model", "download")
    assert out.returncode == 2 and "invalid choice: 'download'" in out.stderr


# --- files ----------------------------------------------------------------------------------------


def test_files_lists_and_prints_what_a_host_needs():
    out = run("files")
    assert out.returncode == 0
    names = [line.split()[0] for line in out.stdout.splitlines()]
    for name in ("systemd/video-supervisor.service", "systemd/video-supervisor.sysusers.conf",
                 "systemd/video-supervisor.tmpfiles.conf", "systemd/video-supervisor.toml",
                 "etc/video-supervisor.toml", "etc/rois.toml"):
        assert name in names
    shown = run("files", "etc/rois.toml")
    assert shown.returncode == 0 and shown.stdout == (REPO / "etc" / "rois.toml").read_text()
    missing = run("files", "etc/nope.toml")
    assert missing.returncode == 1 and one_line(missing.stderr).startswith("video-supervisor files: etc/nope.toml: ")


# --- setup-service --root -------------------------------------------------------------------------


@needs_model
def test_setup_service_stages_the_unit_user_folders_settings_and_model(tmp_path):
    if shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None:
        pytest.fail("systemd-sysusers and systemd-tmpfiles are missing: `make test` installs systemd")
    root = tmp_path / "root"
    source = copy_model(tmp_path / "weights")
    out = run("setup-service", "--root", str(root), "--model", str(source))
    assert out.returncode == 0, out.stdout + out.stderr
    unit = (root / "etc/systemd/system/video-supervisor.service").read_text()
    program = Path(sys.executable).parent / "video-supervisor"
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    # The program as run here (`python -m supervisor` from a checkout, the installed script from a wheel).
    assert exec_start.endswith("--daemon --settings /etc/video-supervisor/video-supervisor.toml")
    assert exec_start.startswith((f"ExecStart={program} ", f"ExecStart={sys.executable} -m supervisor "))
    assert "ReadWritePaths=/srv/video-supervisor/results" in unit.splitlines()
    passwd = (root / "etc/passwd").read_text()
    uid = int(next(ln for ln in passwd.splitlines() if ln.startswith("video-supervisor:")).split(":")[2])
    results = root / "srv/video-supervisor/results"
    if os.geteuid() == 0:
        assert results.stat().st_uid == uid
    assert oct(results.stat().st_mode & 0o777) == "0o750"
    settings = root / "etc/video-supervisor/video-supervisor.toml"
    assert settings.read_text() == (REPO / "systemd" / "video-supervisor.toml").read_text()
    rois = (root / "etc/video-supervisor/rois.toml").read_text()
    assert all(not line.strip() or line.startswith("#") for line in rois.splitlines())  # examples off
    model = root / "opt/video-supervisor/models/person.pt"
    assert model.read_bytes() == source.read_bytes() and model.with_name("person.pt.json").is_file()
    assert json.loads((model.parent / "person.pt.openvino" / "source.json").read_text())["engine"] == "openvino"
    assert f"checked {model}: counts person" in out.stdout
    assert f"systemctl --root={root} enable video-supervisor" in out.stdout

    # Again, after the site edited its settings and moved its results: its file is kept, the shipped one goes
    # beside it, and the unit and the folder follow its output_dir.
    settings.write_text(settings.read_text().replace('output_dir = "/srv/video-supervisor/results"',
                                                     'output_dir = "/data/counts"'))
    again = run("setup-service", "--root", str(root))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"kept {settings} (edited here); the shipped one is {settings}.dist" in again.stdout
    assert 'output_dir = "/data/counts"' in settings.read_text()
    assert "ReadWritePaths=/data/counts" in (root / "etc/systemd/system/video-supervisor.service").read_text()
    assert (root / "data/counts").is_dir()
    assert f"unchanged {root}/etc/video-supervisor/rois.toml" in again.stdout


def test_setup_service_without_a_model_says_how_to_get_one(tmp_path):
    if shutil.which("systemd-sysusers") is None:
        pytest.fail("systemd-sysusers is missing: `make test` installs systemd")
    out = run("setup-service", "--root", str(tmp_path / "root"))
    assert out.returncode == 78
    line = out.stderr.strip().splitlines()[-1]
    assert line == (f"video-supervisor setup-service: no model at {tmp_path}/root/opt/video-supervisor/models/"
                    "person.pt: pass --model YOUR_WEIGHTS.pt (`video-supervisor model fetch` gets the demo's person "
                    "model into models/)")


def test_setup_service_for_the_real_root_needs_root(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("run as root, it would install for real")
    out = run("setup-service")
    assert out.returncode == 1 and "run it with sudo, or stage it with --root DIR" in out.stderr


# --- log JOB --------------------------------------------------------------------------------------


def _settings(tmp_path: Path, *extra: str) -> Path:
    command = fake_worker_command(*extra, seconds=0.05)
    path = tmp_path / "s.toml"
    path.write_text('videos_dir = "videos"\n[discovery]\nsettle_seconds = 0\n'
                    f"[worker]\ncommand = {json.dumps(command)}\nmax_attempts = 2\nretry_backoff_seconds = 0.05\n")
    return path


def test_log_shows_every_attempt_of_a_job_with_its_stderr(tmp_path):
    make_video(tmp_path / "videos" / "camera_35" / "camera_35_20251114_100000.mp4")
    settings = _settings(tmp_path, "--exit", "3")
    done = run("--settings", str(settings), "--allow-root", cwd=tmp_path)
    assert done.returncode == 1  # failed for good
    out = run("log", "1", "--settings", str(settings), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "job 1 camera_35/camera_35_20251114_100000.mp4: dead, attempt 2"
    assert sum(" attempt 1 started: " in ln for ln in lines) == 1
    assert sum(" attempt 2 started: " in ln for ln in lines) == 1
    assert sum(ln.endswith("stderr: fake worker failing on purpose with exit 3") for ln in lines) == 2
    assert sum("attempt ended: failed (exit 3)" in ln for ln in lines) == 2
    assert any('event: {"event": "progress"' in ln for ln in lines)
    unknown = run("log", "7", "--settings", str(settings), cwd=tmp_path)
    assert unknown.returncode == 1 and one_line(unknown.stderr).startswith("video-supervisor log: no job 7 in ")


def test_log_follow_prints_as_the_job_runs_and_ends_with_it(tmp_path):
    make_video(tmp_path / "videos" / "camera_35" / "camera_35_20251114_100000.mp4")
    gate = tmp_path / "gate"
    gate.touch()
    settings = _settings(tmp_path, "--hold-while", str(gate))
    daemon = subprocess.Popen(cli("--settings", str(settings), "--allow-root"), cwd=tmp_path, env=cli_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        job_log = tmp_path / "logs" / "jobs" / "1.log"
        deadline = time.monotonic() + 120  # a cap, not a timing: the job is held until the gate goes
        while "progress" not in (job_log.read_text() if job_log.is_file() else ""):
            assert time.monotonic() < deadline and daemon.poll() is None, "the job never started"
            time.sleep(0.1)
        follow = subprocess.Popen(cli("log", "1", "--follow", "--settings", str(settings)), cwd=tmp_path,
                                  env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert follow.stdout is not None
        head = follow.stdout.readline()
        assert head == "job 1 camera_35/camera_35_20251114_100000.mp4: running, attempt 1\n"
        assert " attempt 1 started: " in follow.stdout.readline()
        gate.unlink()  # the job goes on and ends; --follow ends with it
        rest, err = follow.communicate(timeout=120)
        assert follow.returncode == 0, err
        assert '"event": "done"' in rest and "attempt ended: succeeded (exit 0)" in rest
        assert rest.splitlines()[-1] == "job 1: done"
    finally:
        gate.unlink(missing_ok=True)
        assert daemon.wait(timeout=120) == 0
