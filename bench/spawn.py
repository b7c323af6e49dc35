"""What starting a worker costs the event loop: the project's launcher against asyncio's own subprocesses.

The launcher (supervisor/process/child.py) starts a worker with `subprocess.Popen` (vfork: nothing
runs between fork and exec) and reads its socket pairs and pidfd on the loop; asyncio's
`loop.subprocess_exec` is the library way, also given here as a drop-in `library_spawn` that
bench/scheduler.py runs the scheduler with. On uvloop the library forks the whole daemon and runs Python in the child
before exec, which costs the loop far more a start. Each start here is timed from the call to the
child's exit seen and its output drained, `/bin/true`, one at a time, in a process that has loaded
the supervisor (a fork copies its page tables), alternating the two for fairness.

    python bench/spawn.py [--starts 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402

import supervisor.scheduling.supervisor  # noqa: E402, F401  (the daemon's modules loaded, as when it runs)
from supervisor.process.child import spawn  # noqa: E402

ENV = {"PATH": "/bin:/usr/bin"}


async def ours() -> None:
    child = await spawn("/bin/true", [], env=ENV, limit=1 << 20)
    await child.wait()
    while await child.stdout.read(65536):
        pass
    child.close()


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's stream protocol, also telling when the process ended (its `Process.wait()` waits for
    the pipes to close as well)."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.ended: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.ended.done():
            self.ended.set_result(None)


class LibraryChild:
    """What `supervisor.process.child.spawn` returns, made with asyncio's own subprocesses."""

    def __init__(self, transport: asyncio.SubprocessTransport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.pid = transport.get_pid()
        assert protocol.stdout is not None and protocol.stderr is not None
        self.stdout, self.stderr = protocol.stdout, protocol.stderr

    def close(self) -> None:
        self._transport.close()

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode() if self._protocol.ended.done() else None

    async def wait(self) -> int:
        await asyncio.shield(self._protocol.ended)
        code = self._transport.get_returncode()
        assert code is not None
        return code


async def library_spawn(program: str, args: Sequence[str], *, env: Mapping[str, str], limit: int) -> LibraryChild:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(limit, loop), program, *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=dict(env), start_new_session=True)
    return LibraryChild(transport, protocol)


async def library() -> None:
    proc = await asyncio.create_subprocess_exec("/bin/true", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, env=ENV, start_new_session=True)
    await proc.communicate()


async def per_start(start: Callable[[], Awaitable[None]], starts: int) -> float:
    began = time.perf_counter()
    for _ in range(starts):
        await start()
    return (time.perf_counter() - began) / starts * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--starts", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for loop in ("uvloop", "asyncio"):
            for name, start in (("launcher", ours), ("asyncio subprocess", library)):
                run = uvloop.run if loop == "uvloop" else asyncio.run
                results.setdefault(f"{name} on {loop}", []).append(run(per_start(start, args.starts)))
    for name, figures in results.items():
        print(f"{name:32s} {min(figures):6.2f} ms a start (best of {args.rounds}; "
              f"all: {', '.join(f'{f:.2f}' for f in figures)})")


if __name__ == "__main__":
    main()
