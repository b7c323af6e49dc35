"""One job's worker subprocess: start it, read its progress, bound its time, stop it cleanly.

The worker protocol: an argument list (never a shell), its own process group,
JSON lines on stdout (`{"event": "progress", ...}` and a final
`{"event": "done", ...}`), other stdout lines logged, the tail of stderr kept
for the error log, and an exit code that classifies the outcome.

An attempt ends when its work ends: a worker still running `done_grace` seconds after its done
event is stopped (its outcome stays a success, for the supervisor to check against its result
set), and once the worker has exited, whatever it left running in its process group is killed and
its output pipes are let go, so a grandchild can neither hold the job up nor outlive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from supervisor.process.child import Child, spawn
from supervisor.protocol import EX_CONFIG, EX_DATAERR, EX_OK, EX_TEMPFAIL
from supervisor.protocol.events import EVENT_DONE, DoneEvent, parse_line

_LINE_LIMIT = 1 << 20
_STDERR_TAIL_LINES = 30
# After the worker exited: how long its output may still take to drain (a descendant that left its process
# group may hold the pipes open for ever; the attempt is over all the same).
_DRAIN_SECONDS = 1.0


class OutcomeKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    BAD_INPUT = "bad_input"  # exit 65: never retried
    TRANSIENT = "transient"  # exit 75: retried up to max_transient_attempts
    BAD_CONFIG = "bad_config"  # exit 78: the model or the configuration is unusable; halts the run
    KILLED = "killed"  # died of a signal we did not send
    TIMED_OUT = "timed_out"
    FAILED = "failed"  # any other exit code
    SPAWN_FAILED = "spawn_failed"
    INTERRUPTED = "interrupted"  # stopped by the supervisor itself (shutdown)


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    exit_code: int | None = None
    message: str = ""
    stderr_tail: str = ""
    done: DoneEvent | None = None  # what the worker said of its finished work, when it said it
    duration: float = 0.0
    hung_after_done: bool = False  # printed its done event, then did not exit: stopped (the result stands)


def classify(returncode: int | None, *, timed_out: bool = False, interrupted: bool = False) -> OutcomeKind:
    """Map how a worker ended to an outcome; pure, tested as a table."""
    if returncode == EX_OK:
        return OutcomeKind.SUCCEEDED
    if interrupted:
        return OutcomeKind.INTERRUPTED
    if timed_out:
        return OutcomeKind.TIMED_OUT
    if returncode is None:
        return OutcomeKind.SPAWN_FAILED
    if returncode == EX_DATAERR:
        return OutcomeKind.BAD_INPUT
    if returncode == EX_TEMPFAIL:
        return OutcomeKind.TRANSIENT
    if returncode == EX_CONFIG:
        return OutcomeKind.BAD_CONFIG
    if returncode < 0:
        return OutcomeKind.KILLED
    return OutcomeKind.FAILED


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def _executable(name: str, env: Mapping[str, str]) -> str:
    """The worker program as an absolute path; OSError naming the problem when it cannot be run."""
    found = shutil.which(name, path=env.get("PATH", os.defpath)) if "/" not in name else name
    if found is None:
        raise FileNotFoundError(2, "No such file or directory (not found on PATH)", name)
    if not os.path.isfile(found):
        raise FileNotFoundError(2, "No such file", found)
    if not os.access(found, os.X_OK):
        raise PermissionError(13, "Permission denied (not executable)", found)
    return found


EventCallback = Callable[[dict[str, Any]], None]
LineCallback = Callable[[str, str], None]  # (stream: "stdout" or "stderr", the line)


class WorkerRun:
    """One attempt of one job. `run()` once; `request_stop()` from anywhere on the loop."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        timeout: float,
        stop_grace: float,
        done_grace: float = 10.0,
        on_event: EventCallback | None = None,
        on_line: LineCallback | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.timeout = timeout
        self.stop_grace = stop_grace
        self.done_grace = done_grace
        self._done_at: float | None = None
        self._done_seen = asyncio.Event()
        # Paused (SIGSTOP) by the GPU policy: its timeout does not run while it is.
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._pause_changed = asyncio.Event()
        self._on_event = on_event
        self._on_line = on_line
        self._proc: Child | None = None
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._done: DoneEvent | None = None
        self._interrupted = False
        self._stopping: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def run(self) -> Outcome:
        started = time.monotonic()
        try:
            program = _executable(self.argv[0], self.env)
            # Nothing runs between fork and exec (no preexec_fn): the worker arms its own parent-death signal
            # (supervisor/protocol/lifeline.py). Its own session: a stop reaches its children too.
            proc = await spawn(program, self.argv[1:], env=self.env, limit=_LINE_LIMIT)
        except OSError as exc:
            return Outcome(OutcomeKind.SPAWN_FAILED, None,
                           f"cannot start worker {self.argv[0]!r}: {exc.strerror or exc}")
        self._proc = proc
        if self._interrupted and self._stopping is None:  # stopped while it was being started
            self._stopping = asyncio.ensure_future(self._terminate(proc))
        readers = asyncio.gather(self._read_stdout(proc.stdout), self._read_stderr(proc.stderr))
        timed_out = hung = False
        try:
            timed_out, hung = await self._until_the_work_ends(proc, started)
            if timed_out or hung:
                await self._terminate(proc)
        except asyncio.CancelledError:
            await asyncio.shield(self._terminate(proc))
            readers.cancel()
            proc.close()
            raise
        finally:
            _signal_group(proc.pid, signal.SIGKILL)  # whatever it left running in its group ends with it
        try:
            await asyncio.wait_for(readers, _DRAIN_SECONDS)
        except TimeoutError:
            readers.cancel()  # a descendant outside its group holds the pipes: the attempt is over all the same
        finally:
            proc.close()
        if self._stopping is not None:
            await self._stopping
        returncode = proc.returncode
        kind = classify(returncode, timed_out=timed_out, interrupted=self._interrupted)
        tail = "\n".join(self._stderr_tail)
        if hung and not self._interrupted:
            return Outcome(OutcomeKind.SUCCEEDED, returncode,
                           f"printed its done event, then did not exit within {self.done_grace:g}s: stopped",
                           tail, self._done, time.monotonic() - started, hung_after_done=True)
        if kind is OutcomeKind.TIMED_OUT:
            message = f"timed out after {self.timeout:g}s"
        elif kind is OutcomeKind.INTERRUPTED:
            message = "stopped by the supervisor"
        elif returncode is not None and returncode != 0:
            last = next((ln for ln in reversed(self._stderr_tail) if ln.strip()), "")
            message = describe_exit(returncode) + (f": {last.strip()}" if last else "")
        else:
            message = ""
        return Outcome(kind, returncode, message, tail, self._done, time.monotonic() - started)

    async def _until_the_work_ends(self, proc: Child, started: float) -> tuple[bool, bool]:
        """Wait for the worker's exit, its timeout, or `done_grace` after its done event: (timed out, hung
        after its done event)."""
        exited = asyncio.ensure_future(proc.wait())
        try:
            while True:
                now = time.monotonic()
                until = started + self.timeout + self._paused_total
                if self._paused_at is not None:
                    until = float("inf")  # no timeout while paused: woken by the resume
                if self._done_at is not None:
                    until = min(until, self._done_at + self.done_grace)
                self._pause_changed.clear()
                pause_wait = asyncio.ensure_future(self._pause_changed.wait())
                waiters: set[asyncio.Future[Any]] = {exited, pause_wait}
                done_wait = None
                if self._done_at is None:
                    done_wait = asyncio.ensure_future(self._done_seen.wait())
                    waiters.add(done_wait)
                try:
                    await asyncio.wait(waiters, timeout=None if until == float("inf") else max(0.0, until - now),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    pause_wait.cancel()
                    if done_wait is not None:
                        done_wait.cancel()
                if exited.done():
                    return False, False
                now = time.monotonic()
                if self._done_at is not None and now >= self._done_at + self.done_grace:
                    return False, True
                if self._paused_at is None and now >= started + self.timeout + self._paused_total:
                    return True, False
        finally:
            exited.cancel()

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> None:
        """SIGSTOP to its whole group (a GPU too hot): it holds its memory and its place, uses no GPU time."""
        if self._proc is None or self._proc.returncode is not None or self._paused_at is not None:
            return
        _signal_group(self._proc.pid, signal.SIGSTOP)
        self._paused_at = time.monotonic()
        self._pause_changed.set()

    def resume(self) -> None:
        """SIGCONT to its group; the time it was paused is added to its timeout."""
        if self._paused_at is None:
            return
        if self._proc is not None:
            _signal_group(self._proc.pid, signal.SIGCONT)
        self._paused_total += time.monotonic() - self._paused_at
        self._paused_at = None
        self._pause_changed.set()

    def kill_now(self) -> None:
        """The attempt is void (its claim was lost): SIGKILL to its whole group at once, no grace."""
        self._interrupted = True
        if self._proc is not None and self._proc.returncode is None:
            _signal_group(self._proc.pid, signal.SIGKILL)

    def request_stop(self) -> None:
        """Stop the worker (shutdown): SIGTERM to its group, SIGKILL after the grace period."""
        self._interrupted = True
        if self._proc is not None and self._proc.returncode is None and self._stopping is None:
            self._stopping = asyncio.ensure_future(self._terminate(self._proc))

    async def _terminate(self, proc: Child) -> None:
        if proc.returncode is not None:
            return
        self.resume()  # a stopped process cannot act on SIGTERM
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), self.stop_grace)
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:
                continue  # a line over the limit: asyncio dropped it, carry on with the next
            if not raw:
                return
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            event = parse_line(text)
            if event is None:
                if text and self._on_line is not None:
                    self._on_line("stdout", text)
                continue
            if event["event"] == EVENT_DONE:
                self._done = DoneEvent.from_event(event)
                if self._done_at is None:
                    self._done_at = time.monotonic()
                    self._done_seen.set()
            if self._on_event is not None:
                self._on_event(event)

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:
                continue
            if not raw:
                return
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self._stderr_tail.append(text[:500])
            if self._on_line is not None:
                self._on_line("stderr", text)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
