"""How a job's worker is started: the seam between the scheduler and real processes.

`ProcessLauncher` starts a real subprocess (see runner.py). Tests give the scheduler a launcher
that runs in-process on a manual clock, with scripted outcomes and timings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from supervisor.process.runner import EventCallback, LineCallback, Outcome, WorkerRun


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    argv: Sequence[str]
    env: Mapping[str, str]
    timeout: float
    stop_grace: float
    done_grace: float = 10.0


class WorkerHandle(Protocol):
    @property
    def argv(self) -> list[str]: ...

    async def run(self) -> Outcome:
        """Run the attempt to its end (once)."""
        ...

    def request_stop(self) -> None:
        """Stop it: the outcome is then INTERRUPTED."""
        ...

    def kill_now(self) -> None:
        """Kill it and everything in its group at once (its claim was lost): the outcome is INTERRUPTED."""
        ...

    @property
    def paused(self) -> bool: ...

    def pause(self) -> None:
        """Stop it where it is (SIGSTOP), holding its place; its timeout waits."""
        ...

    def resume(self) -> None:
        """Let it go on (SIGCONT)."""
        ...


class Launcher(Protocol):
    def launch(self, spec: LaunchSpec, *, on_event: EventCallback, on_line: LineCallback) -> WorkerHandle: ...


class ProcessLauncher:
    def launch(self, spec: LaunchSpec, *, on_event: EventCallback, on_line: LineCallback) -> WorkerHandle:
        return WorkerRun(spec.argv, env=spec.env, timeout=spec.timeout, stop_grace=spec.stop_grace,
                         done_grace=spec.done_grace, on_event=on_event, on_line=on_line)
