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


if __name__ == "__main__":
    main()
