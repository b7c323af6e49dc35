"""The run's figures as others see them: the frozen snapshot observers get each tick, the queue's counts,
each GPU with what admission by memory makes of it, the videos share's and the store's I/O, and what this
scheduler tells the others on a shared store.

The store's figures are read once a tick for every observer (the per-camera history behind the ETA
only every HISTORY_REFRESH_SECONDS), and this owns the last ones read: a store that does not answer
leaves the snapshot with what it said last, not with nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from supervisor.clock import Clock
from supervisor.gpu.monitor import GpuMonitor
from supervisor.jobs.contract import JobStoreEngine
from supervisor.jobs.model import StoreUnavailable
from supervisor.observe.snapshot import Snapshot
from supervisor.observe.stats import RunStats
from supervisor.scheduling.gpu_memory import MemoryAdmission
from supervisor.scheduling.intake import Intake
from supervisor.scheduling.queue import JobQueue
from supervisor.scheduling.running import RunningJob
from supervisor.scheduling.share import ShareWatch
from supervisor.scheduling.slots import SlotPool

log = structlog.get_logger("supervisor")

# How often the per-camera history behind the ETA is read again from the store.
HISTORY_REFRESH_SECONDS = 30.0


class RunFigures:
    """Reads the run's parts into figures, never changes them. `trouble()`: the error while the store refuses
    calls, else None."""

    def __init__(self, *, store: JobStoreEngine, clock: Clock, daemon: bool, started_at: float,
                 running: Mapping[int, RunningJob], queue: JobQueue, slots: SlotPool, monitor: GpuMonitor,
                 memory: MemoryAdmission, stats: RunStats, intake: Intake, share: ShareWatch,
                 trouble: Callable[[], str | None]) -> None:
        self._store = store
        self._clock = clock
        self._daemon = daemon
        self._started_at = started_at
        self._running = running
        self._queue = queue
        self._slots = slots
        self._monitor = monitor
        self._memory = memory
        self._stats = stats
        self._intake = intake
        self._share = share
        self._trouble = trouble
        self._job_counts: dict[str, int] = {}  # by state, refreshed at each tick
        self._pending_bytes: dict[str, float] = {}
        self._history: dict[str, tuple[float, float, float]] = {}
        self._history_at = float("-inf")
        self._store_round_trip_ms: float | None = None  # the last snapshot's count query, both engines

    @property
    def outstanding(self) -> int:
        """Jobs this run still has to finish: queued, waiting to retry, or running."""
        return len(self._queue.outstanding | set(self._running))

    def queue_status(self) -> dict[str, Any]:
        return {"queued": self._queue.queued, "waiting_retry": self._queue.waiting_retry,
                "running": len(self._running), "limit": self._slots.total_limit}

    async def snapshot(self) -> Snapshot:
        """A frozen look for observers; the store's figures read once for all of them, off the loop."""
        try:
            started = self._clock.monotonic()
            self._job_counts = await self._store.counts()
            self._store_round_trip_ms = round((self._clock.monotonic() - started) * 1000, 1)
            self._pending_bytes = await self._store.pending_bytes_by_camera()
            if self._clock.monotonic() - self._history_at >= HISTORY_REFRESH_SECONDS:
                self._history = await self._store.done_work_by_camera()
                self._history_at = self._clock.monotonic()
        except StoreUnavailable as exc:  # reads go on with the last figures; writes report the trouble
            log.debug("counts_unavailable", error=str(exc))
        return Snapshot(
            at=self._clock.time(), daemon=self._daemon, started_at=self._started_at,
            running=tuple(rj.view() for rj in sorted(self._running.values(), key=lambda r: r.started_at)),
            queued=self._queue.queued, waiting_retry=self._queue.waiting_retry, limit=self._slots.total_limit,
            limits={g: self._slots.limit(g) for g in self._slots.gpus}, monitored=self._monitor.monitored,
            gpus=tuple(self.gpus()), outstanding=self.outstanding, completed=self._stats.completed,
            dead=self._stats.dead, job_counts=dict(self._job_counts), pending_bytes=dict(self._pending_bytes),
            history=self._history, scans=self._intake.scans, last_scan_at=self._intake.last_scan_at,
            reloads=self._intake.reloads, store_trouble=self._trouble(),
            gpu_trends={g: self._monitor.trends.series(g) for g in self._monitor.policies},
            io=self.io(),
        )

    def io(self) -> dict[str, Any]:
        """The videos share, the job store's round trip and alert delivery, as `status` and the page show them."""
        if self._intake.last_scan_seconds is not None:
            self._share.note_scan(self._intake.last_scan_seconds)
        return {"share": self._share.figures(), "store_round_trip_ms": self._store_round_trip_ms}

    def gpus(self) -> list[dict[str, Any]]:
        """Each GPU as the monitor sees it, with what admission by memory makes of it."""
        return [{**g, **self._memory.figures(g["gpu"])} for g in self._monitor.snapshot()]

    def shared_status(self) -> dict[str, Any]:
        """What this scheduler runs, as it tells the others on a shared store."""
        return {
            "running": [{"job_id": rj.job.id, "camera": rj.job.camera, "video": str(rj.job.path),
                         "gpu": rj.gpu, "started_at": rj.started_at} for rj in self._running.values()],
            "limit": self._slots.total_limit, "gpus": self.gpus(), "queue": self.queue_status()}
