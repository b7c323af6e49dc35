"""The supervisor: owns the priority queue, the slots, the running-job table and the stop/rescan requests.

Data flows one way: scan -> store -> queue -> slot -> worker -> store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from .config import ConfigError, Settings, merge_reload
from .discovery import PathParser, ScanResult, scan
from .gpu.monitor import NO_DRIVER_WARNING, GpuMonitor, open_probe
from .gpu.policy import PolicyConfig
from .gpu.probe import GpuProbe
from .gpu.simulated import SimulatedProbe
from .launch import job_output_dir, result_key, worker_argv, worker_env
from .notify import Notifier
from .observers import Observer, call
from .runner import Outcome, OutcomeKind, WorkerRun, backoff_delay, should_retry
from .slots import GpuId, SlotPool
from .stats import RunStats
from .store import READY_STATES, Job, JobState, JobStore, ResultFolderTaken, sync_in_thread

log = structlog.get_logger("supervisor")

MIN_RESCAN_INTERVAL = 1.0
HEARTBEAT_SECONDS = 2.0
QueueItem = tuple[str, int, int]  # (recorded_at ISO, insertion sequence, job id)


@dataclass(slots=True)
class RunningJob:
    """What is known of a job while its worker runs (not stored)."""

    job: Job
    gpu: GpuId
    run: WorkerRun
    started_at: float
    started_monotonic: float
    output_dir: Path
    progress: dict[str, Any] = field(default_factory=dict)

    def percent(self) -> float | None:
        position, duration = self.progress.get("position_seconds"), self.progress.get("duration_seconds")
        if isinstance(position, (int, float)) and isinstance(duration, (int, float)) and duration > 0:
            return max(0.0, min(100.0, 100.0 * position / duration))
        frame, frames = self.progress.get("frame"), self.progress.get("frames")
        if isinstance(frame, (int, float)) and isinstance(frames, (int, float)) and frames > 0:
            return max(0.0, min(100.0, 100.0 * frame / frames))
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class Supervisor:
    """Runs jobs for every discovered video until done (once) or until told to stop (daemon)."""

    def __init__(self, settings: Settings, store: JobStore, *, daemon: bool = False,
                 probe: GpuProbe | None = None, probe_warning: str | None = None,
                 clock: Callable[[], float] = time.time, notifier: Notifier | None = None,
                 reload: Callable[[], Settings] | None = None, observers: list[Observer] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.daemon = daemon
        self._clock = clock
        self.notifier = notifier if notifier is not None else Notifier("")
        self._reload = reload
        self.observers: list[Observer] = list(observers or [])
        self.started_at = time.time()
        if probe is None:
            probe, probe_warning = open_probe(settings.gpu)
        self.probe = probe
        self._probe_warning = probe_warning
        gpus: list[GpuId] = list(probe.indices()) or [None]
        self.slots = SlotPool(gpus, settings.scheduler.max_parallel)
        self.monitor = GpuMonitor(
            probe, self.slots, PolicyConfig.from_settings(settings.gpu, settings.scheduler.max_parallel),
            poll_seconds=settings.gpu.poll_seconds, snapshot_seconds=settings.gpu.snapshot_seconds,
            on_health_change=lambda *args: call(self.observers, "gpu_health_changed", *args),
        )
        if isinstance(probe, SimulatedProbe):
            probe.set_load_source(self._running_by_gpu)
        self.queue: asyncio.PriorityQueue[QueueItem] = asyncio.PriorityQueue()
        self.running: dict[int, RunningJob] = {}
        self.stats = RunStats()
        self.last_scan_at: float | None = None
        self.scans = 0
        self._outstanding: set[int] = set()
        self._retry_timers: dict[int, asyncio.TimerHandle] = {}
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._stop = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._rescan = asyncio.Event()
        self._reload_requested = False
        self.reloads = 0
        self.job_counts: dict[str, int] = {}  # by state, refreshed at each tick
        self._idle = asyncio.Event()
        self._parser = PathParser(settings.discovery.pattern)

    # --- requests (signal handlers call these; they only record) -----------

    def request_stop(self) -> None:
        if self._stop.is_set():
            self._stop_now.set()
            for rj in self.running.values():
                rj.run.request_stop()
        self._stop.set()

    def request_reload(self) -> None:
        """SIGHUP: re-read the settings and ROI files, then rescan."""
        self._reload_requested = True
        self._rescan.set()

    # --- the front door -----------------------------------------------------

    async def run(self, *, handle_signals: bool = True, early_signals: list[int] | None = None) -> int:
        """Run to completion; returns the process exit code.

        `early_signals` arrived before the loop could handle them; they are acted on now, in order.
        """
        loop = asyncio.get_running_loop()
        if handle_signals:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
            for signum in early_signals or ():
                (self.request_reload if signum == signal.SIGHUP else self.request_stop)()
            if early_signals:
                early_signals.clear()
        tasks: list[asyncio.Task[Any]] = []
        try:
            self._startup()
            await self._scan_and_queue(reprocess=self.settings.reprocess)
            for obs in self.observers:
                await obs.start(self)
            self.tick_observers()
            self.notifier.ready(self.notifier.last_status or None)
            tasks.append(asyncio.create_task(self._dispatch(), name="dispatch"))
            tasks.append(asyncio.create_task(self.monitor.run(), name="gpu-health"))
            tasks.append(asyncio.create_task(self._report_queue(), name="queue-report"))
            tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
            if self.daemon:
                tasks.append(asyncio.create_task(self._rescan_loop(), name="rescan"))
            waiters = [asyncio.create_task(self._stop.wait())]
            if not self.daemon:
                waiters.append(asyncio.create_task(self._idle.wait()))
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await self._shutdown()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            self.probe.close()
        return self._exit_code()

    def _exit_code(self) -> int:
        if self._stop.is_set() and not self.daemon and self._outstanding:
            return 130
        return 1 if self.stats.dead else 0

    def _startup(self) -> None:
        recovered = self.store.recover_running()
        log.info(
            "supervisor_started", mode="daemon" if self.daemon else "once", pid=os.getpid(),
            videos_dir=str(self.settings.videos_dir), store=str(self.store.path),
            max_parallel=self.settings.scheduler.max_parallel, probe=self.probe.name,
            gpus=[g for g in self.slots.gpus if g is not None], recovered_running=recovered,
        )
        if self._probe_warning is not None:
            log.warning("gpu_monitoring_unavailable", message=NO_DRIVER_WARNING, reason=self._probe_warning)
        if self.monitor.monitored:
            self.monitor.poll_once()  # never start 4 jobs on a GPU that is already hot

    # --- discovery ----------------------------------------------------------

    async def _scan(self) -> ScanResult:
        s = self.settings
        now = time.time()
        return await asyncio.to_thread(
            scan, s.videos_dir, extensions=s.discovery.extensions, settle_seconds=s.discovery.settle_seconds,
            now=now, parser=self._parser, cameras=s.cameras,
        )

    async def _scan_and_queue(self, *, reprocess: bool = False) -> None:
        started = time.monotonic()
        try:
            result = await self._scan()
        except OSError as exc:
            log.error("scan_failed", videos_dir=str(self.settings.videos_dir), error=exc.strerror or str(exc))
            return
        # Recording a big tree takes a while: on a connection of its own, off the event loop.
        sync = await asyncio.to_thread(sync_in_thread, self.store.path, result.videos, reprocess=reprocess,
                                       now=self._clock(), duration=self.settings.duration)
        self.scans += 1
        self.last_scan_at = self._clock()
        call(self.observers, "scan_completed", len(result.videos), len(sync.new))
        for path, why in result.skipped:
            log.warning("video_skipped", video=str(path), reason=why)
        for path, why in result.errors:
            log.warning("video_unreadable", video=str(path), reason=why)
        new_paths = set(sync.new_paths)
        for v in result.videos:
            if v.time_from_mtime and str(v.path) in new_paths:
                log.info("recording_time_from_mtime", video=str(v.path), camera=v.camera,
                         recorded_at=v.recorded_at.isoformat())
        queued = 0
        # At start everything ready is loaded (queued rows, retries left by an earlier run); later
        # scans only add what this scan made ready.
        ready = self.store.jobs(READY_STATES) if self.scans == 1 else self.store.jobs_by_id(sync.ready)
        for job in ready:
            if job.state in READY_STATES and self._enqueue(job):
                queued += 1
        log.info(
            "scan_complete", found=len(result.videos), new=len(sync.new), changed=len(sync.changed),
            reprocess=len(sync.requeued), unsettled=len(result.unsettled), queued=queued,
            seconds=round(time.monotonic() - started, 3),
        )
        if result.unsettled:
            log.info("videos_unsettled", count=len(result.unsettled),
                     settle_seconds=self.settings.discovery.settle_seconds,
                     examples=[str(p) for p in result.unsettled[:5]])
        self._check_idle()

    async def _rescan_loop(self) -> None:
        last_scan = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescan.wait(), self.settings.scheduler.rescan_seconds)
            # A burst of SIGHUPs becomes at most one scan a second: the first at once, the rest together.
            wait = last_scan + MIN_RESCAN_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            # Clear before scanning: requests that arrive during the scan cause exactly one more.
            self._rescan.clear()
            last_scan = time.monotonic()
            if self._reload_requested:
                self._reload_requested = False
                self.notifier.reloading()
                self._reload_settings()
                await self._scan_and_queue()
                self.notifier.ready(self.notifier.last_status or None)
            else:
                await self._scan_and_queue()

    def _reload_settings(self) -> None:
        """Swap in freshly read settings whole, or keep the old ones when the new files are bad."""
        if self._reload is None:
            return
        try:
            new = self._reload()
        except ConfigError as exc:
            log.error("reload_failed", error=str(exc), kept=self.settings.source)
            return
        new, needs_restart = merge_reload(self.settings, new)
        if needs_restart:
            log.warning("reload_needs_restart", keys=needs_restart)
        self.settings = new
        self._parser = PathParser(new.discovery.pattern)
        self.monitor.poll_seconds = new.gpu.poll_seconds
        self.monitor.snapshot_seconds = new.gpu.snapshot_seconds
        self.monitor.reconfigure(PolicyConfig.from_settings(new.gpu, new.scheduler.max_parallel))
        if self.monitor.monitored:
            self.monitor.poll_once()
        self.reloads += 1
        log.info("settings_reloaded", source=new.source, max_parallel=new.scheduler.max_parallel)

    # --- queue --------------------------------------------------------------

    def _enqueue(self, job: Job) -> bool:
        if job.id in self._outstanding or job.id in self.running:
            return False
        self._outstanding.add(job.id)
        delay = (job.not_before - self._clock()) if job.not_before else 0.0
        if delay > 0:
            self._retry_timers[job.id] = asyncio.get_running_loop().call_later(delay, self._put, job)
        else:
            self._put(job)
        return True

    def _put(self, job: Job) -> None:
        self._retry_timers.pop(job.id, None)
        self._seq += 1
        self.queue.put_nowait((job.recorded_at.isoformat(), self._seq, job.id))

    def _check_idle(self) -> None:
        if not self._outstanding and not self.running:
            self._idle.set()

    async def _dispatch(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                gpu = await self.slots.acquire()
            except asyncio.CancelledError:
                self.queue.put_nowait(item)
                raise
            # Something older may have arrived while we waited for the slot: take the oldest now.
            self.queue.put_nowait(item)
            item = self.queue.get_nowait()
            if not self._start(item[2], gpu):
                self.slots.release(gpu)

    def _start(self, job_id: int, gpu: GpuId) -> bool:
        try:
            job = self.store.get(job_id)
        except KeyError:
            self._outstanding.discard(job_id)
            return False
        if job.state not in READY_STATES:
            self._outstanding.discard(job_id)
            self._check_idle()
            return False
        try:
            key = job.result_key
            if key is None:
                key = result_key(self.settings.videos_dir, job.path)
                self.store.assign_result_key(job.id, key)
            out_dir = job_output_dir(self.settings.output_dir, key)
        except ResultFolderTaken as exc:
            log.error("result_folder_conflict", job_id=job.id, video=str(job.path), other_job_id=exc.other.id,
                      other_video=str(exc.other.path), folder=exc.key)
            self._finish_without_run(job, f"{job.path}: {exc}")
            return False
        except ValueError as exc:
            self._finish_without_run(job, str(exc))
            return False
        if not job.path.is_file():
            self._finish_without_run(job, f"{job.path}: the video is gone")
            return False
        now = self._clock()
        job = self.store.mark_running(job_id, now=now)
        run = WorkerRun(
            worker_argv(self.settings, job, out_dir), env=worker_env(job, gpu),
            timeout=self.settings.worker.timeout_seconds, stop_grace=self.settings.worker.stop_grace_seconds,
            on_event=lambda event: self._on_worker_event(job_id, event),
            on_line=lambda line: log.debug("worker_output", line=line[:1000]),
        )
        rj = RunningJob(job, gpu, run, now, time.monotonic(), out_dir)
        self.running[job_id] = rj
        call(self.observers, "job_started", rj)
        task = asyncio.create_task(self._execute(rj), name=f"job-{job_id}")
        self._job_tasks.add(task)
        task.add_done_callback(self._job_tasks.discard)
        return True

    def _finish_without_run(self, job: Job, reason: str) -> None:
        self.store.mark_running(job.id, now=self._clock())
        self.store.mark_failed(job.id, now=self._clock(), error=reason, exit_code=None, retry_at=None)
        self.stats.record_dead(job.camera)
        log.error("job_dead", job_id=job.id, camera=job.camera, video=str(job.path), error=reason)
        self._outstanding.discard(job.id)
        self._check_idle()

    def _running_by_gpu(self) -> dict[int, int]:
        return {g: n for g, n in self.slots.held_by_gpu().items() if g is not None}

    def _on_worker_event(self, job_id: int, event: dict[str, Any]) -> None:
        rj = self.running.get(job_id)
        if rj is not None and event.get("event") == "progress":
            rj.progress = {k: v for k, v in event.items() if k != "event"}
            rj.progress["at"] = self._clock()

    # --- one job ------------------------------------------------------------

    async def _execute(self, rj: RunningJob) -> None:
        job = rj.job
        structlog.contextvars.bind_contextvars(
            job_id=job.id, camera=job.camera, video=str(job.path), attempt=job.attempts)
        log.info("job_started", gpu=rj.gpu, argv0=rj.run.argv[0], output=str(rj.output_dir),
                 running=len(self.running), limit=self.slots.total_limit)
        outcome: Outcome | None = None
        try:
            outcome = await rj.run.run()
        finally:
            self.slots.release(rj.gpu)
            del self.running[job.id]
            if outcome is None:  # cancelled: the supervisor is going away
                self.store.requeue_interrupted(job.id)
            else:
                state = self._record(rj, outcome)
                call(self.observers, "job_finished", rj, outcome, state)
            self._check_idle()

    def _record(self, rj: RunningJob, outcome: Outcome) -> JobState:
        """Store what the attempt came to; returns the job's new state."""
        job = rj.job
        now = self._clock()
        seconds = round(outcome.duration, 3)
        if outcome.kind is OutcomeKind.SUCCEEDED:
            result = outcome.result or {}
            output = str(result.get("output") or rj.output_dir)
            video_seconds = _number(result.get("video_seconds"))
            damaged = _number(result.get("damaged_seconds")) or 0.0
            covered = video_seconds if result.get("duration_limited") is True else None
            self.store.mark_done(job.id, now=now, duration=outcome.duration, output=output,
                                 video_seconds=video_seconds, covered_seconds=covered, damaged_seconds=damaged)
            self.stats.record_done(job.camera, outcome.duration)
            self._outstanding.discard(job.id)
            log.info("job_succeeded", duration_seconds=seconds, output=output, video_seconds=video_seconds,
                     covered_seconds=covered, damaged_seconds=damaged)
            if damaged > 0:
                log.warning("video_damaged", damaged_seconds=damaged, spans=result.get("damaged_spans"),
                            output=output, message=f"done, {damaged:.1f} s damaged: see damage in summary.json")
            return JobState.DONE
        if outcome.kind is OutcomeKind.INTERRUPTED:
            self.store.requeue_interrupted(job.id)
            self.stats.interrupted += 1
            log.info("job_interrupted", duration_seconds=seconds)
            return JobState.QUEUED
        retry = should_retry(outcome.kind, job.attempts, self.settings.worker.max_attempts)
        error = outcome.message or str(outcome.kind)
        self.stats.record_failed_attempt(job.camera, outcome.duration, retry)
        if retry:
            w = self.settings.worker
            delay = backoff_delay(job.attempts, w.retry_backoff_seconds, w.retry_backoff_max_seconds)
            self.store.mark_failed(job.id, now=now, error=error, exit_code=outcome.exit_code, retry_at=now + delay)
            log.error("job_failed", outcome=str(outcome.kind), exit_code=outcome.exit_code, error=error,
                      duration_seconds=seconds, retry_in_seconds=round(delay, 3), stderr_tail=outcome.stderr_tail)
            self._outstanding.discard(job.id)
            if not self._stop.is_set():
                self._enqueue(self.store.get(job.id))
            return JobState.FAILED
        self.store.mark_failed(job.id, now=now, error=error, exit_code=outcome.exit_code, retry_at=None)
        self.stats.record_dead(job.camera)
        self._outstanding.discard(job.id)
        log.error("job_dead", outcome=str(outcome.kind), exit_code=outcome.exit_code, error=error,
                  attempts=job.attempts, duration_seconds=seconds, stderr_tail=outcome.stderr_tail)
        return JobState.DEAD

    # --- reporting ----------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Jobs this run still has to finish: queued, waiting to retry, or running."""
        return len(self._outstanding | set(self.running))

    def queue_status(self) -> dict[str, Any]:
        return {
            "queued": self.queue.qsize(), "waiting_retry": len(self._retry_timers),
            "running": len(self.running), "limit": self.slots.total_limit,
        }

    def tick_observers(self) -> None:
        """Observers' periodic look: the job counts are read from the store once for all of them."""
        self.job_counts = self.store.counts()
        call(self.observers, "tick", self)

    async def _heartbeat(self) -> None:
        """Watchdog pings from the event loop itself, so a hung loop gets restarted; observers' tick."""
        interval = HEARTBEAT_SECONDS
        if self.notifier.watchdog_seconds:
            interval = min(interval, self.notifier.watchdog_seconds / 2)
        while True:
            await asyncio.sleep(interval)
            if self.notifier.watchdog_seconds:
                self.notifier.watchdog()
            self.tick_observers()

    async def _report_queue(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gpu.snapshot_seconds)
            log.info("queue_status", **self.queue_status())

    # --- the back door ------------------------------------------------------

    async def _shutdown(self) -> None:
        stopping = self._stop.is_set()
        if stopping:
            self.notifier.stopping()
            log.info("shutdown_requested", running=len(self.running), queued=self.queue.qsize(),
                     drain_seconds=self.settings.scheduler.drain_seconds)
        for handle in self._retry_timers.values():
            handle.cancel()
        self._retry_timers.clear()
        tasks = list(self._job_tasks)
        if tasks and not self._stop_now.is_set():
            # Let running jobs finish for drain_seconds, unless a second stop request cuts it short.
            drained = asyncio.create_task(asyncio.wait(tasks))
            hurry = asyncio.create_task(self._stop_now.wait())
            await asyncio.wait({drained, hurry}, timeout=self.settings.scheduler.drain_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
            for helper in (drained, hurry):
                helper.cancel()
        pending = {t for t in tasks if not t.done()}
        if pending:
            for rj in list(self.running.values()):
                rj.run.request_stop()
            await asyncio.wait(pending)
        self._log_summary()
        for obs in self.observers:
            try:
                await obs.stop()
            except Exception as exc:  # the summary is out; an observer's trouble changes nothing now
                log.error("observer_failed", observer=type(obs).__name__, hook="stop", error=str(exc))
        if stopping:
            log.info("shutdown_complete", drained=len(tasks) - len(pending), stopped=len(pending))

    def _log_summary(self) -> None:
        for camera, c in sorted(self.stats.cameras.items()):
            log.info("camera_summary", camera=camera, **c.as_dict())
        log.info("run_summary", **self.stats.totals(), store=self.store.counts())
