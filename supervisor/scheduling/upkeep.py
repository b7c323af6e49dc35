"""The run's upkeep: the long-lived tasks that go round on the watchdog's beat, each doing one thing in a
task of its own, so that a slow one never delays another.

- housekeeping: the store's identity checked (a store deleted or replaced under us stops the run,
  loudly) and kept whole, the orphans of finished jobs ended, observers ticked;
- lease renewals (leases.py), each bounded by a timeout well within the lease, so a hung store never
  holds them; they stamp the watchdog's beat, since they must go round whatever the store does;
- on a shared store, what this scheduler runs said to the others, and the jobs of one that stopped
  renewing its claims taken over (takeover.py);
- the queue report, at every GPU snapshot interval.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import structlog

from supervisor.clock import Clock
from supervisor.config import Settings
from supervisor.jobs.contract import JobStoreEngine
from supervisor.jobs.model import StoreUnavailable
from supervisor.process.orphans import OrphanReaper
from supervisor.scheduling.figures import RunFigures
from supervisor.scheduling.leases import ClaimRenewer
from supervisor.scheduling.queue import JobQueue
from supervisor.scheduling.running import RunningJob
from supervisor.scheduling.takeover import Takeovers

log = structlog.get_logger("supervisor")


class Upkeep:
    """The upkeep tasks, which drive the parts that own what they touch. Its narrow ties to the run:
    `interval()` and `beat(name)` (the watchdog's), `tick()` (observers handed a snapshot) and `stopping()`
    (no new work is queued)."""

    def __init__(self, *, settings: Callable[[], Settings], clock: Clock, store: JobStoreEngine,
                 orphans: OrphanReaper | None, running: Mapping[int, RunningJob], queue: JobQueue,
                 renewer: ClaimRenewer, takeovers: Takeovers, figures: RunFigures, interval: Callable[[], float],
                 beat: Callable[[str], None], tick: Callable[[], Awaitable[None]],
                 stopping: Callable[[], bool]) -> None:
        self._settings = settings
        self._clock = clock
        self._store = store
        self._orphans = orphans  # where this process is a subreaper: the orphans of finished jobs end
        self._running = running
        self._queue = queue
        self._renewer = renewer
        self._takeovers = takeovers
        self._figures = figures
        self._interval = interval
        self._beat = beat
        self._tick = tick
        self._stopping = stopping

    async def housekeeping(self) -> None:
        """The store's identity checked (a store deleted or replaced under us stops the run, loudly) and kept
        whole; the orphans of finished jobs ended; observers ticked."""
        while True:
            await self._clock.sleep(self._interval())
            await self._store.check(idle=not self._running and not self._queue.outstanding)
            if self._orphans is not None:
                self._orphans.sweep({rj.job.id for rj in self._running.values()})
            await self._tick()

    async def leases(self) -> None:
        """Renew this scheduler's claims, in a task of its own that does nothing else (a slow scan, store
        check or takeover never delays it), each renewal bounded by a timeout well within the lease; stop at
        once the worker of a claim found lost."""
        self._beat("leases")
        while True:
            await self._clock.sleep(self._interval())
            await self._renewer.renew(timeout=self._settings().scheduler.lease_seconds / 3)
            self._beat("leases")

    async def takeovers(self) -> None:
        """A shared store: say what this scheduler runs, and take over the jobs of one that stopped renewing
        its claims."""
        while True:
            await self._clock.sleep(self._interval())
            await self._share_state()

    async def _share_state(self) -> None:
        """Say what this scheduler runs, and take over the jobs of one that stopped renewing its claims. A store
        that does not answer now is asked next time."""
        try:
            await self._store.publish_status(self._figures.shared_status())
            reclaimed = await self._store.reclaim_expired()
        except StoreUnavailable:
            return  # said once by the renewals; asked again next time
        await self._takeovers.settle_recovered(reclaimed, enqueue=not self._stopping())

    async def report_queue(self) -> None:
        while True:
            await self._clock.sleep(self._settings().gpu.snapshot_seconds)
            log.info("queue_status", **self._figures.queue_status())
