from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.commands.cli import build_parser, settings_from_args
from supervisor.config import DEFAULT_WORKER_COMMAND, ConfigError, Settings, load_settings
from supervisor.process.command import expand_command
from tests.fakes import REPO, cli, cli_env


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "vs.toml"
    p.write_text(text)
    return p


def test_embedded_defaults_follow_the_seed():
    s = load_settings(None)
    assert s.scheduler.max_parallel == 4
    assert (s.gpu.temp_warm, s.gpu.temp_limit, s.gpu.warm_parallel, s.gpu.critical_parallel) == (70, 80, 2, 1)
    assert s.worker.max_attempts == 3
    assert s.discovery.settle_seconds == 30
    assert s.logging.retention_days == 14
    assert s.discovery.extensions == ("mp4", "mkv", "avi", "mov", "ts")


def test_the_documented_example_file_is_the_defaults():
    s = load_settings(REPO / "etc" / "video-supervisor.toml")
    d = Settings()
    for section in ("scheduler", "discovery", "gpu", "logging"):
        assert getattr(s, section) == getattr(d, section), section
    # Paths in a file are relative to the file: only the model path differs from the embedded default.
    assert replace(s.worker, model=d.worker.model) == d.worker
    assert s.worker.model == REPO / "etc" / "models" / "person.pt"
    assert s.duration == d.duration and s.cameras == d.cameras


def test_file_values_are_read_and_relative_paths_follow_the_file(tmp_path):
    p = write(tmp_path, 'videos_dir = "v"\nstate_db = "/srv/jobs.db"\n[scheduler]\nmax_parallel = 2\n'
                        '[gpu]\ntemp_warm = 65\ntemp_limit = 75.5\n[worker]\ncommand = ["w", "{video}"]\n')
    s = load_settings(p)
    assert s.videos_dir == tmp_path / "v"
    assert s.state_db == Path("/srv/jobs.db")
    assert s.scheduler.max_parallel == 2 and s.gpu.temp_limit == 75.5
    assert s.worker.command == ("w", "{video}")


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("max_paralel = 3\n", "max_paralel", "unknown key"),
        ("[scheduler]\nmax_parallel = \"4\"\n", "scheduler.max_parallel", "expected integer"),
        ("[scheduler]\nmax_parallel = true\n", "scheduler.max_parallel", "expected integer"),
        ("[scheduler]\nmax_parallel = 0\n", "scheduler.max_parallel", "must be >= 1"),
        ("[gpu]\ntemp_warm = 85\n", "gpu.temp_warm", "below gpu.temp_limit"),
        ("[gpu]\nprobe = \"nvidia-smi\"\n", "gpu.probe", "not one of"),
        ("[gpu.simulated]\ntau = 0\n", "gpu.simulated.tau", "> 0"),
        ("[worker]\ncommand = \"python -m x\"\n", "worker.command", "expected list of string"),
        ("[worker]\ncommand = [\"x\", \"{vidoe}\"]\n", "worker.command[1]", "unknown placeholder {vidoe}"),
        ("[worker]\nmax_attempts = 0\n", "worker.max_attempts", ">= 1"),
        ("[discovery]\nextensions = [\".mp4\"]\n", "discovery.extensions[0]", "bare extension"),
        ("[discovery]\npattern = \"(?P<cam>x\"\n", "discovery.pattern", "invalid regular expression"),
        ("[discovery]\npattern = \"(?P<cam>.*)\"\n", "discovery.pattern", "(?P<camera>"),
        ("[logging]\nlevel = \"LOUD\"\n", "logging.level", "must be one of"),
        ("cameras = [\"../etc\"]\n", "cameras[0]", "not a camera id"),
        ("scheduler = 3\n", "scheduler", "expected a table"),
        ("[alerts]\nwebhooks = [\"http://hooks.example:12x/t\"]\n", "alerts.webhooks[0]", "port number"),
        ("[scheduler\n", "-", "invalid TOML"),
    ],
)
def test_bad_settings_name_the_key_and_the_reason(tmp_path, text, key, reason):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(p)
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{p}: {key}: ")


def test_flags_override_the_file(tmp_path):
    p = write(tmp_path, "[scheduler]\nmax_parallel = 2\n[gpu]\ntemp_limit = 85\n")
    args = build_parser().parse_args(["--settings", str(p), "--max-parallel", "3", "--gpu-temp-limit", "75",
                                      "--cameras", "camera_35", "camera_22", "--duration", "60",
                                      "--videos-dir", "vids", "--gpus", "0,1"])
    s = settings_from_args(args)
    assert s.scheduler.max_parallel == 3
    assert s.gpu.temp_limit == 75 and s.gpu.temp_warm < 75
    assert s.cameras == ("camera_35", "camera_22") and s.duration == 60
    assert s.videos_dir == Path("vids").absolute()
    assert s.gpu.gpus == (0, 1)


def test_command_template_fills_whole_arguments_only():
    argv = expand_command(DEFAULT_WORKER_COMMAND, {
        "python": "py", "video": "/v/a b;rm -rf.mp4", "camera": "c", "rois": "", "out": "/o", "duration": "0",
        "attempt": "1", "job_id": "1", "model": "/m.pt", "recorded_at": "2025-11-14T10:00:00",
        "engine": "auto", "motion_gate": "on", "motion_threshold": "6", "motion_max_reuse": "10"})
    assert argv[:3] == ["py", "-m", "workers.detect"]
    assert "--video=/v/a b;rm -rf.mp4" in argv  # one argument, never split or interpreted
    assert "--rois=" in argv and "--camera=c" in argv


def test_bad_settings_file_exits_78_with_one_line(tmp_path):
    p = write(tmp_path, "[worker]\nmax_attempts = \"three\"\n")
    proc = subprocess.run(cli("--settings", str(p), "--videos-dir", str(tmp_path)), capture_output=True,
                          text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 78
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(p) in lines[0] and "worker.max_attempts" in lines[0] and "expected integer" in lines[0]


def test_usage_error_exits_2(tmp_path):
    proc = subprocess.run(cli("--max-parallel", "many"), capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 2


def test_a_reload_changes_what_it_can_and_names_what_waits_for_a_restart(tmp_path):
    from supervisor.config import merge_reload

    old = load_settings(None)
    new = replace(old, state_db=tmp_path / "other.db", reprocess=True,
                  scheduler=replace(old.scheduler, max_parallel=2), gpu=replace(old.gpu, probe="none", temp_limit=75))
    merged, restart = merge_reload(old, new)
    assert restart == ["gpu.probe", "state_db"]
    assert merged.state_db == old.state_db and merged.gpu.probe == old.gpu.probe
    assert merged.scheduler.max_parallel == 2 and merged.gpu.temp_limit == 75  # these take effect at once
    assert merged.reprocess is False  # a reload never re-runs finished videos
    assert merge_reload(old, old) == (old, [])


def test_the_documented_settings_file_names_every_default():
    from tests.fakes import REPO

    documented = load_settings(REPO / "etc" / "video-supervisor.toml")
    defaults = Settings()
    assert documented.worker.command == defaults.worker.command == DEFAULT_WORKER_COMMAND
    assert documented.worker.engine == defaults.worker.engine == "auto"
    assert documented.worker.motion_gate == defaults.worker.motion_gate
    assert documented.worker.motion_threshold == defaults.worker.motion_threshold
    assert documented.worker.motion_max_reuse_seconds == defaults.worker.motion_max_reuse_seconds
    assert documented.worker.max_transient_attempts == defaults.worker.max_transient_attempts
