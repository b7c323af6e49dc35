"""The embedded engine: the SQLite store, every call on one thread of its own that owns the connection.

The event loop only awaits; a store that waits on a lock or a slow disk never freezes it. The
store's identity (device and inode of the resolved file, and of its -wal and -shm files) is taken at
open and checked on demand, so a store deleted or replaced under a running daemon stops it loudly
instead of splitting it in two. The same check copies the WAL into the main file once writes have
settled (and at least every CHECKPOINT_SECONDS), so the main file alone holds the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog

from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.model import Job, JobState, StoreError, StoreUnavailable, SyncResult, Takeover
from supervisor.jobs.sqlite_store import JobStore, SchedulerLock
from supervisor.protocol.hours import HourRow

T = TypeVar("T")
log = structlog.get_logger("supervisor")
# Writes since the last checkpoint are copied into the main file once none came for this long (or at
# once when the run is idle), and in any case after CHECKPOINT_SECONDS.
CHECKPOINT_QUIET_SECONDS = 2.0
CHECKPOINT_SECONDS = 120.0
_SIDE_FILES = ("-wal", "-shm")


def file_identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class _Owner:
    """One thread that runs the calls given to it in order, and answers each on its caller's loop."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any],
                                             Callable[[], Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, fut, fn))
        return fut

    def run_now(self, fn: Callable[[], None]) -> None:
        """From outside any loop: run `fn` on the thread and wait for it."""
        done = threading.Event()

        def call() -> None:
            try:
                fn()
            finally:
                done.set()

        self._calls.put((_NO_LOOP, _NO_FUTURE, call))
        done.wait()

    def _run(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            loop, fut, fn = item
            try:
                value, ok = fn(), True
            except BaseException as exc:  # handed to the caller, whatever it is
                value, ok = exc, False
            if loop is _NO_LOOP:
                continue
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(_settle, fut, ok, value)

    def stop(self, *, wait: bool) -> None:
        self._calls.put(None)
        if wait:
            self._thread.join()


def _side_identity(path: Path, suffix: str) -> tuple[int, int] | None:
    try:
        return file_identity(path.with_name(path.name + suffix))
    except FileNotFoundError:
        return None


_NO_LOOP: Any = object()
_NO_FUTURE: Any = object()


class SqliteEngine:
    """`JobStoreEngine` over a `JobStore`, which it owns from here on (and closes)."""

    shared = False

    def __init__(self, store: JobStore, *, owned: bool = True, lock: SchedulerLock | None = None) -> None:
        self._store = store
        self._owned = owned  # close the connection at the end, or leave it to whoever opened it
        self._lock = lock  # this scheduler's hold on the store, let go at close
        self.path = store.path
        self._resolved = store.path.resolve()
        self._identity = file_identity(self._resolved)
        # The WAL and its index exist while the store is open in WAL mode; SQLite removes them only when the
        # last connection closes, and this engine's stays open: a change is someone else's doing.
        self._sides = {suffix: _side_identity(self._resolved, suffix) for suffix in _SIDE_FILES}
        self._writes = 0  # writes since the last checkpoint
        self._last_write = 0.0
        self._last_checkpoint = time.monotonic()
        self._broken: str | None = None  # the store under us was deleted or replaced: no call goes to it any more
        self._thread = _Owner("job-store")
        self._scans = _Owner("job-store-scan")
        self.in_flight = 0  # calls sent to a thread and not yet answered

    @classmethod
    def open(cls, path: Path, *, lock: bool = False) -> SqliteEngine:
        """The engine over the store at `path` (created if missing), holding the one-scheduler lock with
        `lock`; StoreInUse when another scheduler holds it, StoreError when it cannot be used."""
        held = SchedulerLock(path) if lock else None
        if held is not None:
            held.acquire()
        try:
            return cls(JobStore.open(path), lock=held)
        except BaseException:
            if held is not None:
                held.release()
            raise

    @property
    def describe(self) -> str:
        return str(self.path)

    async def _call(self, fn: Callable[..., T], *args: object, executor: _Owner | None = None,
                    **kwargs: object) -> T:
        if self._broken is not None:
            raise StoreError(self._broken)
        self.in_flight += 1
        try:
            return await (executor or self._thread).submit(partial(fn, *args, **kwargs))
        except sqlite3.OperationalError as exc:  # full or read-only disk, I/O error, lock held too long
            raise StoreUnavailable(str(exc)) from exc
        finally:
            self.in_flight -= 1

    async def _write(self, fn: Callable[..., T], *args: object, **kwargs: Any) -> T:
        try:
            return await self._call(fn, *args, **kwargs)
        finally:
            self._writes += 1
            self._last_write = time.monotonic()

    async def recover_running(self) -> list[Takeover]:
        return await self._call(self._store.recover_running)

    async def reclaim_expired(self) -> list[Takeover]:
        return []  # one scheduler per SQLite store (it holds the lock): nobody else's claims to take over

    async def renew(self, claims: Mapping[int, int]) -> set[int]:
        return await self._call(self._store.renew, dict(claims))

    async def publish_status(self, status: dict[str, Any]) -> None:
        return None  # the status file beside the store says it (observe/status.py)

    async def get(self, job_id: int) -> Job:
        return await self._call(self._store.get, job_id)

    async def jobs(self, states: Iterable[JobState] | None = None) -> list[Job]:
        return await self._call(self._store.jobs, states)

    async def jobs_by_id(self, ids: Iterable[int]) -> list[Job]:
        return await self._call(self._store.jobs_by_id, list(ids))

    async def sync(self, videos: list[VideoFile], *, reprocess: bool, now: float, duration: float) -> SyncResult:
        await self._call(self._check)  # never record a scan into a store other than the one this run opened
        # A big tree takes a while to record: on a connection and a thread of their own, so job outcomes are
        # not held up behind it.
        try:
            return await self._write(self._store.sync_apart, videos, reprocess=reprocess, now=now,
                                     duration=duration, executor=self._scans)
        except StoreError as exc:  # its connection could not be opened: the store's trouble, said as such
            raise StoreUnavailable(str(exc)) from exc

    async def claim(self, job_id: int, *, now: float, result_key: str | None = None) -> Job | None:
        return await self._write(self._store.claim, job_id, now=now, result_key=result_key)

    async def mark_done(self, job_id: int, *, token: int | None, now: float, duration: float, output: str | None,
                        video_seconds: float | None, covered_seconds: float | None, damaged_seconds: float,
                        hours: Sequence[HourRow] = ()) -> bool:
        return await self._write(self._store.mark_done, job_id, token=token, now=now, duration=duration,
                                 output=output, video_seconds=video_seconds, covered_seconds=covered_seconds,
                                 damaged_seconds=damaged_seconds, hours=hours)

    async def record_people(self, job_id: int, hours: Sequence[HourRow]) -> bool:
        return await self._write(self._store.record_people, job_id, hours)

    async def retry(self, job_ids: Iterable[int] = (), *, dead: bool = False, cameras: Iterable[str] = ()
                    ) -> list[Job]:
        return await self._write(self._store.retry, list(job_ids), dead=dead, cameras=list(cameras))

    async def retry_requested(self) -> list[Job]:
        return await self._call(self._store.retry_requested)

    async def without_people(self, limit: int = 1000, *, after: int = 0) -> list[Job]:
        return await self._call(self._store.without_people, limit, after=after)

    async def mark_failed(self, job_id: int, *, token: int | None, now: float, error: str, exit_code: int | None,
                          retry_at: float | None) -> bool:
        return await self._write(self._store.mark_failed, job_id, token=token, now=now, error=error,
                                 exit_code=exit_code, retry_at=retry_at)

    async def requeue_interrupted(self, job_id: int, *, token: int) -> bool:
        return await self._write(self._store.requeue_interrupted, job_id, token=token)

    async def counts(self) -> dict[str, int]:
        return await self._call(self._store.counts)

    async def pending_bytes_by_camera(self) -> dict[str, float]:
        return await self._call(self._store.pending_bytes_by_camera)

    async def done_work_by_camera(self) -> dict[str, tuple[float, float, float]]:
        return await self._call(self._store.done_work_by_camera)

    async def check(self, *, idle: bool = False) -> None:
        """Raise StoreError if the store under us is not the one opened; then, if writes have settled (or the
        run is `idle`, or it is long since the last one), copy the WAL into the main file."""
        await self._call(self._check)
        now = time.monotonic()
        if self._writes and (idle or now - self._last_write >= CHECKPOINT_QUIET_SECONDS
                             or now - self._last_checkpoint >= CHECKPOINT_SECONDS):
            self._last_checkpoint = now
            try:
                await self._call(self._store.checkpoint)
            except StoreUnavailable as exc:  # a full or read-only disk: the commits are safe in the WAL meanwhile
                log.warning("store_checkpoint_deferred", store=self.describe, error=str(exc),
                            action="tried again at the next heartbeat")
                return
            self._writes = 0

    def _check(self) -> None:
        try:
            self._check_files()
        except StoreError as exc:
            # Nothing more is written: a write now would land where nobody reads it, and a job whose outcome
            # is not recorded is settled from its result set at the next start (exactly once).
            self._broken = str(exc)
            raise

    def _check_files(self) -> None:
        try:
            now = file_identity(self._resolved)
        except FileNotFoundError:
            raise StoreError(f"{self.path}: the job store was deleted under the running scheduler; stopping "
                             "rather than keep a store nobody else reads (restore it, then start again)") from None
        if now != self._identity:
            raise StoreError(f"{self.path}: the job store was replaced under the running scheduler (a new "
                             "file at its path); stopping rather than split the work between two stores")
        for suffix, identity in self._sides.items():
            if _side_identity(self._resolved, suffix) != identity:
                self._save_what_we_can()
                raise StoreError(
                    f"{self.path}{suffix}: the job store's {'write-ahead log' if suffix == '-wal' else 'WAL index'} "
                    "was deleted or replaced under the running scheduler; stopping (what this scheduler had "
                    "committed was copied into the main file where SQLite could). Leave the store's side files "
                    "alone while it is open; check for a clean-up job touching the state folder")

    def _save_what_we_can(self) -> None:
        """Our connection still has the old WAL open: copy what it holds into the main file before stopping."""
        with contextlib.suppress(sqlite3.Error):
            self._store.checkpoint()

    async def close(self) -> None:
        try:
            if self._owned:
                await self._thread.submit(self._store.close)
        finally:
            self._thread.stop(wait=False)
            self._scans.stop(wait=False)
            self._release()

    def close_now(self) -> None:
        """Close from outside the loop (after it ended)."""
        try:
            if self._owned:
                self._thread.run_now(self._store.close)
            self._thread.stop(wait=True)
            self._scans.stop(wait=True)
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
