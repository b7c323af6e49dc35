"""Job store throughput, each engine beside its baseline in the same run.

1. PostgreSQL, 3 daemons on one tree of zero-work jobs (`/bin/true`), a real server started here:
   jobs claimed, run and recorded per second, all daemons together (target >= 200).
2. SQLite: a whole once run of 2,000 zero-work jobs, jobs per second, against the same run of an
   earlier version (`--against REF`, a git revision, checked out in a temporary work tree; target:
   the same or faster); and what leaving the loop costs one store call: the claim-and-record cycle
   through the engine's thread against the same calls made on the loop, one job at a time.

    python bench/store.py [--jobs 3000] [--daemons 3] [--against REF]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from supervisor.jobs.discovery import VideoFile  # noqa: E402
from supervisor.jobs.postgres import PostgresReader  # noqa: E402
from supervisor.jobs.sqlite_engine import SqliteEngine  # noqa: E402
from supervisor.jobs.sqlite_store import JobStore  # noqa: E402


def make_tree(root: Path, count: int) -> None:
    old = time.time() - 3600
    for i in range(count):
        p = root / f"camera_{i % 10}" / f"camera_{i % 10}_2025{1 + i // 28000 % 12:02d}{1 + i // 1000 % 28:02d}_" \
                                        f"{i // 60 % 24:02d}{i % 60:02d}{i % 10:02d}.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        os.utime(p, (old, old))


def bench_postgres(tmp: Path, jobs: int, daemons: int) -> tuple[float, int]:
    from tests.pg import PostgresServer

    server = PostgresServer()
    try:
        url = server.new_database()
        make_tree(tmp / "videos", jobs)
        procs = []
        started = time.perf_counter()
        for i in range(daemons):
            cfg = tmp / f"host{i}.toml"
            cfg.write_text(
                f'videos_dir = "{tmp / "videos"}"\noutput_dir = "{tmp / "results"}"\nstate_db = "{url}"\n'
                f'log_dir = "{tmp / f"logs{i}"}"\nallow_root = true\n'
                "[scheduler]\nmax_parallel = 4\nrescan_seconds = 3600\n"
                '[discovery]\nsettle_seconds = 0\n[gpu]\nprobe = "none"\n[metrics]\nlisten = ""\n'
                f"[logging]\nlevel = \"WARNING\"\n[worker]\ncommand = {json.dumps(['/bin/true', '{video}'])}\n")
            procs.append(subprocess.Popen([sys.executable, "-m", "supervisor", "--settings", str(cfg), "--daemon"],
                                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        reader = PostgresReader(url)
        try:
            while reader.counts()["done"] < jobs:
                assert all(p.poll() is None for p in procs), "a daemon exited"
                assert time.perf_counter() - started < 600, reader.counts()
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            hosts = len(reader.daemons())
        finally:
            reader.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        return jobs / elapsed, hosts
    finally:
        server.close()


def _videos(n: int) -> list[VideoFile]:
    start = datetime(2025, 11, 14)
    return [VideoFile("cam", start + timedelta(seconds=i), Path(f"/v/cam/{i}.mp4"), 100, 1.0) for i in range(n)]


async def _through_engine(db: Path, n: int) -> float:
    engine = SqliteEngine.open(db)
    ids = (await engine.sync(_videos(n), reprocess=False, now=1.0, duration=0)).new
    started = time.perf_counter()
    for jid in ids:
        job = await engine.claim(jid, now=2.0, result_key=f"cam/{jid}")
        assert job is not None
        await engine.mark_done(jid, token=job.claim_token, now=3.0, duration=1.0, output="x", video_seconds=1.0,
                               covered_seconds=None, damaged_seconds=0.0)
    elapsed = time.perf_counter() - started
    await engine.close()
    return n / elapsed


async def _on_the_loop(db: Path, n: int) -> float:
    store = JobStore.open(db)
    ids = store.sync(_videos(n), now=1.0).new
    started = time.perf_counter()
    for jid in ids:  # the calls as they were made before: blocking, on the loop, key and claim apart
        store.get(jid)
        with store._conn:  # the folder recorded in a write of its own, as it was then
            store._conn.execute("UPDATE jobs SET result_key = ? WHERE id = ?", (f"cam/{jid}", jid))
        token = store.claim(jid, now=2.0).claim_token
        store.mark_done(jid, token=token, now=3.0, duration=1.0, output="x", video_seconds=1.0)
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    store.close()
    return n / elapsed


def once_run_rate(tree: Path, code: Path, jobs: int) -> float:
    """Jobs per second of a whole once run (start to exit) of the program in `code` over a fresh tree."""
    make_tree(tree / "videos", jobs)
    cfg = tree / "once.toml"
    cfg.write_text(
        f'videos_dir = "{tree / "videos"}"\noutput_dir = "{tree / "results"}"\n'
        f'state_db = "{tree / "state" / "jobs.sqlite3"}"\nlog_dir = "{tree / "logs"}"\n'
        "[scheduler]\nmax_parallel = 4\n"
        '[discovery]\nsettle_seconds = 0\n[gpu]\nprobe = "none"\n[metrics]\nlisten = ""\n'
        f"[logging]\nlevel = \"WARNING\"\n[worker]\ncommand = {json.dumps(['/bin/true', '{video}'])}\n")
    env = {**os.environ, "PYTHONPATH": str(code)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "supervisor", "--settings", str(cfg)], cwd=code, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]
    return jobs / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--daemons", type=int, default=3)
    p.add_argument("--against", metavar="REF", help="a git revision to compare the SQLite once run with")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rate, hosts = bench_postgres(tmp / "pg", args.jobs, args.daemons)
        print(f"1. PostgreSQL, {args.daemons} daemons, {args.jobs} zero-work jobs: {rate:6.0f} jobs/s "
              f"(target >= 200; {hosts} daemons seen in the store)")
        rate = once_run_rate(tmp / "now", REPO, 2000)
        line = f"2. SQLite, a once run of 2000 zero-work jobs: {rate:5.0f} jobs/s"
        if args.against:
            old = tmp / "old"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), args.against],
                           check=True, capture_output=True)
            try:
                before_rate = once_run_rate(tmp / "before", old, 2000)
            finally:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False,
                               capture_output=True)
            line += f", {args.against}: {before_rate:5.0f} jobs/s, ratio {rate / before_rate:4.2f} (target >= 1)"
        print(line)
        now = asyncio.run(_through_engine(tmp / "engine.db", 2000))
        before = asyncio.run(_on_the_loop(tmp / "loop.db", 2000))
        print(f"   one job's store calls, one at a time: through the engine's thread {now:5.0f} jobs/s, made on "
              f"the loop {before:5.0f} jobs/s ({(1 / now - 1 / before) * 1e6:.0f} us a job to keep the loop free)")


if __name__ == "__main__":
    main()
