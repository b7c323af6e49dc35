"""`video-supervisor store copy SRC DST`: move a site's job history from one store to another.

SRC and DST are each a SQLite file or a postgresql:// URL (typically SQLite to PostgreSQL, when a
second GPU host joins). Every job is copied with its state, attempts, errors, times, result folder
and figures; jobs running in SRC are copied as queued (their scheduler must be stopped first: a
SQLite source is locked for the copy), and with them the people by hour each done job added. DST must
hold no jobs yet, so nothing is ever overwritten.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from supervisor.config import is_store_url
from supervisor.jobs.connect import open_reader
from supervisor.jobs.model import Job, JobState, StoreError, StoreInUse, StoreUnavailable
from supervisor.jobs.postgres import PostgresEngine, hide_password
from supervisor.jobs.sqlite_store import JobStore, SchedulerLock
from supervisor.protocol import EX_CONFIG, EX_OK, EX_TEMPFAIL, EX_USAGE

_COLUMNS = ("camera", "path", "recorded_at", "size", "mtime", "state", "attempts", "last_error", "last_exit_code",
            "discovered_at", "not_before", "started_at", "finished_at", "duration_seconds", "output",
            "video_seconds", "result_key", "covered_seconds", "damaged_seconds", "claim_token")


def _row(job: Job) -> tuple[object, ...]:
    state = JobState.QUEUED if job.state is JobState.RUNNING else job.state
    return (job.camera, str(job.path), job.recorded_at.isoformat(), job.size, job.mtime, str(state), job.attempts,
            job.last_error, job.last_exit_code, job.discovered_at, job.not_before,
            None if job.state is JobState.RUNNING else job.started_at, job.finished_at, job.duration_seconds,
            job.output, job.video_seconds, job.result_key, job.covered_seconds, job.damaged_seconds,
            job.claim_token)  # the claim generation goes on from where it was: a token is never handed out twice


def _read(src: str) -> tuple[list[Job], list[dict[str, Any]]]:
    url = src if is_store_url(src) else ""
    if not url and not Path(src).is_file():
        raise StoreError(f"{src}: no such job store")
    store = open_reader(url or Path(src))
    try:
        jobs: list[Job] = store.jobs()
        return jobs, store.people_rows()
    finally:
        store.close()


def _write_sqlite(dst: Path, jobs: list[Job], people: list[dict[str, Any]]) -> None:
    store = JobStore.open(dst)
    try:
        store.import_jobs(_COLUMNS, [_row(j) for j in jobs], people)
    finally:
        store.close()


async def _write_postgres(url: str, jobs: list[Job], people: list[dict[str, Any]]) -> None:
    engine = await PostgresEngine.open(url)
    try:
        await engine.import_jobs(_COLUMNS, [_row(j) for j in jobs], people)
    finally:
        await engine.close()


def copy(src: str, dst: str) -> int:
    """Copy every job of SRC into the empty DST; the number copied."""
    lock = None if is_store_url(src) else SchedulerLock(Path(src))
    if lock is not None:
        lock.acquire()  # no scheduler may change SRC while it is read
    try:
        jobs, people = _read(src)
    finally:
        if lock is not None:
            lock.release()
    if is_store_url(dst):
        asyncio.run(_write_postgres(dst, jobs, people))
    else:
        _write_sqlite(Path(dst), jobs, people)
    return len(jobs)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="video-supervisor store", description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)
    c = sub.add_parser("copy", help="copy every job from SRC into the empty DST (SQLite file or postgresql:// URL)")
    c.add_argument("src")
    c.add_argument("dst")
    args = p.parse_args(argv)
    if args.src == args.dst:
        print("video-supervisor store copy: SRC and DST are the same store", file=sys.stderr)
        return EX_USAGE
    try:
        n = copy(args.src, args.dst)
    except StoreError as exc:
        print(f"video-supervisor store copy: {exc}", file=sys.stderr)
        return EX_TEMPFAIL if isinstance(exc, StoreInUse) else EX_CONFIG
    except StoreUnavailable as exc:
        print(f"video-supervisor store copy: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    where = hide_password(args.dst) if is_store_url(args.dst) else args.dst
    print(f"copied {n} job{'s' if n != 1 else ''} to {where}")
    return EX_OK
