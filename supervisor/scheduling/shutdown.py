"""The end of a run: running jobs drained, the ones still running stopped, and the run's summary said.

Running jobs get `scheduler.drain_seconds` to finish (a second stop request cuts it short); the ones
still running then are stopped, and get their stop grace and RECORD_GRACE_SECONDS more to record
their outcome. A job whose outcome the store never takes is left running there, for the next start
to take up: the daemon exits all the same, it never hangs here. Every way a run ends (done, stopped,
halted, crashed) goes through this one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from supervisor.clock import Clock
from supervisor.config import Settings
from supervisor.jobs.contract import JobStoreEngine
from supervisor.observe.notify import Notifier
from supervisor.observe.observers import Observers
from supervisor.observe.stats import RunStats
from supervisor.process.orphans import OrphanReaper
from supervisor.scheduling.attempts import JobRunner
from supervisor.scheduling.pausing import CriticalPause
from supervisor.scheduling.queue import JobQueue

log = structlog.get_logger("supervisor")

# After the drain and the workers' stop grace, how long a job task may still take to record its outcome.
RECORD_GRACE_SECONDS = 5.0


class Shutdown:
    """Drains and stops the job runner's attempts. Its narrow ties to the run: `stopping()` (a stop request, a
    fault or a halt stopped the intake), `hurry` (set by a second stop request: no drain) and `trouble()`
    (the error while the store refuses calls, else None)."""

    def __init__(self, *, settings: Callable[[], Settings], clock: Clock, store: JobStoreEngine,
                 runner: JobRunner, queue: JobQueue, pausing: CriticalPause, notifier: Notifier,
                 observers: Observers, stats: RunStats, orphans: OrphanReaper | None,
                 stopping: Callable[[], bool], hurry: asyncio.Event, trouble: Callable[[], str | None]) -> None:
        self._settings = settings
        self._clock = clock
        self._store = store
        self._runner = runner
        self._queue = queue
        self._pausing = pausing
        self._notifier = notifier
        self._observers = observers
        self._stats = stats
        self._orphans = orphans
        self._stopping = stopping
        self._hurry = hurry
        self._trouble = trouble

    async def run(self) -> None:
        self._pausing.resume_all(self._runner.pausing_view())  # paused workers drain like the others
        stopping = self._stopping()
        if stopping:
            self._notifier.stopping()
            log.info("shutdown_requested", running=len(self._runner.running), queued=self._queue.queued,
                     drain_seconds=self._settings().scheduler.drain_seconds)
        self._queue.cancel_timers()
        tasks = list(self._runner.tasks)
        if tasks and not self._hurry.is_set():
            # Let running jobs finish for drain_seconds, unless a second stop request cuts it short.
            drained = asyncio.ensure_future(asyncio.wait(tasks))
            hurry = asyncio.ensure_future(self._hurry.wait())
            deadline = asyncio.ensure_future(self._clock.sleep(self._settings().scheduler.drain_seconds))
            await asyncio.wait({drained, hurry, deadline}, return_when=asyncio.FIRST_COMPLETED)
            for helper in (drained, hurry, deadline):
                helper.cancel()
        pending = {t for t in tasks if not t.done()}
        if pending:
            self._runner.stop_all()
            waited = asyncio.ensure_future(asyncio.wait(pending))
            grace = asyncio.ensure_future(self._clock.sleep(self._settings().worker.stop_grace_seconds
                                                            + RECORD_GRACE_SECONDS))
            await asyncio.wait({waited, grace}, return_when=asyncio.FIRST_COMPLETED)
            for helper in (waited, grace):
                helper.cancel()
            stuck = {t for t in pending if not t.done()}
            for task in stuck:  # waiting on a store that does not answer: the next start recovers them
                task.cancel()
            if stuck:
                log.error("jobs_not_recorded", count=len(stuck), store_error=self._trouble(),
                          action="left running in the store; the next start takes them up again")
                _, deaf = await asyncio.wait(stuck, timeout=RECORD_GRACE_SECONDS)
                if deaf:  # not even cancelling ends them: exit all the same, never hang here
                    log.critical("jobs_not_stopped", count=len(deaf), action="exiting without them")
        if self._orphans is not None:
            self._orphans.sweep(set(self._runner.running))  # the jobs are over (but for any stuck on the store)
        await self._log_summary()
        await self._observers.stop()
        if stopping:
            log.info("shutdown_complete", drained=len(tasks) - len(pending), stopped=len(pending))

    async def _log_summary(self) -> None:
        for camera, c in sorted(self._stats.cameras.items()):
            log.info("camera_summary", camera=camera, **c.as_dict())
        try:
            counts: dict[str, int] | str = await self._store.counts()
        except Exception as exc:  # the summary goes out whatever the store's state
            counts = f"unavailable: {exc}"
        log.info("run_summary", **self._stats.totals(), store=counts)
        for (event, reason), n in self._runner.recorder.said.items():
            if n > 1:
                log.warning(f"{event}_repeated", reason=reason, count=n,
                            message=f"said once above; it held for {n} jobs of this run")
