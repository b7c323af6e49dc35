"""Scheduler overhead: the supervisor against `xargs -P` on the same commands, in the same run.

Prints, each beside its baseline measured here and now:
  1. the scheduler's own cost a job: 2,000 zero-work jobs, a whole once run of `video-supervisor`
     (start to exit: imports, store, scan, every job, shutdown) against `xargs -P 4 /bin/true` over
     the same list; what the supervisor spends beyond xargs, per job (target: under 1 % of a 10 s
     job, 100 ms; the ratio to xargs is shown, not a target: it measures a mkdir and two synced
     store commits against nothing);
  2. 400 jobs of 50 ms through the scheduler in-process against xargs (target <= 1.10x), then the
     same with workers started by asyncio's own subprocesses (bench/spawn.py), the library way the
     launcher is measured against;
  3. 10,000 jobs in a daemon through a storm of 100 SIGHUPs: time to the last job and peak RSS
     (targets < 60 s and < 200 MB);
then the time to discover a tree of many files and record it in the job store.

    python bench/scheduler.py [--quick] [--files 100000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from spawn import library_spawn  # noqa: E402

from supervisor.app import run_async  # noqa: E402
from supervisor.config import (  # noqa: E402
    DiscoverySettings,
    GpuSettings,
    SchedulerSettings,
    Settings,
    WorkerSettings,
)
from supervisor.jobs.discovery import scan  # noqa: E402
from supervisor.jobs.sqlite_engine import SqliteEngine  # noqa: E402
from supervisor.jobs.sqlite_store import JobStore  # noqa: E402
from supervisor.logs import configure_logging  # noqa: E402
from supervisor.process import runner  # noqa: E402
from supervisor.protocol.names import PathParser  # noqa: E402
from supervisor.scheduling.supervisor import Supervisor  # noqa: E402


def make_files(root: Path, count: int, cameras: int = 20) -> list[Path]:
    old = time.time() - 3600
    per = count // cameras
    made = []
    for c in range(cameras):
        d = root / f"camera_{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per):
            stamp = f"2025{1 + i // 28000 % 12:02d}{1 + i // 1000 % 28:02d}_{i // 60 % 24:02d}{i % 60:02d}{c % 60:02d}"
            p = d / f"camera_{c:02d}_{stamp}.mp4"
            with open(p, "wb") as f:
                f.write(b"x")
            os.utime(p, (old, old))
            made.append(p)
    return made


def settings_file(tmp: Path, command: list[str], parallel: int, *, rescan: float = 3600) -> Path:
    path = tmp / "settings.toml"
    path.write_text(
        f'videos_dir = "{tmp / "videos"}"\nstate_db = "{tmp / "state" / "jobs.sqlite3"}"\n'
        f'output_dir = "{tmp / "out"}"\nlog_dir = "{tmp / "logs"}"\n'
        f"[scheduler]\nmax_parallel = {parallel}\nrescan_seconds = {rescan}\n"
        "[discovery]\nsettle_seconds = 0\n[gpu]\nprobe = \"none\"\n"
        f"[worker]\ncommand = {json.dumps(command)}\n")  # a JSON string array is a TOML one
    return path


def cli() -> list[str]:
    return [sys.executable, "-m", "supervisor"]


def bench_once_run(tmp: Path, jobs: int, parallel: int) -> tuple[float, float]:
    """(supervisor once run, xargs) seconds for `jobs` zero-work jobs."""
    videos = make_files(tmp / "videos", jobs, cameras=4)
    cfg = settings_file(tmp, ["/bin/true", "{video}"], parallel)
    started = time.perf_counter()
    done = subprocess.run([*cli(), "--settings", str(cfg), "--log-level", "WARNING"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    sup = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallel), "-n", "1", "/bin/true"],
                   input="".join(f"{v}\n" for v in videos), text=True, check=True)
    return sup, time.perf_counter() - started


def bench_short_jobs(tmp: Path, jobs: int, seconds: float, parallel: int, *,
                     library: bool = False) -> tuple[float, float]:
    make_files(tmp / "videos", jobs, cameras=4)
    settings = Settings(
        videos_dir=tmp / "videos", output_dir=tmp / "out", state_db=tmp / "jobs.sqlite3", log_dir=tmp / "logs",
        scheduler=SchedulerSettings(max_parallel=parallel), discovery=DiscoverySettings(settle_seconds=0),
        gpu=GpuSettings(probe="none"), worker=WorkerSettings(command=("/bin/sleep", f"{seconds:g}")),
    )
    sinks = configure_logging(level="INFO", log_dir=settings.log_dir, console=io.StringIO())
    store = JobStore.open(settings.state_db)
    ours = runner.spawn
    if library:
        runner.spawn = library_spawn  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        code = run_async(Supervisor(settings, SqliteEngine(store, owned=False)).run())
        sup = time.perf_counter() - started
    finally:
        runner.spawn = ours
    store.close()
    sinks.close()
    assert code == 0, "the benchmark's jobs must all succeed"
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallel), "-n", "1", "/bin/sleep"], input=f"{seconds:g}\n" * jobs,
                   text=True, check=True)
    return sup, time.perf_counter() - started


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def bench_hup_storm(tmp: Path, jobs: int, parallel: int) -> tuple[float, float, int]:
    """(seconds from start to the last job recorded, peak RSS in MB, SIGHUPs sent) for a daemon."""
    make_files(tmp / "videos", jobs, cameras=10)
    log = tmp / "ran.txt"
    cfg = settings_file(tmp, ["/bin/sh", "-c", 'printf "%s\\n" "$1" >> "$2"', "worker", "{video}", str(log)],
                        parallel, rescan=30)
    started = time.perf_counter()
    proc = subprocess.Popen([*cli(), "--settings", str(cfg), "--daemon", "--allow-root", "--log-level", "WARNING"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    peak, hups = 0.0, 0
    db = tmp / "state" / "jobs.sqlite3"
    try:
        while True:
            peak = max(peak, rss_mb(proc.pid))
            done = log.read_bytes().count(b"\n") if log.exists() else 0
            if jobs // 5 < done < jobs * 3 // 5 and hups < 100:
                for _ in range(50):  # a storm of reloads in the middle of the run
                    proc.send_signal(signal.SIGHUP)
                    hups += 1
                    time.sleep(0.002)
            if done >= jobs and db.exists():
                store = JobStore.open(db, readonly=True)
                counts = store.counts()
                store.close()
                if counts["done"] == jobs:
                    break
            assert proc.poll() is None, "the daemon exited"
            assert time.perf_counter() - started < 600, "the daemon never finished"
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        peak = max(peak, rss_mb(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return elapsed, peak, hups


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
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tenth of the jobs (a smoke run, not the targets)")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--files", type=int, default=100_000)
    args = p.parse_args()
    scale = 10 if args.quick else 1
    n = args.parallel
    with tempfile.TemporaryDirectory() as d:
        once, xargs = bench_once_run(Path(d) / "once", 2000 // scale, n)
        jobs = 2000 // scale
        per_job = (once - xargs) / jobs
        print(f"1. {jobs} zero-work jobs, limit {n}: whole once run against xargs -P {n} /bin/true")
        print(f"   xargs {xargs:7.2f} s   video-supervisor {once:7.2f} s   ratio {once / xargs:5.2f}   "
              f"scheduler cost {per_job * 1000:5.1f} ms a job = {per_job / 10 * 100:5.2f} % of a 10 s job "
              "(target < 1 %)")
        sup, xargs = bench_short_jobs(Path(d) / "short", 400 // scale, 0.05, n)
        print(f"2. {400 // scale} jobs of 50 ms, limit {n}: in-process scheduler against xargs -P {n} sleep")
        print(f"   xargs {xargs:7.2f} s   video-supervisor {sup:7.2f} s   ratio {sup / xargs:5.2f}  (target <= 1.10)")
        sup, xargs = bench_short_jobs(Path(d) / "short-library", 400 // scale, 0.05, n, library=True)
        print(f"   the same, workers started by asyncio's subprocesses: xargs {xargs:7.2f} s   video-supervisor "
              f"{sup:7.2f} s   ratio {sup / xargs:5.2f}")
        elapsed, peak, hups = bench_hup_storm(Path(d) / "storm", 10_000 // scale, n)
        print(f"3. {10_000 // scale} jobs in a daemon through {hups} SIGHUPs, limit {n}")
        print(f"   last job recorded after {elapsed:6.1f} s (target < 60)   peak RSS {peak:5.0f} MB (target < 200)")
        scanned, first_sync, again = bench_discovery(Path(d), args.files // scale)
        print(f"4. discovery of {args.files // scale} files")
        print(f"   scan {scanned:6.2f} s   store sync, all new {first_sync:6.2f} s   all known {again:6.2f} s")


if __name__ == "__main__":
    main()
