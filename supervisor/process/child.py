"""A child process on the event loop, started the cheap way.

`subprocess.Popen` with nothing to run between fork and exec uses vfork: a fraction of a
millisecond, where a full fork of a daemon with threads and a loaded interpreter costs several.
The child's stdout and stderr are the far ends of socket pairs, whose near ends the loop reads
(a transport made from a socket takes it over whole, so no descriptor has two owners). Exits are
watched by one reaper thread for every child, through pidfds (Linux 5.3+; a thread per child where
pidfd_open is missing), which hands each status back to its loop. There is no child watcher and no
SIGCHLD handler to share with anything else in the process.

Why not asyncio's own subprocesses (`create_subprocess_exec`), the library way: on uvloop they fork
the whole daemon and run Python in the child before exec. `bench/spawn.py` measured 8-12 ms of the
loop's time a start that way against 1.3-2.6 ms here (on the plain asyncio loop the library costs
about what this does), and the 400 jobs of 50 ms in bench/scheduler.py took 1.4-2.9x xargs' time
against 1.5-1.7x with this launcher, same runs. asyncio's `Process.wait()` on CPython also returns
only once every pipe is closed, which a grandchild holding the worker's stdout can put off for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence


class Child:
    def __init__(self, proc: subprocess.Popen[bytes], streams: list[tuple[asyncio.StreamReader, asyncio.BaseTransport]],
                 exited: asyncio.Future[None]) -> None:
        self._proc = proc
        self.pid = proc.pid
        (self.stdout, out), (self.stderr, err) = streams
        self._transports = (out, err)
        self._exited = exited

    def close(self) -> None:
        """Stop reading its output (once read to the end, or given up on)."""
        for transport in self._transports:
            transport.close()

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._exited.done() else None

    async def wait(self) -> int:
        """The exit status (negative: killed by that signal); many callers may wait at once."""
        await asyncio.shield(self._exited)
        assert self._proc.returncode is not None
        return self._proc.returncode


_live: set[int] = set()  # children started here and not yet reaped


def live_pids() -> set[int]:
    """The pids of the children started here that are not reaped yet (a subreaper leaves them alone)."""
    return set(_live)


def _report(loop: asyncio.AbstractEventLoop, done: asyncio.Future[None], pid: int) -> None:
    _live.discard(pid)

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
        loop.call_soon_threadsafe(settle)


def _wait_alone(proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    proc.wait()
    _report(loop, done, proc.pid)


class _Reaper:
    """One thread that waits for the exit of every child at once: each pidfd turns readable when its
    process ends; the thread reaps it and tells the loop that waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[subprocess.Popen[bytes], asyncio.AbstractEventLoop, asyncio.Future[None]]] = {}
        self._poll = select.poll()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._poll.register(self._wake_r, select.POLLIN)
        threading.Thread(target=self._run, name="child-reaper", daemon=True).start()

    def watch(self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop,
              done: asyncio.Future[None]) -> None:
        try:
            fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            threading.Thread(target=_wait_alone, args=(proc, loop, done), daemon=True).start()
            return
        with self._lock:
            self._watched[fd] = (proc, loop, done)
            self._poll.register(fd, select.POLLIN)
        os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            for fd, _ in self._poll.poll():
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    proc, loop, done = self._watched.pop(fd)
                    self._poll.unregister(fd)
                os.close(fd)
                proc.wait()  # it has ended: this reaps it at once
                _report(loop, done, proc.pid)


_reaper: _Reaper | None = None
_reaper_lock = threading.Lock()


def _watch_exit(proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    global _reaper
    with _reaper_lock:
        if _reaper is None:
            _reaper = _Reaper()
    _reaper.watch(proc, loop, done)


async def _reader(sock: socket.socket, limit: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    try:
        transport, _ = await loop.create_connection(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                                    sock=sock)
    except BaseException:
        sock.close()
        raise
    return reader, transport


async def spawn(program: str, args: Sequence[str], *, env: Mapping[str, str], limit: int) -> Child:
    """Start `program args` in a session of its own, stdin from /dev/null, stdout and stderr read by the loop."""
    out_near, out_far = socket.socketpair()
    err_near, err_far = socket.socketpair()
    try:
        with out_far, err_far:  # the child has its copies; ours close once it is started
            proc = subprocess.Popen([program, *args], stdin=subprocess.DEVNULL, stdout=out_far.fileno(),
                                    stderr=err_far.fileno(), env=dict(env), start_new_session=True, close_fds=True)
    except BaseException:
        out_near.close()
        err_near.close()
        raise
    _live.add(proc.pid)
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    _watch_exit(proc, loop, exited)
    try:
        out = await _reader(out_near, limit)
    except BaseException:
        err_near.close()
        _kill(proc)
        raise
    try:
        err = await _reader(err_near, limit)
    except BaseException:
        out[1].close()
        _kill(proc)
        raise
    return Child(proc, [out, err], exited)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
