"""A child process on the event loop: started by `subprocess.Popen`, watched and read by the loop.

This is asyncio's own subprocess machinery with one part swapped. The output arrives through socket
pairs read by the loop's transports, and the exit is watched by the loop itself through a pidfd
(Linux 5.3+; `add_reader`, as asyncio's pidfd child watcher does; a thread per child where
pidfd_open is missing): no child watcher, no SIGCHLD handler, no thread of ours. Sockets rather
than pipes because uvloop, closing a transport, detaches a socket object but closes a pipe's file
object a second time after libuv closed its descriptor, which by then may be another thread's file.

The swapped part is the start. `asyncio.create_subprocess_exec` on uvloop forks the whole daemon
and runs Python in the child before exec, all on the loop's time; `subprocess.Popen` with nothing
to run between fork and exec uses vfork. `bench/spawn.py` measures a start both ways (0.5 ms here
against 3.2 ms on uvloop, quiet 2-core machine) and `bench/scheduler.py` prints both on 400 jobs of
50 ms against `xargs -P 4`: 1.08x here, 1.18-1.20x with asyncio's subprocesses on uvloop, beside a
target of 1.10x. The exit is also reported as soon as the worker ends: asyncio's `Process.wait()`
returns only once every pipe is closed, which a grandchild holding the worker's stdout can put
off for ever. A child still running when its loop closes is reaped by nobody here: only a process
that is ending closes its loop with workers left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _watch_exit(proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        threading.Thread(target=_wait_alone, args=(proc, loop, done), name="child-wait", daemon=True).start()
        return

    def ended() -> None:  # the pidfd turns readable once the process has ended: this reaps it at once
        loop.remove_reader(pidfd)
        os.close(pidfd)
        proc.wait()
        _live.discard(proc.pid)
        _settle(done)

    try:
        loop.add_reader(pidfd, ended)
    except BaseException:
        os.close(pidfd)
        raise


def _wait_alone(proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    proc.wait()
    _live.discard(proc.pid)
    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
        loop.call_soon_threadsafe(_settle, done)


async def _reader(sock: socket.socket, limit: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    """The near end of a socket pair, taken over whole by a transport (closing it closes the socket)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    # Shielded: a cancel in the middle would leave it unsaid whether the transport or this function owns
    # the socket. The connect takes one turn of the loop; a cancel waits for it, then closes what it made.
    connecting = asyncio.ensure_future(
        loop.create_connection(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), sock=sock))
    try:
        transport, _ = await asyncio.shield(connecting)
    except asyncio.CancelledError:
        connecting.add_done_callback(_close_made)
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()  # the connect failed: it never took the socket over
        raise
    return reader, transport


def _close_made(connecting: asyncio.Future[tuple[asyncio.Transport, asyncio.StreamReaderProtocol]]) -> None:
    if not connecting.cancelled() and connecting.exception() is None:
        connecting.result()[0].close()


async def spawn(program: str, args: Sequence[str], *, env: Mapping[str, str], limit: int) -> Child:
    """Start `program args` in a session of its own, stdin from /dev/null, stdout and stderr read by the loop."""
    near: list[socket.socket] = []
    try:
        out_near, out_far = socket.socketpair()
        near.append(out_near)
        with out_far:  # the child has its copies; ours close once it is started
            err_near, err_far = socket.socketpair()
            near.append(err_near)
            with err_far:
                proc = subprocess.Popen([program, *args], stdin=subprocess.DEVNULL, stdout=out_far.fileno(),
                                        stderr=err_far.fileno(), env=dict(env), start_new_session=True,
                                        close_fds=True)
    except BaseException:
        for sock in near:
            sock.close()
        raise
    _live.add(proc.pid)
    streams: list[tuple[asyncio.StreamReader, asyncio.BaseTransport]] = []
    try:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        _watch_exit(proc, loop, exited)
        for sock in (out_near, err_near):
            near.remove(sock)  # _reader owns it from here, whatever happens
            streams.append(await _reader(sock, limit))
    except BaseException:
        for sock in near:
            sock.close()
        for _, transport in streams:
            transport.close()
        _kill(proc)
        raise
    return Child(proc, streams, exited)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
