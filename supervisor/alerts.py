"""Webhook alerts: a job went dead, a GPU turned critical. Never slows the scheduler.

Alerts go through a bounded queue to one sender task; each POST runs in a
thread with a timeout and bounded retries with backoff. One alert per kind per
`min_interval_seconds`: the next one carries how many were held back. URLs
are never logged whole (they often hold a secret token).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

from .config import AlertSettings
from .observers import Observer

if TYPE_CHECKING:
    from .core import RunningJob, Supervisor
    from .runner import Outcome
    from .store import JobState

log = structlog.get_logger("supervisor.alerts")
QUEUE_SIZE = 100


def redact(url: str) -> str:
    """scheme://host[:port]/… : enough to tell endpoints apart, never a token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def post_json(url: str, payload: dict[str, Any], timeout: float) -> int:
    data = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "video-supervisor"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return int(resp.status)


class Alerts(Observer):
    def __init__(self, settings: AlertSettings, clock: Any = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    async def start(self, sup: Supervisor) -> None:
        if self.settings.webhooks:
            self._queue = asyncio.Queue(QUEUE_SIZE)
            self._task = asyncio.create_task(self._send_loop(), name="alerts")

    async def stop(self) -> None:
        if self._task is None or self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=self.settings.timeout_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def alert(self, kind: str, **fields: Any) -> bool:
        """Queue an alert unless one of this kind went out within min_interval_seconds."""
        if self._queue is None:
            return False
        now = self._clock()
        last = self._last_sent.get(kind)
        if last is not None and now - last < self.settings.min_interval_seconds:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        self._last_sent[kind] = now
        payload = {"kind": kind, "host": socket.gethostname(),
                   "time": datetime.now(UTC).isoformat(timespec="seconds"), **fields,
                   "held_back": self._held.pop(kind, 0)}
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    def job_finished(self, rj: RunningJob, outcome: Outcome, state: JobState) -> None:
        if str(state) == "dead":
            self.alert("job_dead", camera=rj.job.camera, video=str(rj.job.path), job_id=rj.job.id,
                       attempts=rj.job.attempts, error=outcome.message or str(outcome.kind))

    def gpu_health_changed(self, gpu: int, old: str, new: str, reason: str) -> None:
        if new == "critical":
            self.alert("gpu_critical", gpu=gpu, previous=old, reason=reason)

    async def _send_loop(self) -> None:
        assert self._queue is not None
        while True:
            payload = await self._queue.get()
            try:
                for url in self.settings.webhooks:
                    await self._deliver(url, payload)
            finally:
                self._queue.task_done()

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        s = self.settings
        for attempt in range(s.max_retries + 1):
            try:
                status = await asyncio.to_thread(post_json, url, payload, s.timeout_seconds)
                if 200 <= status < 300:
                    self.sent += 1
                    log.info("alert_sent", kind=payload["kind"], endpoint=redact(url))
                    return
                error = f"HTTP {status}"
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                error = f"{type(reason).__name__}: {reason}"
            if attempt < s.max_retries:
                await asyncio.sleep(s.retry_backoff_seconds * 2**attempt)
        self.failed += 1
        log.warning("alert_failed", kind=payload["kind"], endpoint=redact(url), error=error,
                    attempts=s.max_retries + 1)
