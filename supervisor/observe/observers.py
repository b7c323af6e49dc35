"""The seam between the scheduler and what watches it (metrics, alerts, status file, progress bar).

The supervisor calls these hooks through `Observers`, one typed method each; an observer never
blocks the loop and never raises into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Sequence

    from supervisor.jobs.model import JobState
    from supervisor.observe.snapshot import RunningView, Snapshot
    from supervisor.process.runner import Outcome
    from supervisor.protocol.hours import HourRow

log = structlog.get_logger("supervisor")


class Observer:
    """Every hook is optional: the defaults do nothing."""

    async def start(self, snapshot: Snapshot) -> None:
        return None

    async def stop(self) -> None:
        return None

    def job_started(self, rj: RunningView) -> None:
        return None

    def job_finished(self, rj: RunningView, outcome: Outcome, state: JobState) -> None:
        return None

    def people_counted(self, camera: str, hours: Sequence[HourRow]) -> None:
        """A recording's people by hour, recorded with its job done."""
        return None

    def gpu_health_changed(self, gpu: int, old: str, new: str, reason: str) -> None:
        return None

    def scan_completed(self, found: int, new: int) -> None:
        return None

    def store_unavailable(self, error: str) -> None:
        """The job store refused a write (a full disk, a read-only mount); the supervisor keeps retrying."""
        return None

    def run_halted(self, reason: str) -> None:
        """The run stops: a task crashed, or a worker found the configuration unusable (exit 78)."""
        return None

    def share_changed(self, state: str, detail: str) -> None:
        """The videos share became ok, slow or stalled (supervisor/scheduling/share.py)."""
        return None

    def tick(self, snapshot: Snapshot) -> None:
        """Every couple of seconds, from the event loop: a frozen look at the scheduler."""
        return None


class Observers(list[Observer]):
    """Every observer of a run, each hook called on all of them in turn; one that fails is logged, never
    fatal (an observer bug must not stop the scheduler)."""

    def _each(self, hook: str, run: Callable[[Observer], None]) -> None:
        for obs in self:
            try:
                run(obs)
            except Exception as exc:
                log.error("observer_failed", observer=type(obs).__name__, hook=hook,
                          error=f"{type(exc).__name__}: {exc}")

    async def start(self, snapshot: Snapshot) -> None:
        for obs in self:
            await obs.start(snapshot)

    async def stop(self) -> None:
        for obs in self:
            try:
                await obs.stop()
            except Exception as exc:  # the summary is out; an observer's trouble changes nothing now
                log.error("observer_failed", observer=type(obs).__name__, hook="stop", error=str(exc))

    def job_started(self, rj: RunningView) -> None:
        self._each("job_started", lambda obs: obs.job_started(rj))

    def job_finished(self, rj: RunningView, outcome: Outcome, state: JobState) -> None:
        self._each("job_finished", lambda obs: obs.job_finished(rj, outcome, state))

    def people_counted(self, camera: str, hours: Sequence[HourRow]) -> None:
        self._each("people_counted", lambda obs: obs.people_counted(camera, hours))

    def gpu_health_changed(self, gpu: int, old: str, new: str, reason: str) -> None:
        self._each("gpu_health_changed", lambda obs: obs.gpu_health_changed(gpu, old, new, reason))

    def scan_completed(self, found: int, new: int) -> None:
        self._each("scan_completed", lambda obs: obs.scan_completed(found, new))

    def store_unavailable(self, error: str) -> None:
        self._each("store_unavailable", lambda obs: obs.store_unavailable(error))

    def run_halted(self, reason: str) -> None:
        self._each("run_halted", lambda obs: obs.run_halted(reason))

    def share_changed(self, state: str, detail: str) -> None:
        self._each("share_changed", lambda obs: obs.share_changed(state, detail))

    def tick(self, snapshot: Snapshot) -> None:
        self._each("tick", lambda obs: obs.tick(snapshot))
