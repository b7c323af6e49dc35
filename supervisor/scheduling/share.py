"""The videos share's health: is the folder the recordings come from answering, and how fast.

Recordings often live on a network share (NFS, SMB) that slows down or hangs for minutes. This
owns what is known of it:

- a probe every `io.probe_seconds`: 64 KiB read from a recording a job will read, on a thread of its
  own, timed. Slower than `io.slow_ms` is `slow`; no answer within `io.stall_seconds` (or an I/O
  error) is `stalled`. Each change is said once: `share_slow` (warning), `share_stalled` (error, and
  an alert), `share_recovered`. A hung read holds only the probe's own thread, and no second probe
  starts while one is hung;
- how long the last scan of the folder took;
- what the workers say of their reads (bytes read, time spent waiting on them), from their
  progress: the share's throughput, and the share of their time workers wait on it.

Admission asks `pacing()`: while running workers spend more than `io.max_read_wait_share` of their
time waiting on reads, more workers would only split the same bandwidth, so the limit is not
raised. A job that times out while the share is stalled is not charged an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from supervisor.clock import Clock
from supervisor.config import Settings

log = structlog.get_logger("supervisor.io")

PROBE_BYTES = 64 * 1024
OK, SLOW, STALLED = "ok", "slow", "stalled"


def read_block(path: Path, size: int = PROBE_BYTES) -> int:
    """Read up to `size` bytes from the middle of the file, past what the page cache likely holds from a scan."""
    fd = os.open(path, os.O_RDONLY)
    try:
        length = os.fstat(fd).st_size
        offset = max(0, length // 2 - size)
        with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
            f.seek(offset)
            return len(f.read(size))
    finally:
        os.close(fd)


class ShareWatch:
    def __init__(self, settings: Callable[[], Settings], clock: Clock, *, sample: Callable[[], Path | None],
                 on_change: Callable[[str, str], None] | None = None,
                 read: Callable[[Path], int] = read_block) -> None:
        self._settings = settings
        self._clock = clock
        self._sample = sample  # a recording a job will read
        self._on_change = on_change
        self._read = read
        self._inflight: asyncio.Future[int] | None = None
        self._inflight_since = 0.0
        self.state = OK
        self.detail = ""
        self.latency_ms: float | None = None
        self.probed_at: float | None = None
        self.scan_seconds: float | None = None
        self.workers: dict[str, float] = {}  # throughput_mb_s, read_wait_share, jobs (from worker progress)

    @property
    def probing(self) -> bool:
        """A probe read is under way on its thread (what a clock moved by hand waits for)."""
        return self._inflight is not None and not self._inflight.done() and self.state != STALLED

    def close(self) -> None:
        """Nothing to wait for: a hung probe read holds a daemon thread, which never delays the exit."""

    def note_scan(self, seconds: float) -> None:
        self.scan_seconds = round(seconds, 3)

    async def run(self) -> None:
        while True:
            await self.probe_once()
            await self._clock.sleep(self._settings().io.probe_seconds)

    async def probe_once(self) -> None:
        s = self._settings().io
        now = self._clock.monotonic()
        if self._inflight is not None and not self._inflight.done():
            if now - self._inflight_since >= s.stall_seconds:  # the last one never came back
                self._become(STALLED, f"a 64 KiB read has not returned for {now - self._inflight_since:.0f} s")
            return
        path = self._sample()
        if path is None:
            return
        self._inflight = fut = self._start_read(path)
        self._inflight_since = now
        done, _ = await asyncio.wait({fut}, timeout=s.stall_seconds)
        if not done:
            self._become(STALLED, f"a 64 KiB read of {path} did not return within {s.stall_seconds:g} s")
            return
        self.probed_at = self._clock.time()
        try:
            fut.result()
        except FileNotFoundError:
            return  # the recording went away: nothing said about the share
        except OSError as exc:
            self._become(STALLED, f"reading {path}: {exc.strerror or exc}")
            return
        self.latency_ms = round((self._clock.monotonic() - now) * 1000, 1)
        if self.latency_ms > s.slow_ms:
            self._become(SLOW, f"a 64 KiB read took {self.latency_ms:.0f} ms (slow above {s.slow_ms:g} ms)")
        else:
            self._become(OK, f"a 64 KiB read took {self.latency_ms:.0f} ms")

    def _start_read(self, path: Path) -> asyncio.Future[int]:
        """The read on a daemon thread of its own: one that hangs in the kernel (a dead NFS server) can be
        neither cancelled nor joined, and must not keep the daemon from exiting."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()

        def settle(result: int | None, error: BaseException | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result or 0)

        def read() -> None:
            try:
                result, error = self._read(path), None
            except BaseException as exc:  # handed to the loop, said there
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for it any more
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=read, name="share-probe", daemon=True).start()
        return fut

    def _become(self, state: str, detail: str) -> None:
        before, self.state, self.detail = self.state, state, detail
        if state == before:
            return
        if state == STALLED:
            log.error("share_stalled", detail=detail, action="jobs that time out meanwhile are not charged")
        elif state == SLOW:
            log.warning("share_slow", detail=detail)
        else:
            log.info("share_recovered", detail=detail, was=before)
        if self._on_change is not None:
            self._on_change(state, detail)

    @property
    def stalled(self) -> bool:
        return self.state == STALLED

    def note_workers(self, progress: Iterable[tuple[float, Mapping[str, Any]]]) -> None:
        """Each running job's seconds since it started and its last progress: what the share delivers them."""
        rate = waited = elapsed = 0.0  # bytes a second, all workers together
        jobs = 0
        for seconds, p in progress:
            b, w = p.get("read_bytes"), p.get("read_wait_seconds")
            if isinstance(b, (int, float)) and isinstance(w, (int, float)) and seconds > 0:
                rate += b / seconds
                waited += w
                elapsed += seconds
                jobs += 1
        if not jobs:
            self.workers = {}
            return
        self.workers = {"jobs": jobs, "throughput_mb_s": round(rate / 2**20, 2),
                        "read_wait_share": round(min(1.0, waited / elapsed), 3)}

    def pacing(self) -> str | None:
        """Why the limit is not raised now (workers wait on the share), or None."""
        share = self.workers.get("read_wait_share")
        limit = self._settings().io.max_read_wait_share
        if share is None or share <= limit:
            return None
        return (f"videos share: {self.workers['throughput_mb_s']:g} MB/s, workers waiting {share * 100:.0f} % on "
                f"reads (more than {limit * 100:.0f} %): more workers would only share the same bandwidth")

    def figures(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "read_latency_ms": self.latency_ms,
                "probed_at": self.probed_at, "scan_seconds": self.scan_seconds, **self.workers,
                "pacing": self.pacing()}
