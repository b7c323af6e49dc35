"""GPU health driving concurrency: scripted and simulated probes, fake workers, no GPU needed."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import pytest
from structlog.contextvars import merge_contextvars
from structlog.processors import TimeStamper
from structlog.testing import capture_logs

from supervisor.config import GpuSettings, SchedulerSettings, SimulatedGpuSettings
from supervisor.gpu.monitor import NO_DRIVER_WARNING, open_probe
from supervisor.gpu.nvml import NvmlProbe
from supervisor.gpu.probe import ProbeUnavailable
from supervisor.gpu.scripted import ScriptedProbe, ScriptError
from tests.fakes import cli, cli_env, fake_worker_command, make_settings, make_video


def timed_logs():
    return capture_logs(processors=[merge_contextvars, TimeStamper(fmt=None)])


def write_script(path, steps):
    path.write_text("\n".join(json.dumps(s) for s in steps) + "\n")
    return path


@pytest.mark.faults
def test_gpu_faults_change_limits_but_never_kill_running_jobs(tmp_path):
    from tests.test_event_order import run_on_clock

    for i in range(10):
        make_video(tmp_path / "videos" / f"cam/cam_20251114_10{i:02d}00.mp4")
    script = write_script(tmp_path / "gpu.jsonl", [
        {"t": 0, "gpu": 0, "temperature": 50},
        {"t": 3, "gpu": 0, "temperature": 95, "throttle": ["hw_slowdown"]},
        {"t": 6, "gpu": 0, "error": "NVMLError_GpuIsLost: GPU is lost"},
        {"t": 6.5, "gpu": 0, "error": "NVMLError_GpuIsLost: GPU is lost"},
        {"t": 10, "gpu": 0, "missing": True},
        {"t": 15, "gpu": 0, "temperature": 55},
    ])
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=3),
                      gpu=GpuSettings(probe=f"scripted:{script}", poll_seconds=0.5, snapshot_seconds=600,
                                      unknown_grace_seconds=3))
    with timed_logs() as logs:
        code, _, launcher = run_on_clock(s, script=lambda video, attempt: (6.0, 0),
                                         probe=lambda clock: ScriptedProbe(script, clock=clock.monotonic))
    assert code == 0
    ends = [c for _, kind, _, c in launcher.events if kind == "end"]
    assert len(ends) == 10 and set(ends) == {0}  # nobody was killed by a health change
    errors = [e for e in logs if e["event"] == "gpu_read_error"]
    assert len(errors) == 2  # once per kind: the lost GPU, then the missing reading
    assert any(e["event"] == "gpu_monitoring_lost" for e in logs)
    limits = [e["new"] for e in logs if e["event"] == "parallelism_changed"]
    assert limits[:2] == [1, 3]  # critical on throttle; back to max_parallel after the grace period


def test_two_simulated_gpus_share_the_work_each_within_its_own_limit(tmp_path):
    from supervisor.gpu.simulated import SimulatedProbe
    from tests.test_event_order import run_on_clock

    for i in range(12):
        make_video(tmp_path / "videos" / f"cam/cam_20251114_10{i:02d}00.mp4")
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=2),
                      gpu=GpuSettings(probe="simulated", poll_seconds=0.5, snapshot_seconds=600,
                                      simulated=SimulatedGpuSettings(count=2)))
    code, sup, launcher = run_on_clock(s, script=lambda video, attempt: (3.0, 0),
                                       probe=lambda clock: SimulatedProbe(2, clock=clock.monotonic))
    assert code == 0
    spans: dict[str, list[tuple[float, float]]] = {"0": [], "1": []}
    began: dict[str, float] = {}
    for at, kind, video, _ in launcher.events:
        if kind == "start":
            began[video] = at
        else:
            spans[launcher.gpu_of[video]].append((began.pop(video), at))

    def most_at_once(intervals):
        edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
        level = most = 0
        for _, step in edges:
            level += step
            most = max(most, level)
        return most

    assert len(spans["0"]) + len(spans["1"]) == 12
    assert abs(len(spans["0"]) - len(spans["1"])) <= 2  # spread, not piled on one card
    assert most_at_once(spans["0"]) <= 2 and most_at_once(spans["1"]) <= 2
    assert launcher.peak == 4
    assert sup.monitor.readings[0].temperature > 45  # the model heated with the load


def test_simulated_gpu_heats_toward_its_load_and_cools_when_idle():
    from supervisor.gpu.simulated import SimulatedProbe

    now = [0.0]
    load = {0: 2}
    sim = SimulatedProbe(1, ambient=45, heat_per_job=13, tau=60, clock=lambda: now[0])
    sim.watch_load(lambda: dict(load))
    sim.read()
    now[0] = 60.0
    t1 = sim.read()[0].temperature
    assert t1 == pytest.approx(71 - 26 * 0.36788, abs=0.01)  # one time constant: 63% of the way
    now[0] = 6000.0
    assert sim.read()[0].temperature == pytest.approx(71, abs=0.01)
    load[0] = 0
    sim.read()
    now[0] = 12000.0
    assert sim.read()[0].temperature == pytest.approx(45, abs=0.01)


def test_without_an_nvidia_driver_one_warning_and_a_normal_run(tmp_path):
    with pytest.raises(ProbeUnavailable):
        NvmlProbe()
    probe, why = open_probe(GpuSettings(probe="auto"))
    assert probe.name == "none" and why
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = tmp_path / "vs.toml"
    cmd = fake_worker_command()
    settings.write_text(
        f'videos_dir = "videos"\n[discovery]\nsettle_seconds = 0\n[worker]\ncommand = {json.dumps(cmd)}\n'
        '[metrics]\nlisten = "127.0.0.1:0"\n')  # any free port: tests run side by side
    proc = subprocess.run(cli("--settings", str(settings)), capture_output=True, text=True, env=cli_env(), timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [json.loads(line) for line in proc.stdout.splitlines() if '"level": "warning"' in line]
    assert [w["message"] for w in warnings] == [NO_DRIVER_WARNING]


def test_scripted_probe_rejects_a_bad_file_with_its_line(tmp_path):
    bad = tmp_path / "gpu.jsonl"
    bad.write_text('{"t": 0, "temperature": 50}\n{"t": 1, "temprature": 60}\n')
    with pytest.raises(ScriptError, match=r"gpu.jsonl:2: unknown field 'temprature'"):
        ScriptedProbe(bad)


def test_scripted_probe_replays_by_time():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = write_script(Path(d) / "s.jsonl", [
            {"t": 0, "gpu": 0, "temperature": 40}, {"t": 5, "gpu": 0, "temperature": 90},
            {"t": 5, "gpu": 1, "temperature": 30}])
        now = [0.0]
        probe = ScriptedProbe(path, clock=lambda: now[0])
        assert probe.indices() == [0, 1]
        first = probe.read()
        assert first[0].temperature == 40 and not first[1].known
        now[0] = 5.0
        assert [r.temperature for r in probe.read()] == [90, 30]


def test_settings_choose_the_probe(tmp_path):
    assert open_probe(GpuSettings(probe="none"))[0].name == "none"
    assert open_probe(GpuSettings(probe="simulated", simulated=SimulatedGpuSettings(count=3)))[0].indices() == [0, 1, 2]
    script = write_script(tmp_path / "s.jsonl", [{"t": 0, "gpu": 2, "temperature": 40}])
    assert open_probe(replace(GpuSettings(), probe=f"scripted:{script}"))[0].indices() == [2]


def test_simulated_sensor_jitter_is_seeded_and_centred_on_the_model():
    from supervisor.gpu.simulated import SimulatedProbe

    def readings(seed):
        now = [0.0]
        sim = SimulatedProbe(1, ambient=45, noise=0.7, seed=seed, clock=lambda: now[0])
        out = []
        for i in range(400):
            now[0] = float(i)
            out.append(sim.read()[0].temperature)
        return out

    a, b, c = readings(1), readings(1), readings(2)
    assert a == b and a != c
    assert abs(sum(a) / len(a) - 45) < 0.2 and max(abs(t - 45) for t in a) < 4 * 0.7
