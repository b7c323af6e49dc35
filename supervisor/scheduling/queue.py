"""The run's queue: ready jobs oldest recording first, jobs waiting for a retry, and when the run is idle.

One owner of this state: the supervisor asks it to add, take and forget jobs; it never touches
the store. Retry waits run on the injected clock.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from supervisor.clock import Clock, Timer
from supervisor.jobs.model import Job


class QueueItem(NamedTuple):
    """A ready job in the queue, ordered by its fields in turn: oldest recording first, then first queued."""

    recorded_at: str  # ISO 8601, which sorts as the times do
    sequence: int  # the order of insertion: ties never compare the rest
    job_id: int
    video: str


class JobQueue:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._ready: asyncio.PriorityQueue[QueueItem] = asyncio.PriorityQueue()
        self._timers: dict[int, Timer] = {}
        self._outstanding: set[int] = set()  # queued, waiting for a retry, or being started
        self._seq = 0

    def add(self, job: Job) -> bool:
        """Queue a ready job, now or when its retry is due; False when it is already in this run's hands."""
        if job.id in self._outstanding:
            return False
        self._outstanding.add(job.id)
        delay = (job.not_before - self._clock.time()) if job.not_before else 0.0
        if delay > 0:
            self._timers[job.id] = self._clock.call_later(delay, lambda: self._put(job))
        else:
            self._put(job)
        return True

    def _put(self, job: Job) -> None:
        self._timers.pop(job.id, None)
        self._seq += 1
        self._ready.put_nowait(QueueItem(job.recorded_at.isoformat(), self._seq, job.id, str(job.path)))

    async def take(self) -> QueueItem:
        return await self._ready.get()

    def oldest(self, item: QueueItem) -> QueueItem:
        """`item` back, and the oldest ready one out: something older may have arrived meanwhile."""
        self._ready.put_nowait(item)
        return self._ready.get_nowait()

    def put_back(self, item: QueueItem) -> None:
        self._ready.put_nowait(item)

    def forget(self, job_id: int) -> None:
        """The job left this run's queue (it runs, is done, dead, or gone)."""
        self._outstanding.discard(job_id)

    def hold(self, job_id: int) -> None:
        """The job stays this run's to finish without being queued (stopped by us; the store has it queued)."""
        self._outstanding.add(job_id)

    def holds(self, job_id: int) -> bool:
        return job_id in self._outstanding

    @property
    def outstanding(self) -> set[int]:
        return self._outstanding

    @property
    def queued(self) -> int:
        return self._ready.qsize()

    @property
    def waiting_retry(self) -> int:
        return len(self._timers)

    def cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
