"""Scheduler overhead: the supervisor against `xargs -P` on the same commands, in the same run.

Prints the makespan of N short jobs through both and their ratio (target: the
supervisor within 1.15x of xargs), then the time to discover a tree of many
files and record it in the job store.

    python bench/scheduler.py [--jobs 400] [--job-seconds 0.05] [--parallel 4] [--files 100000]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.app import run_async
from supervisor.config import (
    DiscoverySettings,
    GpuSettings,
    SchedulerSettings,
    Settings,
    WorkerSettings,
)
from supervisor.jobs.discovery import scan
from supervisor.jobs.sqlite_engine import SqliteEngine
from supervisor.jobs.store import JobStore
from supervisor.logs import configure_logging
from supervisor.protocol.names import PathParser
from supervisor.scheduling.supervisor import Supervisor


def make_files(root: Path, count: int, cameras: int = 20) -> None:
    old = time.time() - 3600
    per = count // cameras
    for c in range(cameras):
        d = root / f"camera_{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per):
            stamp = f"2025{1 + i // 28000 % 12:02d}{1 + i // 1000 % 28:02d}_{i // 60 % 24:02d}{i % 60:02d}{c % 60:02d}"
            p = d / f"camera_{c:02d}_{stamp}.mp4"
            with open(p, "wb") as f:
                f.write(b"x")
            os.utime(p, (old, old))


def bench_supervisor(tmp: Path, jobs: int, seconds: float, parallel: int) -> float:
    make_files(tmp / "videos", jobs, cameras=4)
    settings = Settings(
        videos_dir=tmp / "videos", output_dir=tmp / "out", state_db=tmp / "jobs.sqlite3", log_dir=tmp / "logs",
        scheduler=SchedulerSettings(max_parallel=parallel), discovery=DiscoverySettings(settle_seconds=0),
        gpu=GpuSettings(probe="none"), worker=WorkerSettings(command=("/bin/sleep", f"{seconds:g}")),
    )
    sinks = configure_logging(level="INFO", log_dir=settings.log_dir, console=io.StringIO())
    store = JobStore.open(settings.state_db)
    started = time.perf_counter()
    code = run_async(Supervisor(settings, SqliteEngine(store, owned=False)).run())
    elapsed = time.perf_counter() - started
    store.close()
    sinks.close()
    assert code == 0, "the benchmark's jobs must all succeed"
    return elapsed


def bench_xargs(jobs: int, seconds: float, parallel: int) -> float:
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallel), "-n", "1", "/bin/sleep"], input=f"{seconds:g}\n" * jobs,
                   text=True, check=True)
    return time.perf_counter() - started


def bench_discovery(tmp: Path, files: int) -> tuple[float, float, float]:
    make_files(tmp / "big", files)
    t = time.perf_counter()
    result = scan(tmp / "big", extensions=("mp4",), settle_seconds=30, now=time.time(), parser=PathParser())
    scanned = time.perf_counter() - t
    assert len(result.videos) == files - files % 20, len(result.videos)
    store = JobStore.open(tmp / "big.sqlite3")
    t = time.perf_counter()
    store.sync(result.videos)
    first_sync = time.perf_counter() - t
    t = time.perf_counter()
    store.sync(result.videos)
    again = time.perf_counter() - t
    store.close()
    return scanned, first_sync, again


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=400)
    p.add_argument("--job-seconds", type=float, default=0.05)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--files", type=int, default=100_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        xargs = bench_xargs(args.jobs, args.job_seconds, args.parallel)
        sup = bench_supervisor(tmp, args.jobs, args.job_seconds, args.parallel)
        ideal = args.jobs * args.job_seconds / args.parallel
        print(f"scheduler: {args.jobs} jobs of {args.job_seconds * 1000:.0f} ms, limit {args.parallel}")
        print(f"  ideal makespan      {ideal:7.2f} s")
        print(f"  xargs -P {args.parallel}          {xargs:7.2f} s")
        print(f"  video-supervisor    {sup:7.2f} s   ({(sup - xargs) / args.jobs * 1000:+.2f} ms/job)")
        print(f"  ratio supervisor/xargs = {sup / xargs:.3f}  (target <= 1.15)")
        scanned, first_sync, again = bench_discovery(tmp, args.files)
        print(f"discovery: {args.files} files")
        print(f"  scan (off the loop)       {scanned:6.2f} s")
        print(f"  store sync, all new       {first_sync:6.2f} s")
        print(f"  store sync, all known     {again:6.2f} s")
        print(f"  rescan total (known tree) {scanned + again:6.2f} s")


if __name__ == "__main__":
    main()
