"""GPU health v2: bands from the card, admission by memory with ramp-up, out-of-memory caps, lost GPUs,
trends. On the scripted probe and the manual clock, with the in-process launcher: no GPU, no wall clock."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import pytest

from supervisor.config import GpuSettings, SchedulerSettings, Settings, WorkerSettings
from supervisor.gpu.monitor import GpuMonitor, SlotTarget
from supervisor.gpu.policy import Health, HealthPolicy, PolicyConfig
from supervisor.gpu.probe import GpuReading
from supervisor.gpu.scripted import ScriptedProbe, ScriptError
from supervisor.gpu.trends import GpuTrends
from supervisor.jobs.model import JobState
from supervisor.observe.status import gpu_details
from supervisor.protocol import EX_SOFTWARE
from supervisor.scheduling.gpu_memory import MemoryAdmission, Running, out_of_memory
from tests.fakes import make_settings
from tests.test_event_order import run_on_clock, videos
from tests.test_scheduling import capture_logs, jobs


def script(path: Path, steps: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(s) for s in steps) + "\n")
    return path


# --- bands from the card --------------------------------------------------------------------------


def test_a_card_that_slows_down_at_78_is_never_run_at_79():
    policy = HealthPolicy(PolicyConfig(temp_warm=70, temp_limit=80, slowdown_margin=3))
    d = policy.decide(GpuReading(0, temperature=76, slowdown_temp=78, shutdown_temp=90), now=0)
    assert d.health is Health.CRITICAL and d.limit == 1  # 76 > 78 - 3
    assert d.thresholds is not None and (d.thresholds.warm, d.thresholds.limit) == (70, 75)
    assert d.thresholds.source == "card slowdown 78 C - 3 C" and "limit 75 C: card slowdown 78 C - 3 C" in d.reason
    cool = HealthPolicy(PolicyConfig(temp_warm=70, temp_limit=80, slowdown_margin=3))
    assert cool.decide(GpuReading(0, temperature=74, slowdown_temp=78), now=0).health is Health.WARM
    # A card whose slowdown point is well above the settings' limit: the settings rule.
    roomy = HealthPolicy(PolicyConfig(temp_warm=70, temp_limit=80, slowdown_margin=3))
    d = roomy.decide(GpuReading(0, temperature=79, slowdown_temp=95), now=0)
    assert d.health is Health.WARM and d.thresholds is not None and d.thresholds.source == "settings"
    # Below even the warm band's start: the warm band ends at the card's limit too.
    low = PolicyConfig(temp_warm=70, temp_limit=80, slowdown_margin=5).thresholds(72)
    assert (low.warm, low.limit) == (67, 67)


def test_status_says_which_bands_are_in_use_and_where_they_came_from():
    probe_readings = [GpuReading(0, temperature=74, slowdown_temp=78, shutdown_temp=92, utilization=50)]

    class Probe:
        name = "test"

        def indices(self):
            return [0]

        def read(self):
            return probe_readings

        def watch_load(self, load):
            pass

        def close(self):
            pass

    monitor = GpuMonitor(Probe(), [0], PolicyConfig(slowdown_margin=3), poll_seconds=5, snapshot_seconds=30,
                         clock=lambda: 0.0, wall=lambda: 1_000_000.0)
    monitor.poll_once()
    (g,) = monitor.snapshot()
    assert (g["temp_warm"], g["temp_limit"], g["thresholds_from"]) == (70, 75, "card slowdown 78 C - 3 C")
    lines = gpu_details({**g, "memory_cap": None, "memory_waiting": None})
    assert lines[0] == ("bands: warm from 70 C, critical above 75 C (card slowdown 78 C - 3 C); the card slows "
                        "down at 78 C, shuts down at 92 C")
    assert lines[1] == "last 1 min: 74-74 C, 50% busy on average, limit as low as 2"


# --- lost and failing GPUs ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [{"lost": True}, {"xid": 79}, {"ecc_uncorrected": 2}])
def test_a_failing_gpu_takes_no_job_for_the_rest_of_the_run(tmp_path, fault):
    path = script(tmp_path / "gpu.jsonl", [{"t": 0, "gpu": 0, "temperature": 50},
                                           {"t": 5, "gpu": 0, "temperature": 50, **fault},
                                           {"t": 10, "gpu": 0, "temperature": 50}])
    probe = ScriptedProbe(path, clock=iter([0.0, 0.0, 5.0, 10.0]).__next__)
    changes: list[tuple[int, str, str, str]] = []
    monitor = GpuMonitor(probe, [0], PolicyConfig(), poll_seconds=5, snapshot_seconds=30, clock=lambda: 0.0,
                         on_health_change=lambda *a: changes.append(a))
    with capture_logs() as logs:
        assert monitor.poll_once()[0].limit == 4
        (lost,) = monitor.poll_once()
        assert (lost.limit, lost.accepting, lost.health) == (0, False, "lost")
        (still,) = monitor.poll_once()  # the readings are fine again: a failed GPU stays failed
        assert (still.limit, still.accepting) == (0, False)
    assert monitor.all_lost and monitor.lost(0) and not monitor.lost(None)
    assert [c[2] for c in changes] == ["lost"]
    (event,) = [e for e in logs if e["event"] == "gpu_lost"]
    assert event["log_level"] == "critical" and event["gpu"] == 0
    assert monitor.snapshot()[0]["fault"] == event["reason"].split(":")[0]


def test_the_scripted_probe_refuses_a_bad_fault(tmp_path):
    with pytest.raises(ScriptError, match=r"gpu.jsonl:1: 'xid' must be an integer"):
        ScriptedProbe(script(tmp_path / "gpu.jsonl", [{"t": 0, "gpu": 0, "temperature": 50, "xid": "79"}]))
    with pytest.raises(ScriptError, match=r"'processes' must map pids to MB"):
        ScriptedProbe(script(tmp_path / "gpu.jsonl", [{"t": 0, "gpu": 0, "temperature": 50, "processes": [1]}]))


def two_gpus_one_lost_at(tmp_path: Path, t: float) -> Path:
    return script(tmp_path / "gpu.jsonl", [
        {"t": 0, "gpu": 0, "temperature": 50}, {"t": 0, "gpu": 1, "temperature": 50},
        {"t": t, "gpu": 1, "temperature": 50, "lost": True},
    ])


def test_a_job_whose_gpu_is_lost_under_it_is_not_charged_and_runs_on_another(tmp_path):
    videos(tmp_path, 4)
    path = two_gpus_one_lost_at(tmp_path, 5)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=1),
                      gpu=GpuSettings(probe=f"scripted:{path}", poll_seconds=1, snapshot_seconds=600))

    def work(video, attempt, env):
        # On GPU 1 a job dies when its GPU goes (at 5 s); elsewhere a job takes 10 s.
        return (6.0, 1) if env.get("VIDEO_SUPERVISOR_GPU") == "1" else (10.0, 0)

    with capture_logs() as logs:
        code, sup, launcher = run_on_clock(s, script=work, probe=lambda clock: ScriptedProbe(path, clock.monotonic))
    assert code == 0 and sup.stats.completed == 4 and sup.stats.dead == 0
    assert all(j.state is JobState.DONE and j.attempts == 1 for j in jobs(s).values())
    (charged,) = [e for e in logs if e["event"] == "job_not_charged"]
    assert charged["reason"] == "GPU 1 failed under it"
    failed_on_1 = [e for e in launcher.events if e[1] == "end" and e[3] == 1]
    assert len(failed_on_1) == 1  # GPU 1 got nothing after it was lost
    assert any(e["event"] == "gpu_lost" and e["gpu"] == 1 for e in logs)


def test_with_every_gpu_lost_the_daemon_drains_and_exits_70(tmp_path):
    videos(tmp_path, 3)
    path = script(tmp_path / "gpu.jsonl", [{"t": 0, "gpu": 0, "temperature": 50},
                                           {"t": 5, "gpu": 0, "error": "NVMLError_GpuIsLost", "lost": True}])
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=1),
                      gpu=GpuSettings(probe=f"scripted:{path}", poll_seconds=1, snapshot_seconds=600))
    with capture_logs() as logs:
        code, _, launcher = run_on_clock(s, script=lambda video, attempt: (3.0, 0), daemon=True,
                                           probe=lambda clock: ScriptedProbe(path, clock.monotonic))
    assert code == EX_SOFTWARE
    (gave_up,) = [e for e in logs if e["event"] == "gpu_all_lost"]
    assert gave_up["reason"] == "every GPU is lost or failing" and "exiting 70" in gave_up["action"]
    assert launcher.peak == 1 and sum(1 for e in launcher.events if e[1] == "start") == 2  # none after 5 s
    assert {j.state for j in jobs(s).values()} == {JobState.DONE, JobState.QUEUED}  # the rest wait for a restart


# --- admission by memory --------------------------------------------------------------------------


def test_admission_counts_what_jobs_still_ramping_will_take(tmp_path):
    """12 GB, 4 GB used by others. The seed would start four 2 GB-peak jobs at once (free memory looks fine
    at each start) and run out; admission by memory starts three, and the fourth only once there is room."""
    videos(tmp_path, 5)
    path = script(tmp_path / "gpu.jsonl", [
        {"t": 0, "gpu": 0, "temperature": 50, "memory_used_mb": 4000, "memory_total_mb": 12000},
        # The three have grown into their peaks: 2 GB free, under one job and the reserve.
        {"t": 20, "gpu": 0, "temperature": 50, "memory_used_mb": 10000, "memory_total_mb": 12000},
    ])
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=4),
                      gpu=GpuSettings(probe=f"scripted:{path}", poll_seconds=1, snapshot_seconds=600,
                                      job_memory_mb=2000, min_free_memory_mb=1500, memory_ramp_seconds=30))

    async def scenario(sup, clock, launcher):
        assert launcher.running == 3  # 8000 free: 3500 for the first, then each ramping job holds 2000 back
        await clock.advance(45)  # past the ramp: still 2000 free, less than 3500
        assert launcher.running == 3
        (g,) = sup.figures.gpus()
        assert g["memory_waiting"].startswith("2000 MB free, 0 MB of it still to be taken by 0 job(s)")
        assert g["expected_job_mb"] == 2000 and g["expected_from"] == "gpu.job_memory_mb"

    with capture_logs() as logs:
        code, sup, launcher = run_on_clock(s, scenario, script=lambda video, attempt: (60.0, 0),
                                           probe=lambda clock: ScriptedProbe(path, clock.monotonic))
    assert code == 0 and sup.stats.completed == 5
    assert launcher.peak == 3
    # Once ours ended, the others' 10 GB stay: one job at a time, never none (a GPU running none of ours
    # always admits one, so nothing waits forever on memory it cannot free).
    assert launcher.overlap_between(60.0, 10_000.0) == 1
    assert any(e["event"] == "gpu_memory_admission_waiting" for e in logs)


def _settings(**gpu: object) -> Settings:
    return Settings(gpu=GpuSettings(**gpu), worker=WorkerSettings(model=Path("m.pt")))  # type: ignore[arg-type]


def test_the_expected_peak_is_learned_per_model_from_what_jobs_used():
    now = [0.0]
    running: deque[Running] = deque([Running(1, 0, 0.0, 101), Running(2, 0, 0.0, 102)])
    settings = _settings(job_memory_mb=3000, min_free_memory_mb=500, memory_ramp_seconds=30)
    book = MemoryAdmission(lambda: settings, lambda: list(running), lambda: now[0])
    assert book.expected_mb() == 3000
    book.observe([SlotTarget(0, 4, memory_free_mb=9000, process_memory_mb=((101, 900.0), (102, 1100.0)))])
    assert book.admits(0)  # 9000 - (3000-900) - (3000-1100) = 5000 >= 3500
    for job in (1, 2):
        book.finished(job, 0, out_of_memory=False, running_on_gpu=2)
    assert book.expected_mb() == 1100  # the 90th percentile of what jobs of this model used
    assert book.figures(0)["expected_from"] == "p90 of 2 jobs"


def test_an_out_of_memory_exit_caps_its_gpu_for_a_while(tmp_path):
    videos(tmp_path, 6)
    path = script(tmp_path / "gpu.jsonl", [{"t": 0, "gpu": 0, "temperature": 50}])
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=3),
                      gpu=GpuSettings(probe=f"scripted:{path}", poll_seconds=1, snapshot_seconds=600,
                                      oom_cooldown_seconds=30),
                      worker=WorkerSettings(command=("{python}",), retry_backoff_seconds=1))
    first = {"seen": False}

    def work(video, attempt):
        if not first["seen"]:
            first["seen"] = True
            return 5.0, 75, None, "x.mp4: CUDA out of memory; will be retried"
        return 20.0, 0

    with capture_logs() as logs:
        code, sup, launcher = run_on_clock(s, script=work, probe=lambda clock: ScriptedProbe(path, clock.monotonic))
    assert code == 0 and sup.stats.completed == 6
    (capped,) = [e for e in logs if e["event"] == "gpu_memory_capped"]
    assert capped["limit"] == 2 and capped["seconds"] == 30
    assert launcher.overlap_between(5.0, 35.0) <= 2  # one fewer than ran when memory ran out
    assert launcher.peak == 3  # before it
    assert any(e["event"] == "gpu_memory_cap_lifted" for e in logs)
    assert sum(1 for at, kind, _, _ in launcher.events if kind == "start" and at == 35.0) == 1  # the third again


def test_out_of_memory_is_told_from_a_full_disk():
    assert out_of_memory(75, "exit 75: x.mp4: CUDA out of memory; will be retried", "")
    assert not out_of_memory(75, "exit 75: no space left on device", "")
    assert not out_of_memory(1, "CUDA out of memory", "")


# --- trends ---------------------------------------------------------------------------------------


def test_trends_keep_a_point_a_minute_for_the_last_hours():
    trends = GpuTrends(hours=1, point_seconds=60)
    for i in range(200):  # 200 minutes of polls every 30 s
        for half in (0, 30):
            trends.add(0, GpuReading(0, temperature=50 + (i % 10), utilization=80, memory_used_mb=4000,
                                     power_w=200), limit=4, at=60.0 * i + half)
    series = trends.series(0)
    assert len(series) == 61  # the last hour's 60 points, and the minute under way
    assert series[0]["t"] == 60.0 * 139 and series[-1]["t"] == 60.0 * 199
    assert series[-1] == {"t": 60.0 * 199, "temperature": 59, "limit": 4, "utilization": 80.0,
                          "memory_used_mb": 4000, "power_w": 200.0}
    summary = trends.summary(0)
    assert (summary["temperature_min"], summary["temperature_max"], summary["limit_min"]) == (50, 59, 4)


# --- pause when critical --------------------------------------------------------------------------


def critical_between(tmp_path: Path, start: float, end: float) -> Path:
    return script(tmp_path / "gpu.jsonl", [{"t": 0, "gpu": 0, "temperature": 50},
                                           {"t": start, "gpu": 0, "temperature": 90},
                                           {"t": end, "gpu": 0, "temperature": 50}])


@pytest.mark.parametrize("on", [True, False])
def test_a_gpu_critical_for_a_while_pauses_the_newest_workers_and_resumes_the_oldest_first(tmp_path, on):
    videos(tmp_path, 3)
    path = critical_between(tmp_path, 10, 60)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=3),
                      gpu=GpuSettings(probe=f"scripted:{path}", poll_seconds=1, snapshot_seconds=600,
                                      critical_parallel=1, pause_when_critical=on, critical_pause_seconds=20))
    with capture_logs() as logs:
        code, sup, launcher = run_on_clock(s, script=lambda video, attempt: (100.0, 0),
                                           probe=lambda clock: ScriptedProbe(path, clock.monotonic))
    assert code == 0 and sup.stats.completed == 3
    moves = [(at, kind, video[-10:-4]) for at, kind, video, _ in launcher.events if kind in ("pause", "resume")]
    if not on:
        assert moves == []  # the seed's behaviour: hot, and everything that runs runs on
        return
    # Critical from 10 s; 20 s later the two newest stop, the newest first; cooled at 60 s, oldest back first.
    assert moves == [(30.0, "pause", "100200"), (30.0, "pause", "100100"),
                     (60.0, "resume", "100100"), (60.0, "resume", "100200")]
    paused = [e for e in logs if e["event"] == "job_paused"]
    assert len(paused) == 2 and all("1 keep running" in e["action"] for e in paused)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[0]
    except OSError:
        return "gone"


def _wait(cond, what: str, cap: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + cap  # a cap for a broken build, not a timing
    while not cond():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def test_a_paused_worker_is_really_stopped_and_its_timeout_waits_for_it(tmp_path):
    """Real workers: the paused one's process is stopped (state T) until the GPU cools, and though it is paused
    for longer than its whole timeout, it is not timed out: it finishes once resumed."""
    import asyncio

    from tests.fakes import fake_worker_command
    from tests.test_scheduling import run_sup

    videos(tmp_path, 2)
    # Both start on a cool card; it is critical from 1 s on (until the test cools it).
    path = script(tmp_path / "gpu.jsonl", [{"t": 0, "gpu": 0, "temperature": 50},
                                           {"t": 1, "gpu": 0, "temperature": 90}])
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=2),
                      gpu=GpuSettings(probe=f"scripted:{path}", poll_seconds=0.1, snapshot_seconds=600,
                                      critical_parallel=1, pause_when_critical=True, critical_pause_seconds=0),
                      worker=WorkerSettings(command=fake_worker_command(seconds=2, record=tmp_path / "runs.jsonl"),
                                            timeout_seconds=3, max_attempts=1))
    seen: dict[str, object] = {}

    async def during(sup):
        loop_wait = 0.05
        while len(sup.pausing.paused) == 0:
            await asyncio.sleep(loop_wait)
        (job_id,) = sup.pausing.paused
        pid = sup.running[job_id].run.pid
        await asyncio.to_thread(_wait, lambda: _state(pid) == "T", "the paused worker stopped")
        seen["stopped"] = _state(pid)
        await asyncio.sleep(4)  # longer than its whole timeout, paused
        seen["still_running"] = job_id in sup.running
        cool = script(tmp_path / "cool.jsonl", [{"t": 0, "gpu": 0, "temperature": 50}])
        sup.monitor.probe = ScriptedProbe(cool)  # the card cools: readings from now on say 50 C

    with capture_logs() as logs:
        code, sup = run_sup(s, during=during)
    assert seen == {"stopped": "T", "still_running": True}
    assert code == 0 and sup.stats.completed == 2 and sup.stats.dead == 0
    assert not any(e["event"] == "job_failed" for e in logs)
    assert [e["event"] for e in logs if e["event"] in ("job_paused", "job_resumed")] == ["job_paused", "job_resumed"]


def test_a_stop_resumes_paused_workers_so_they_end_cleanly(tmp_path):
    import asyncio

    from tests.fakes import fake_worker_command
    from tests.test_scheduling import run_sup

    videos(tmp_path, 2)
    path = script(tmp_path / "gpu.jsonl", [{"t": 0, "gpu": 0, "temperature": 50},
                                           {"t": 1, "gpu": 0, "temperature": 90}])
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=2, drain_seconds=0.5),
                      gpu=GpuSettings(probe=f"scripted:{path}", poll_seconds=0.1, snapshot_seconds=600,
                                      critical_parallel=1, pause_when_critical=True, critical_pause_seconds=0),
                      worker=WorkerSettings(command=fake_worker_command(seconds=30), stop_grace_seconds=30))

    async def during(sup):
        while not sup.pausing.paused:
            await asyncio.sleep(0.05)
        sup.request_stop()

    with capture_logs() as logs:
        code, _ = run_sup(s, during=during, daemon=True)
    assert code == 0
    resumed = [e for e in logs if e["event"] == "job_resumed"]
    assert len(resumed) == 1 and resumed[0]["reason"] == "the daemon is stopping"
    # Both ended on SIGTERM (a stopped process would have waited out the 30 s grace for SIGKILL).
    assert [e["event"] for e in logs].count("job_interrupted") == 2
    assert {j.state for j in jobs(s).values()} == {JobState.QUEUED}
