"""Intake: scan the videos folder, record what it holds in the store, and hand ready jobs to the queue.

Owns the scan state (how many, when, whether one is stuck) and the rescan and reload requests.
Scans run off the event loop; a burst of SIGHUPs becomes at most one scan a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from supervisor.clock import Clock, wait_event
from supervisor.config import ConfigError, Settings, merge_reload
from supervisor.jobs.contract import JobStoreEngine
from supervisor.jobs.discovery import ScanResult, scan
from supervisor.jobs.model import READY_STATES, Job, StoreError, StoreUnavailable
from supervisor.observe.observers import Observers
from supervisor.protocol.names import PathParser

if TYPE_CHECKING:
    from supervisor.scheduling.queue import JobQueue

log = structlog.get_logger("supervisor")

MIN_RESCAN_INTERVAL = 1.0


class Intake:
    def __init__(self, settings: Settings, store: JobStoreEngine, queue: JobQueue, clock: Clock, *,
                 daemon: bool, observers: Observers, enqueue: Callable[[Job], bool],
                 store_call: Callable[..., Awaitable[Any]]) -> None:
        self.settings = settings
        self._store = store
        self._queue = queue
        self._clock = clock
        self._daemon = daemon
        self._observers = observers
        self._enqueue = enqueue
        self._store_call = store_call  # retries while the store refuses, as for every other call
        self._parser = PathParser(settings.discovery.pattern)
        self.scans = 0
        self.last_scan_at: float | None = None
        self.last_scan_seconds: float | None = None  # how long the last walk of the videos folder took
        self.reloads = 0
        self.scan_started: float | None = None  # the clock's monotonic time the running scan began
        self._stuck_logged = False
        self.rescan_requested = asyncio.Event()
        self._reload_requested = False

    def request_reload(self) -> None:
        self._reload_requested = True
        self.rescan_requested.set()

    def take_reload_request(self) -> bool:
        """Whether a reload was asked for since the last time this was called."""
        asked, self._reload_requested = self._reload_requested, False
        return asked

    def scan_stuck(self, now: float, limit: float) -> bool:
        """Whether the running scan has taken longer than `limit` seconds by `now` (the clock's monotonic time):
        a hung network share. Said once per stuck scan, loudly."""
        began = self.scan_started
        if began is None or now - began <= limit:
            return False
        if not self._stuck_logged:
            self._stuck_logged = True
            log.critical("scan_stuck", videos_dir=str(self.settings.videos_dir), seconds=round(now - began, 1),
                         action="not feeding the watchdog: systemd restarts the daemon (a hung network share? "
                                "check the mount)")
        return True

    async def scan(self) -> ScanResult:
        """Walk the tree, off the loop (a hung share blocks a thread, never the scheduler)."""
        s = self.settings
        return await asyncio.to_thread(
            scan, s.videos_dir, extensions=s.discovery.extensions, settle_seconds=s.discovery.settle_seconds,
            now=self._clock.time(), parser=self._parser, cameras=s.cameras,
        )

    async def scan_and_queue(self, *, reprocess: bool = False) -> None:
        started = self.scan_started = self._clock.monotonic()
        try:
            result = await self.scan()
        except OSError as exc:
            log.error("scan_failed", videos_dir=str(self.settings.videos_dir), error=exc.strerror or str(exc),
                      action="keeping the queue as it is; the next scan tries again")
            return
        finally:
            self.last_scan_seconds = self._clock.monotonic() - started
            self.scan_started = None
            if self._stuck_logged:
                self._stuck_logged = False
                log.info("scan_unstuck", seconds=round(self._clock.monotonic() - started, 1))
        try:
            if self._daemon:  # refused: said below, and the next scan tries again
                sync = await self._store.sync(result.videos, reprocess=reprocess, now=self._clock.time(),
                                              duration=self.settings.duration)
            else:  # a once run scans once: it waits for the store, as for every other call
                sync = await self._store_call("sync", self._store.sync, result.videos, reprocess=reprocess,
                                              now=self._clock.time(), duration=self.settings.duration)
        except StoreUnavailable as exc:  # the store's trouble (a full disk, a server away), said as such
            log.error("scan_not_recorded", store=self._store.describe, error=str(exc), found=len(result.videos),
                      action="the next scan tries again")
            self._observers.store_unavailable(str(exc))
            return
        except StoreError as exc:  # a store that cannot be trusted any more (deleted, replaced): stop, loudly
            log.error("scan_not_recorded", store=self._store.describe, error=str(exc), found=len(result.videos),
                      action="stopping: the job store cannot be used")
            raise
        self.scans += 1
        self.last_scan_at = self._clock.time()
        self._observers.scan_completed(len(result.videos), len(sync.new))
        for path, why in result.skipped:
            log.warning("video_skipped", video=str(path), reason=why)
        for path, why in result.errors:
            log.warning("video_unreadable", video=str(path), reason=why)
        new_paths = set(sync.new_paths)
        for v in result.videos:
            if v.time_from_mtime and str(v.path) in new_paths:
                log.info("recording_time_from_mtime", video=str(v.path), camera=v.camera,
                         recorded_at=v.recorded_at.isoformat())
        # At start everything ready is loaded (queued rows, retries left by an earlier run); later
        # scans only add what this scan made ready, unless other schedulers share the store: then a
        # retry due on a host that went away is everyone's to take.
        if self.scans == 1 or self._store.shared:
            ready: list[Job] = await self._store_call("jobs", self._store.jobs, READY_STATES)
        else:
            ready = await self._store_call("jobs_by_id", self._store.jobs_by_id, sync.ready)
            # And what an operator queued again since (`video-supervisor retry`).
            ready += await self._store_call("retry_requested", self._store.retry_requested)
        queued = sum(1 for job in ready if job.state in READY_STATES and self._enqueue(job))
        log.info(
            "scan_complete", found=len(result.videos), new=len(sync.new), changed=len(sync.changed),
            reprocess=len(sync.requeued), unsettled=len(result.unsettled), queued=queued,
            seconds=round(self._clock.monotonic() - started, 3),
        )
        if result.unsettled:
            log.info("videos_unsettled", count=len(result.unsettled),
                     settle_seconds=self.settings.discovery.settle_seconds,
                     examples=[str(p) for p in result.unsettled[:5]])
            if not self._daemon and self.scans == 1 and not self._queue.outstanding:
                log.warning("nothing_to_do", unsettled=len(result.unsettled),
                            message=f"{len(result.unsettled)} video(s) changed within the last "
                                    f"{self.settings.discovery.settle_seconds:g} s (settle_seconds) and may still "
                                    "be recording; run again later, or lower discovery.settle_seconds")

    def reload(self, read: Callable[[], Settings] | None) -> Settings | None:
        """Freshly read settings, merged, or None when the new files are bad (the old ones stay)."""
        if read is None:
            return None
        try:
            new = read()
        except ConfigError as exc:
            log.error("reload_failed", error=str(exc), kept=self.settings.source)
            return None
        except OSError as exc:
            log.error("reload_failed", error=f"{getattr(exc, 'filename', '') or ''}: {exc.strerror or exc}",
                      kept=self.settings.source)
            return None
        new, needs_restart = merge_reload(self.settings, new)
        if needs_restart:
            log.warning("reload_needs_restart", keys=needs_restart)
        self.settings = new
        self._parser = PathParser(new.discovery.pattern)
        self.reloads += 1
        log.info("settings_reloaded", source=new.source, max_parallel=new.scheduler.max_parallel)
        return new

    async def next_request(self, last_scan: float) -> None:
        """Wait for the periodic rescan or a SIGHUP, then at most one scan a second."""
        await wait_event(self._clock, self.rescan_requested, self.settings.scheduler.rescan_seconds)
        wait = last_scan + MIN_RESCAN_INTERVAL - self._clock.monotonic()
        if wait > 0:
            await self._clock.sleep(wait)
        # Cleared before the scan: requests that arrive during it cause exactly one more.
        self.rescan_requested.clear()
