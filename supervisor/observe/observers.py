"""The seam between the scheduler and what watches it (metrics, alerts, status file, progress bar).

The supervisor calls these hooks; an observer never blocks the loop and
never raises into it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from supervisor.jobs.store import JobState
    from supervisor.observe.snapshot import RunningView, Snapshot
    from supervisor.process.runner import Outcome
    from supervisor.protocol.hours import HourRow


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

    def tick(self, snapshot: Snapshot) -> None:
        """Every couple of seconds, from the event loop: a frozen look at the scheduler."""
        return None


def call(observers: list[Observer], hook: str, *args: Any) -> None:
    """Run one hook on every observer; a failing observer is logged, never fatal."""
    import structlog

    for obs in observers:
        try:
            getattr(obs, hook)(*args)
        except Exception as exc:  # an observer bug must not stop the scheduler
            structlog.get_logger("supervisor").error("observer_failed", observer=type(obs).__name__, hook=hook,
                                                     error=f"{type(exc).__name__}: {exc}")
