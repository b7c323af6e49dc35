"""Scheduling by the order of events, on a clock moved by hand and an in-process launcher.

No test here waits on the wall clock: a job "runs" for as long as the script says, in the
manual clock's time, so these hold on a busy 2-core machine exactly as on an idle one. The real
store (SQLite, on its own thread) is used throughout.
"""

from __future__ import annotations

import asyncio
import json

from supervisor.config import GpuSettings, SchedulerSettings, WorkerSettings
from supervisor.gpu.scripted import ScriptedProbe
from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from supervisor.scheduling.supervisor import Supervisor
from tests.fakes import FakeLauncher, ManualClock, engine, make_settings, make_video
from tests.test_scheduling import capture_logs, jobs


def run_on_clock(settings, scenario=None, *, script=None, probe=None, daemon=False):
    """Run a supervisor on a manual clock; `scenario(sup, clock, launcher)` drives it. Returns
    (exit code, supervisor, launcher)."""

    async def main():
        store = JobStore.open(settings.state_db)
        clock = ManualClock()
        launcher = FakeLauncher(clock, script)
        probe_ = probe(clock) if probe is not None else None
        sup = Supervisor(settings, engine(store), clock=clock, launcher=launcher, probe=probe_, daemon=daemon)
        clock.busy = sup.busy_off_loop
        task = asyncio.ensure_future(sup.run())
        try:
            await clock.settle()
            if scenario is not None:
                await scenario(sup, clock, launcher)
            await clock.run_until(task.done)
            return task.result(), sup, launcher
        finally:
            store.close()

    return asyncio.run(main())


def videos(tmp_path, n):
    for i in range(n):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_1{i // 60:01d}{i % 60:02d}00.mp4")


def starts_at(launcher, t):
    return sum(1 for at, kind, _, _ in launcher.events if kind == "start" and at == t)


def test_jobs_start_oldest_first_and_never_above_the_limit(tmp_path):
    videos(tmp_path, 9)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=3))
    code, sup, launcher = run_on_clock(s, script=lambda video, attempt: (10.0, 0))
    assert code == 0 and sup.stats.completed == 9
    assert launcher.peak == 3
    started = [video for _, kind, video, _ in launcher.events if kind == "start"]
    assert started == sorted(started)
    # Three waves, each starting the moment the previous one ended: no polling delay.
    assert [at for at, kind, _, _ in launcher.events if kind == "start"] == [0.0] * 3 + [10.0] * 3 + [20.0] * 3


def test_resizing_while_jobs_run_both_ways(tmp_path):
    videos(tmp_path, 14)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=4))

    async def scenario(sup, clock, launcher):
        assert launcher.running == 4
        sup.slots.set_limit(None, 1)
        await clock.settle()
        assert launcher.running == 4  # shrinking stops nobody
        await clock.advance(10)  # the four end together: one starts, no more
        assert launcher.running == 1
        await clock.advance(10)
        assert launcher.running == 1
        sup.slots.set_limit(None, 3)
        await clock.settle()
        assert launcher.running == 3  # growing starts waiting jobs at once, before any time passes

    code, sup, launcher = run_on_clock(s, scenario, script=lambda video, attempt: (10.0, 0))
    assert code == 0 and sup.stats.completed == 14
    assert [starts_at(launcher, t) for t in (0.0, 10.0, 20.0)] == [4, 1, 3]


def test_a_failed_job_is_retried_after_its_backoff_and_not_before(tmp_path):
    videos(tmp_path, 2)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=2), worker=WorkerSettings(
        command=("worker",), max_attempts=3, retry_backoff_seconds=30, retry_backoff_max_seconds=100))

    def script(video, attempt):
        if video.endswith("100000.mp4") and attempt < 3:
            return (5.0, 1)  # fails twice, then works
        return (5.0, 0)

    with capture_logs() as logs:
        code, _, launcher = run_on_clock(s, script=script)
    assert code == 0
    first = [(at, kind, code) for at, kind, video, code in launcher.events if video.endswith("100000.mp4")]
    # start 0, fail at 5, wait 30 (base), start 35, fail at 40, wait 60 (doubled), start 100, done at 105.
    assert first == [(0.0, "start", None), (5.0, "end", 1), (35.0, "start", None), (40.0, "end", 1),
                     (100.0, "start", None), (105.0, "end", 0)]
    waits = [e["retry_in_seconds"] for e in logs if e["event"] == "job_failed"]
    assert waits == [30.0, 60.0]


def test_exit_65_is_dead_at_once_and_exit_75_retries_up_to_its_own_cap(tmp_path):
    videos(tmp_path, 2)
    s = make_settings(tmp_path, worker=WorkerSettings(command=("worker",), max_attempts=2, max_transient_attempts=4,
                                                      retry_backoff_seconds=1, retry_backoff_max_seconds=1))

    def script(video, attempt):
        return (1.0, 65) if video.endswith("100000.mp4") else (1.0, 75)

    code, sup, launcher = run_on_clock(s, script=script)
    assert code == 1 and sup.stats.dead == 2
    by_video: dict[str, int] = {}
    for _, kind, video, _ in launcher.events:
        if kind == "start":
            by_video[video] = by_video.get(video, 0) + 1
    assert by_video == {"cam_20251114_100000.mp4": 1, "cam_20251114_100100.mp4": 4}


def test_a_stop_drains_for_drain_seconds_then_interrupts_and_requeues_uncharged(tmp_path):
    videos(tmp_path, 3)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=2, drain_seconds=20))

    def script(video, attempt):
        return (10.0, 0) if video.endswith("100000.mp4") else (1000.0, 0)

    async def scenario(sup, clock, launcher):
        await clock.advance(1)
        sup.request_stop()
        await clock.advance(15)  # within the drain: the short job finished, the long one still runs
        assert launcher.running == 1
        await clock.advance(10)  # past the drain: it was stopped

    with capture_logs() as logs:
        code, _, launcher = run_on_clock(s, scenario, script=script, daemon=True)
    assert code == 0
    ends = [(at, video[-10:], c) for at, kind, video, c in launcher.events if kind == "end"]
    assert ends == [(10.0, "100000.mp4", 0), (21.0, "100100.mp4", 143)]  # stopped 20 s after the request
    assert starts_at(launcher, 10.0) == 0  # nothing new started once the stop was asked for
    j = jobs(s)
    assert j["cam_20251114_100100.mp4"].state is JobState.QUEUED and j["cam_20251114_100100.mp4"].attempts == 0
    assert j["cam_20251114_100200.mp4"].state is JobState.QUEUED
    assert next(e for e in logs if e["event"] == "shutdown_complete")["stopped"] == 1


def _scripted_gpu(tmp_path, steps):
    path = tmp_path / "gpu.jsonl"
    path.write_text("\n".join(json.dumps(s) for s in steps) + "\n")
    return path


def test_concurrency_follows_gpu_heat_up_and_cool_down_within_one_poll(tmp_path):
    videos(tmp_path, 60)
    mem = {"memory_used_mb": 1000, "memory_total_mb": 24000}
    script = _scripted_gpu(tmp_path, [
        {"t": 0, "gpu": 0, "temperature": 50, **mem}, {"t": 100, "gpu": 0, "temperature": 75, **mem},
        {"t": 250, "gpu": 0, "temperature": 86, **mem}, {"t": 450, "gpu": 0, "temperature": 60, **mem},
    ])
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=4),
                      gpu=GpuSettings(probe=f"scripted:{script}", poll_seconds=5, snapshot_seconds=3600))
    changes: list[tuple[float, int, int]] = []

    async def scenario(sup, clock, launcher):
        last = sup.slots.total_limit
        while clock.now < 600:
            await clock.advance(1)
            if sup.slots.total_limit != last:
                changes.append((clock.now, last, sup.slots.total_limit))
                last = sup.slots.total_limit

    code, _, launcher = run_on_clock(s, scenario, script=lambda video, attempt: (20.0, 0),
                                     probe=lambda clock: ScriptedProbe(script, clock=clock.monotonic))
    assert code == 0
    assert [(old, new) for _, old, new in changes] == [(4, 2), (2, 1), (1, 4)]
    for (at, _, _), scripted in zip(changes, (100, 250, 450), strict=True):
        assert scripted <= at <= scripted + 5  # within one poll
    # Between the change and the next, once the jobs started before it ended: never above the new limit.
    assert launcher.overlap_between(100 + 5 + 20, 250) == 2
    assert launcher.overlap_between(250 + 5 + 20, 450) == 1
    assert launcher.overlap_between(450 + 5, 10_000) == 4


def test_no_new_job_on_a_gpu_short_of_memory_until_memory_frees(tmp_path):
    videos(tmp_path, 4)
    script = _scripted_gpu(tmp_path, [
        {"t": 0, "gpu": 0, "temperature": 50, "memory_used_mb": 23500, "memory_total_mb": 24000},
        {"t": 80, "gpu": 0, "temperature": 50, "memory_used_mb": 2000, "memory_total_mb": 24000},
    ])
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=4),
                      gpu=GpuSettings(probe=f"scripted:{script}", poll_seconds=5, snapshot_seconds=3600))
    code, _, launcher = run_on_clock(s, script=lambda video, attempt: (10.0, 0),
                                     probe=lambda clock: ScriptedProbe(script, clock=clock.monotonic))
    assert code == 0
    first_start = min(at for at, kind, _, _ in launcher.events if kind == "start")
    assert 80 <= first_start <= 85
    assert starts_at(launcher, first_start) == 4


def test_a_sighup_storm_becomes_at_most_one_scan_a_second(tmp_path):
    videos(tmp_path, 1)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(rescan_seconds=3600))

    async def scenario(sup, clock, launcher):
        await clock.advance(2)
        scans_before = sup.scans
        for _ in range(50):  # fifty HUPs within a tenth of a second
            sup.request_reload()
            await clock.advance(0.002)
        await clock.advance(0.9)
        first_second = sup.scans - scans_before
        await clock.advance(5)
        total = sup.scans - scans_before
        sup.request_stop()
        assert (first_second, total) == (1, 2)  # the first at once, the rest together a second later

    code, sup, _ = run_on_clock(s, scenario, daemon=True)
    assert code == 0 and sup.reloads == 0  # no reload function given: the settings stay
