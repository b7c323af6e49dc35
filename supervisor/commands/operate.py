"""`video-supervisor retry`: run again what failed for good, beside a running daemon or without one.

    video-supervisor retry JOB_ID ...            those jobs, whatever they came to (not a running one)
    video-supervisor retry --dead                every job given up on
    video-supervisor retry --dead --camera C ...  those cameras' jobs given up on

The jobs go back to queued with their attempts from zero, in the store, so either engine works and
nothing is lost if no daemon runs: the next run takes them. A daemon on this host is sent SIGHUP,
which rescans at once and takes them up; schedulers sharing a PostgreSQL store take them at their
next scan.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from supervisor.config import ConfigError, load_with_store
from supervisor.jobs.model import Job, StoreError, StoreUnavailable
from supervisor.jobs.sqlite_store import JobStore
from supervisor.protocol import EX_CONFIG, EX_OK, EX_TEMPFAIL, EX_USAGE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="video-supervisor retry", description=(__doc__ or "").splitlines()[0])
    p.add_argument("jobs", nargs="*", type=int, metavar="JOB_ID", help="job ids (as `status` lists them)")
    p.add_argument("--dead", action="store_true", help="every job given up on")
    p.add_argument("--camera", nargs="+", default=[], metavar="CAMERA", help="with --dead: only these cameras")
    p.add_argument("--settings", type=Path)
    p.add_argument("--state-db", help="a SQLite file or a postgresql:// URL")
    return p


def _retry(url: str, db: Path, jobs: list[int], *, dead: bool, cameras: list[str]) -> list[Job]:
    if url:
        from supervisor.jobs.postgres import PostgresEngine

        async def on_server() -> list[Job]:
            engine = await PostgresEngine.open(url)
            try:
                found: list[Job] = await engine.retry(jobs, dead=dead, cameras=cameras)
                return found
            finally:
                await engine.close()
        return asyncio.run(on_server())
    if not db.exists():
        raise StoreError(f"no job store at {db}: run it where the supervisor ran, or pass --settings or --state-db")
    store = JobStore.open(db, create=False)
    try:
        return store.retry(jobs, dead=dead, cameras=cameras)
    finally:
        store.close()


def _tell_daemon(status_file: Path) -> int | None:
    """SIGHUP to this host's daemon, if one runs: it rescans now and takes the jobs up. Its pid, or None."""
    from supervisor.observe.status import read_snapshot

    snapshot = read_snapshot(status_file)
    if not snapshot or snapshot.get("mode") != "daemon":
        return None
    pid = int(snapshot["pid"])
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError:
        return None
    return pid


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.camera and not args.dead:
        args.dead = True  # the cameras' jobs given up on: what --camera alone can only mean
    if not args.jobs and not args.dead:
        print("video-supervisor retry: name job ids, or --dead (optionally with --camera)", file=sys.stderr)
        return EX_USAGE
    try:
        s = load_with_store(args.settings, args.state_db)
    except ConfigError as exc:
        print(f"video-supervisor: {exc}", file=sys.stderr)
        return EX_CONFIG
    url, db = s.store_url, s.state_db
    try:
        queued = _retry(url, db, args.jobs, dead=args.dead, cameras=args.camera)
    except StoreUnavailable as exc:
        print(f"video-supervisor retry: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except StoreError as exc:
        print(f"video-supervisor retry: {exc}", file=sys.stderr)
        return EX_CONFIG
    missing = sorted(set(args.jobs) - {j.id for j in queued})
    for job in queued:
        print(f"queued again: job {job.id} ({job.camera}) {job.path}")
    if missing:
        print(f"video-supervisor retry: not queued (no such job, or running now): "
              f"{', '.join(str(i) for i in missing)}", file=sys.stderr)
    if not queued:
        print("video-supervisor retry: nothing to queue again", file=sys.stderr)
        return 1
    pid = _tell_daemon(s.status_file)
    if pid is not None:
        print(f"the daemon (pid {pid}) takes them up now")
    elif url:
        print("schedulers sharing the store take them up at their next scan")
    else:
        print("no daemon runs here: the next run takes them up")
    return EX_OK if not missing else 1
