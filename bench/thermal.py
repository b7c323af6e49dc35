"""Thermal behaviour: the seed's policy against ours on a simulated GPU, in the same run.

The simulated GPU heats toward ambient + heat_per_job * running jobs with time
constant tau, and its readings wobble by `--noise` degrees as a real card's do
(without any jitter neither policy ever flips at a steady load). Time is
compressed (`--speed` simulated seconds per real second) so a batch that would
take an hour runs in a minute; the real supervisor runs real (sleeping) worker
processes.

    seed: 30 s poll, no hysteresis, no throttle/memory input
    ours: 5 s poll, 3 C hysteresis

Prints makespan, peak temperature, seconds above temp_limit, and limit changes
per simulated hour for each. Targets: ours >= 10x fewer seconds above the limit,
<= 1/3 the limit changes, makespan <= 1.05x the seed's.

Then memory: a 12 GB card of which others hold 2 GB, jobs that grow to 3 GB over their first
30 s. The seed admits by count (4 at once: 14 GB at their peaks), so one in four runs out of memory
as it ramps up and is retried; ours admits by memory, counting what ramping jobs will still take.
On the manual clock with the in-process launcher (the test suite's), so it takes seconds. Prints
jobs out of memory and makespan. Target: none out of memory, makespan <= 1.05x the seed's.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from supervisor.app import run_async
from supervisor.config import (
    DiscoverySettings,
    GpuSettings,
    SchedulerSettings,
    Settings,
    WorkerSettings,
)
from supervisor.gpu.probe import GpuReading
from supervisor.gpu.simulated import SimulatedProbe
from supervisor.jobs.sqlite_engine import SqliteEngine
from supervisor.jobs.sqlite_store import JobStore
from supervisor.logs import configure_logging
from supervisor.scheduling.supervisor import Supervisor


@dataclass
class Result:
    makespan: float
    peak: float
    above: float
    changes: int

    @property
    def changes_per_hour(self) -> float:
        return self.changes / (self.makespan / 3600)


def run_policy(tmp: Path, *, name: str, poll: float, hysteresis: float, jobs: int, job_seconds: float,
               speed: float, ambient: float, heat: float, tau: float, noise: float) -> Result:
    root = tmp / name
    rng = random.Random(7)  # the same batch for both policies
    old = time.time() - 3600
    for i in range(jobs):
        p = root / "videos" / "cam" / f"cam_20251114_{i // 60:02d}{i % 60:02d}00.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        # Recordings differ in length: job times spread around the mean. The "video" holds its
        # (compressed) job time, which the stand-in worker sleeps.
        p.write_text(f"{rng.uniform(0.4, 1.6) * job_seconds / speed:.4f}")
        os.utime(p, (old, old))
    origin = time.monotonic()

    def sim_clock() -> float:
        return (time.monotonic() - origin) * speed

    probe = SimulatedProbe(1, ambient=ambient, heat_per_job=heat, tau=tau, noise=noise, seed=11, clock=sim_clock)
    settings = Settings(
        videos_dir=root / "videos", output_dir=root / "out", state_db=root / "jobs.sqlite3", log_dir=root / "logs",
        scheduler=SchedulerSettings(max_parallel=4), discovery=DiscoverySettings(settle_seconds=0),
        gpu=GpuSettings(probe="simulated", poll_seconds=poll / speed, hysteresis=hysteresis,
                        snapshot_seconds=3600, temp_warm=70, temp_limit=80),
        # A worker that starts in milliseconds (a Python one would add seconds of simulated time).
        worker=WorkerSettings(command=("/bin/sh", "-c", 'exec sleep "$(cat "$1")"', "worker", "{video}")),
    )
    sinks = configure_logging(level="WARNING", log_dir=None, console=io.StringIO())
    store = JobStore.open(settings.state_db)
    trace: list[tuple[float, float]] = []
    sup = Supervisor(settings, SqliteEngine(store, owned=False), probe=probe)
    sample_every = 1.0 / speed  # one simulated second

    async def main() -> int:
        async def sample() -> None:
            while True:
                probe.advance()
                trace.append((sim_clock(), probe._temps[0]))
                await asyncio.sleep(sample_every)

        sampler = asyncio.create_task(sample())
        try:
            return await sup.run()
        finally:
            sampler.cancel()

    code = run_async(main())
    store.close()
    sinks.close()
    assert code == 0
    makespan = sim_clock()
    above = sum(t2 - t1 for (t1, temp), (t2, _) in itertools.pairwise(trace) if temp > 80)
    return Result(makespan, max(t for _, t in trace), above, sup.slots.changes)


@dataclass
class MemoryResult:
    makespan: float
    out_of_memory: int
    peak_running: int


class RampingCard:
    """One GPU whose memory is what others hold plus each running job's, growing to its peak over `ramp`
    seconds; a job that starts where the peaks of all running jobs would not fit runs out of memory at the
    end of its ramp (exit 75, as the worker says it)."""

    def __init__(self, clock: Any, launcher: Any, *, total: float, others: float, peak: float, ramp: float) -> None:
        self.clock, self.launcher = clock, launcher
        self.total, self.others, self.peak, self.ramp = total, others, peak, ramp
        self.running: dict[str, float] = {}  # video -> start
        self.oom = 0
        self.name = "ramping"

    def _forget_ended(self) -> None:
        for _, kind, video, _ in self.launcher.events:
            if kind == "end":
                self.running.pop(video, None)

    def used(self) -> float:
        self._forget_ended()
        now = self.clock.monotonic()
        return self.others + sum(self.peak * min(1.0, (now - t) / self.ramp) for t in self.running.values())

    def start(self, video: str, job_seconds: float) -> tuple[float, int, None, str]:
        self._forget_ended()
        self.running[video] = self.clock.monotonic()
        if self.others + self.peak * len(self.running) > self.total:
            self.oom += 1
            return self.ramp, 75, None, f"{video}: CUDA out of memory; will be retried"
        return job_seconds, 0, None, ""

    # The probe's side.
    def indices(self) -> list[int]:
        return [0]

    def read(self) -> list[GpuReading]:
        return [GpuReading(0, temperature=60.0, memory_used_mb=self.used(), memory_total_mb=self.total)]

    def watch_load(self, load: Any) -> None:
        pass

    def close(self) -> None:
        pass


def run_memory(tmp: Path, *, name: str, by_memory: bool, jobs: int, job_seconds: float) -> MemoryResult:
    from tests.fakes import FakeLauncher, ManualClock  # the test suite's manual clock and in-process launcher

    root = tmp / f"memory-{name}"
    old = time.time() - 3600
    for i in range(jobs):
        p = root / "videos" / "cam" / f"cam_20251114_{i // 60:02d}{i % 60:02d}00.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"0")
        os.utime(p, (old, old))
    gpu = GpuSettings(probe="simulated", poll_seconds=5.0, snapshot_seconds=3600, min_free_memory_mb=500,
                      job_memory_mb=3000 if by_memory else 0, memory_ramp_seconds=30.0,
                      oom_cooldown_seconds=0.0 if not by_memory else 600.0)
    settings = Settings(
        videos_dir=root / "videos", output_dir=root / "out", state_db=root / "jobs.sqlite3", log_dir=None,
        scheduler=SchedulerSettings(max_parallel=4), discovery=DiscoverySettings(settle_seconds=0), gpu=gpu,
        worker=WorkerSettings(command=("{python}",), retry_backoff_seconds=0.0, max_transient_attempts=100),
    )
    sinks = configure_logging(level="ERROR", log_dir=None, console=io.StringIO())
    store = JobStore.open(settings.state_db)

    async def main() -> tuple[int, MemoryResult]:
        clock = ManualClock()
        launcher = FakeLauncher(clock)
        card = RampingCard(clock, launcher, total=12000, others=2000, peak=3000, ramp=30)
        launcher.script = lambda video, attempt: card.start(video, job_seconds)
        sup = Supervisor(settings, SqliteEngine(store, owned=False), clock=clock, launcher=launcher, probe=card)
        clock.busy = sup.busy_off_loop
        task = asyncio.ensure_future(sup.run())
        await clock.run_until(task.done, step=1.0, limit=10 * jobs * job_seconds)
        return task.result(), MemoryResult(clock.now, card.oom, launcher.peak)

    code, result = run_async(main())
    store.close()
    sinks.close()
    assert code == 0
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=120)
    p.add_argument("--job-seconds", type=float, default=60.0, help="simulated seconds per job")
    p.add_argument("--speed", type=float, default=100.0, help="simulated seconds per real second")
    p.add_argument("--ambient", type=float, default=45.0)
    p.add_argument("--heat", type=float, default=13.0)
    p.add_argument("--tau", type=float, default=60.0)
    p.add_argument("--noise", type=float, default=0.7, help="sensor jitter (C, one standard deviation)")
    args = p.parse_args()
    common = dict(jobs=args.jobs, job_seconds=args.job_seconds, speed=args.speed, ambient=args.ambient,
                  heat=args.heat, tau=args.tau, noise=args.noise)
    with tempfile.TemporaryDirectory() as d:
        seed = run_policy(Path(d), name="seed", poll=30.0, hysteresis=0.0, **common)
        ours = run_policy(Path(d), name="ours", poll=5.0, hysteresis=3.0, **common)
    print(f"thermal: {args.jobs} jobs of {args.job_seconds * 0.4:g}-{args.job_seconds * 1.6:g} s, simulated GPU "
          f"(ambient {args.ambient:g} C, {args.heat:g} C/job, tau {args.tau:g} s, sensor jitter {args.noise:g} C), "
          f"{args.speed:g}x time compression")
    print(f"  {'policy':<6} {'makespan':>10} {'peak':>8} {'s > 80 C':>9} {'changes/h':>10}")
    for name, r in (("seed", seed), ("ours", ours)):
        print(f"  {name:<6} {r.makespan:>9.0f}s {r.peak:>7.1f}C {r.above:>9.0f} {r.changes_per_hour:>10.1f}")
    above_ratio = seed.above / ours.above if ours.above else float("inf")
    print(f"  seconds above limit: seed/ours = {above_ratio:.1f}x (target >= 10)")
    print(f"  limit changes: ours/seed = {ours.changes_per_hour / max(seed.changes_per_hour, 1e-9):.2f} "
          f"(target <= 0.33)")
    print(f"  makespan: ours/seed = {ours.makespan / seed.makespan:.3f} (target <= 1.05)")
    memory_jobs = 60
    with tempfile.TemporaryDirectory() as d:
        seed_m = run_memory(Path(d), name="seed", by_memory=False, jobs=memory_jobs, job_seconds=args.job_seconds)
        ours_m = run_memory(Path(d), name="ours", by_memory=True, jobs=memory_jobs, job_seconds=args.job_seconds)
    print(f"memory: {memory_jobs} jobs of {args.job_seconds:g} s on a 12 GB card, 2 GB held by others, each job "
          "growing to 3 GB over its first 30 s")
    print(f"  {'policy':<16} {'makespan':>10} {'out of memory':>14} {'most at once':>13}")
    for name, m in (("seed (by count)", seed_m), ("ours (by memory)", ours_m)):
        print(f"  {name:<16} {m.makespan:>9.0f}s {m.out_of_memory:>14} {m.peak_running:>13}")
    print(f"  makespan: ours/seed = {ours_m.makespan / seed_m.makespan:.3f} (target <= 1.05), out of memory: "
          f"{ours_m.out_of_memory} (target 0)")


if __name__ == "__main__":
    main()
