"""Alerts by webhook and by email: a job went dead, a GPU turned critical, the store refuses writes,
the run halted. Never slows the scheduler, never holds up a stop.

Alerts go through a bounded queue to one sender task. Each delivery (a POST, or a whole SMTP
conversation: connect, STARTTLS, AUTH, send) has one overall deadline (`timeout_seconds`), so an
endpoint that drips its answer a byte at a time cannot stall the queue; failures are retried with backoff.
One alert per kind per `min_interval_seconds`: the next one carries how many were held back.
`user:password@` in a URL becomes an Authorization header (webhooks) or SMTP AUTH (email). URLs
are never logged whole (they often hold a secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import ssl
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import httpx
import structlog

from supervisor.config import AlertSettings
from supervisor.observe.observers import Observer

if TYPE_CHECKING:
    from supervisor.jobs.model import JobState
    from supervisor.observe.snapshot import RunningView, Snapshot
    from supervisor.process.runner import Outcome

log = structlog.get_logger("supervisor.observe.alerts")
QUEUE_SIZE = 100


def endpoint_of(url: str) -> str:
    """scheme://host[:port]/… : enough to tell endpoints apart, never a token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a port number: the delivery says so; naming the endpoint must not fail
        port = ":?"
    return f"{parts.scheme}://{host}{port}/…"


class DeliveryError(Exception):
    """A POST that did not get a 2xx answer; the message never holds the URL."""


async def post_json(url: str, payload: dict[str, Any], timeout: float) -> int:
    """POST `payload` as JSON; the whole exchange (connect, TLS, send, the answer's head) is bounded by
    `timeout`. Returns the HTTP status; the answer's body is not read. `user:password@` becomes Basic
    auth; the environment's HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE apply, except to a loopback
    address, which no proxy can reach for us. Every failure is a DeliveryError without the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError("not an http(s) URL")
    loopback = parts.hostname == "localhost" or _is_loopback(parts.hostname)
    try:
        # httpx's own timeout bounds each read and write; a server dripping its answer passes each of
        # those, so one deadline goes around the whole exchange.
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(timeout=timeout, trust_env=not loopback, follow_redirects=False) as client,
            client.stream("POST", url, json=payload, headers={"User-Agent": "video-supervisor"}) as response,
        ):
            return response.status_code
    except (TimeoutError, httpx.TimeoutException):
        raise DeliveryError(f"timed out: no complete answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"connection failed: {_without(str(exc) or type(exc).__name__, url)}") from None
    except Exception as exc:  # a URL httpx cannot use, a proxy setting or a CA file that is wrong
        said = _without(f"{type(exc).__name__}: {exc}", url)[:200]
        raise DeliveryError(f"cannot send: {said}") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _without(text: str, url: str) -> str:
    """`text` with the URL's path, query and credentials taken out (an error may quote the request)."""
    parts = urlsplit(url)
    for secret in (url, parts.path, parts.query, parts.username, parts.password):
        if secret and len(secret) > 1:
            text = text.replace(secret, "…")
    return text


def _smtp_target(url: str) -> tuple[str, int, str | None, str | None, bool]:
    """(host, port, user, password, implicit TLS) of smtp:// (587, STARTTLS when offered) or smtps:// (465)."""
    parts = urlsplit(url)
    implicit = parts.scheme == "smtps"
    port = parts.port or (465 if implicit else 587)
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password or "") if parts.username is not None else None
    return parts.hostname or "", port, user, password, implicit


def email_message(payload: dict[str, Any], sender: str, to: tuple[str, ...]) -> EmailMessage:
    """One alert as a plain-text email: a subject a phone shows whole, the details as lines, then JSON."""
    msg = EmailMessage()
    detail = payload.get("camera") or payload.get("gpu") or payload.get("reason") or payload.get("error") or ""
    shown = " ".join(str(detail).split())[:80]  # one line: a header cannot hold a line break
    msg["Subject"] = f"video-supervisor on {payload['host']}: {payload['kind'].replace('_', ' ')}" + (
        f" ({shown})" if shown else "")
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    lines = [f"{k}: {v}" for k, v in payload.items()]
    msg.set_content("\n".join(lines) + "\n\n" + json.dumps(payload, indent=2) + "\n")
    return msg


async def send_email(url: str, message: EmailMessage, timeout: float, ca_file: str = "") -> None:
    """Send through the server of `url`; the whole conversation is bounded by `timeout`. With a user in
    the URL, TLS is required before AUTH (STARTTLS, or smtps://): a server, or someone between, that
    offers no STARTTLS never sees the password. DeliveryError (never holding the URL or the password)
    when it is not accepted."""
    import aiosmtplib

    host, port, user, password, implicit = _smtp_target(url)
    # Without credentials STARTTLS is used when offered; with them, it is required.
    start_tls: bool | None = False if implicit else (True if user is not None else None)
    try:
        await asyncio.wait_for(aiosmtplib.send(message, hostname=host, port=port, username=user, password=password,
                                               use_tls=implicit, start_tls=start_tls,
                                               cert_bundle=ca_file or None, timeout=timeout), timeout)
    except TimeoutError:
        raise DeliveryError(f"timed out: the mail server did not take it within {timeout:g} s") from None
    except aiosmtplib.SMTPException as exc:
        said = str(exc).replace(password, "…") if password else str(exc)
        raise DeliveryError(f"refused: {type(exc).__name__}: {said[:200]}") from None
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"cannot connect: {getattr(exc, 'strerror', None) or exc}") from None


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
        self.last_delivery_seconds: float | None = None  # how long the last alert took to be accepted
        self.dropped = 0

    async def start(self, snapshot: Snapshot) -> None:
        if self.settings.webhooks or self.settings.email_to:
            self._queue = asyncio.Queue(QUEUE_SIZE)
            self._task = asyncio.create_task(self._send_loop(), name="alerts")

    async def stop(self) -> None:
        """Give queued alerts one delivery deadline between them, then stop: never longer than that."""
        if self._task is None or self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=self.settings.timeout_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        left = self._queue.qsize()
        if left:
            self.dropped += left
            log.warning("alerts_not_sent", count=left, reason="stopping")

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

    def job_finished(self, rj: RunningView, outcome: Outcome, state: JobState) -> None:
        if str(state) == "dead":
            self.alert("job_dead", camera=rj.job.camera, video=str(rj.job.path), job_id=rj.job.id,
                       attempts=rj.job.attempts, error=outcome.message or str(outcome.kind))

    def gpu_health_changed(self, gpu: int, old: str, new: str, reason: str) -> None:
        if new == "critical":
            self.alert("gpu_critical", gpu=gpu, previous=old, reason=reason)
        elif new == "lost":
            self.alert("gpu_lost", gpu=gpu, previous=old, reason=reason)

    def store_unavailable(self, error: str) -> None:
        self.alert("store_unavailable", error=error)

    def share_changed(self, state: str, detail: str) -> None:
        if state == "stalled":
            self.alert("share_stalled", detail=detail)

    def run_halted(self, reason: str) -> None:
        self.alert("run_halted", reason=reason)

    async def _send_loop(self) -> None:
        assert self._queue is not None
        while True:
            payload = await self._queue.get()
            try:
                for url in self.settings.webhooks:
                    await self._deliver(url, payload)
                if self.settings.email_to:
                    await self._deliver(self.settings.smtp, payload)
            finally:
                self._queue.task_done()

    async def _send(self, url: str, payload: dict[str, Any]) -> None:
        s = self.settings
        if url.startswith(("smtp://", "smtps://")):
            sender = s.email_from or f"video-supervisor@{socket.gethostname()}"
            await send_email(url, email_message(payload, sender, s.email_to), s.timeout_seconds, s.smtp_ca_file)
            return
        status = await post_json(url, payload, s.timeout_seconds)
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        s = self.settings
        for attempt in range(s.max_retries + 1):
            started = time.monotonic()
            try:
                await self._send(url, payload)
                self.sent += 1
                self.last_delivery_seconds = round(time.monotonic() - started, 3)
                log.info("alert_sent", kind=payload["kind"], endpoint=endpoint_of(url),
                         seconds=self.last_delivery_seconds)
                return
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:  # whatever one delivery meets, the sender goes on for the next alert
                error = f"{type(exc).__name__}: {exc}"[:200]
            if attempt < s.max_retries:
                await asyncio.sleep(s.retry_backoff_seconds * 2**attempt)
        self.failed += 1
        log.warning("alert_failed", kind=payload["kind"], endpoint=endpoint_of(url), error=error,
                    attempts=s.max_retries + 1)
