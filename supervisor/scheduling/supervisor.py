"""The supervisor: owns the priority queue, the slots, the running-job table and the stop/rescan requests.

Data flows one way: scan -> store -> queue -> slot -> worker -> store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog

from supervisor.config import ConfigError, Settings, merge_reload
from supervisor.gpu.monitor import NO_DRIVER_WARNING, GpuMonitor, open_probe
from supervisor.gpu.policy import PolicyConfig
from supervisor.gpu.probe import GpuProbe
from supervisor.gpu.simulated import SimulatedProbe
from supervisor.jobs.discovery import ScanResult, scan
from supervisor.jobs.store import READY_STATES, Job, JobState, JobStore, ResultFolderTaken, StoreError, sync_in_thread
from supervisor.observe.notify import Notifier
from supervisor.observe.observers import Observer, call
from supervisor.observe.stats import RunStats
from supervisor.process.launch import job_output_dir, result_key, worker_argv, worker_env
from supervisor.process.runner import Outcome, OutcomeKind, WorkerRun, backoff_delay, should_retry
from supervisor.protocol import EX_CONFIG, EX_FAILED, EX_OK, EX_SOFTWARE
from supervisor.protocol.names import PathParser
from supervisor.protocol.paths import UnsafeOutput, make_result_dir
from supervisor.scheduling.slots import GpuId, SlotPool

log = structlog.get_logger("supervisor")

MIN_RESCAN_INTERVAL = 1.0
HEARTBEAT_SECONDS = 2.0
# A store that refuses writes (a full or read-only disk) is retried, first after 1 s, then ever less often.
STORE_RETRY_FIRST = 1.0
STORE_RETRY_MAX = 60.0
# After the drain and the workers' stop grace, how long a job task may still take to record its outcome.
RECORD_GRACE_SECONDS = 5.0
# A scan of the videos folder still running after this long is stuck (a hung network share): the
# watchdog is no longer fed, so systemd restarts the daemon, loudly.
SCAN_STUCK_SECONDS = 900.0
EX_INTERRUPTED = 130
T = TypeVar("T")
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
                 reload: Callable[[], Settings] | None = None, observers: list[Observer] | None = None,
                 store_retry: tuple[float, float] = (STORE_RETRY_FIRST, STORE_RETRY_MAX),
                 scan_stuck_seconds: float = SCAN_STUCK_SECONDS) -> None:
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
        self._stop_requested = False  # by a signal or the embedding program, not by a fault
        self._crash: str | None = None  # a long-lived task died: the daemon drains and exits 70
        self._halt: str | None = None  # a worker found the configuration unusable: exit 78
        self._supervised: dict[asyncio.Task[Any], str] = {}
        self.store_trouble: str | None = None  # the error while the store refuses writes
        self._store_retry = store_retry  # (first delay, longest delay) between tries of a refused store call
        self._scan_stuck_seconds = scan_stuck_seconds
        self._scan_started: float | None = None  # monotonic time the running scan began
        self._scan_stuck_logged = False

    # --- requests (signal handlers call these; they only record) -----------

    def request_stop(self) -> None:
        self._stop_requested = True
        self._stop_intake()

    def _stop_intake(self) -> None:
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
        tasks: dict[asyncio.Task[Any], str] = {}
        try:
            await self._startup()
            await self._scan_and_queue(reprocess=self.settings.reprocess)
            for obs in self.observers:
                await obs.start(self)
            self.tick_observers()
            self.notifier.ready(self.notifier.last_status or None)
            long_lived: list[tuple[str, Awaitable[None]]] = [
                ("dispatch", self._dispatch()), ("queue-report", self._report_queue()),
                ("heartbeat", self._heartbeat()),
            ]
            if self.monitor.policies:
                long_lived.append(("gpu-health", self.monitor.run()))
            if self.daemon:
                long_lived.append(("rescan", self._rescan_loop()))
            for name, coro in long_lived:
                tasks[asyncio.ensure_future(coro)] = name
            self._supervised = tasks
            waiters = [asyncio.create_task(self._stop.wait())]
            if not self.daemon:
                waiters.append(asyncio.create_task(self._idle.wait()))
            # Every long-lived task is watched together with the stop request: one that ends is a fault.
            done, _ = await asyncio.wait([*tasks, *waiters], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in tasks:
                    self._task_ended(task, tasks[task])
            for w in waiters:
                w.cancel()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    try:
                        await t
                    except Exception as exc:  # it ended with an error while we were stopping
                        self._task_ended(t, tasks[t], exc)
            await self._shutdown()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            self.probe.close()
        return self._exit_code()

    def _exit_code(self) -> int:
        if self._crash is not None:
            return EX_SOFTWARE
        if self._halt is not None:
            return EX_CONFIG
        if self.daemon:
            return EX_OK  # a requested stop of the service is a clean one, whatever the jobs came to
        if self._stop_requested and self._outstanding:
            return EX_INTERRUPTED
        return EX_FAILED if self.stats.dead else EX_OK

    def _task_ended(self, task: asyncio.Task[Any], name: str, exc: BaseException | None = None) -> None:
        """A long-lived task ended on its own: log it once, take no new work, drain, and exit 70."""
        if exc is None and not task.cancelled():
            exc = task.exception()
        if self._crash is not None or (exc is None and self._stop.is_set()):
            return
        error = f"{type(exc).__name__}: {exc}" if exc is not None else "ended unexpectedly"
        self._crash = f"task {name!r} crashed: {error}"
        log.critical("task_crashed", task=name, error=error, exc_info=exc,
                     action="taking no new work; draining, then exiting 70 so that systemd restarts it")
        call(self.observers, "run_halted", self._crash)
        self._stop_intake()

    def _job_task_done(self, task: asyncio.Task[None]) -> None:
        self._job_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._task_ended(task, task.get_name())

    def halt(self, reason: str) -> None:
        """Stop starting jobs for a reason no retry can fix; the run exits 78 once running jobs drain."""
        if self._halt is None:
            self._halt = reason
            log.critical("run_halted", reason=reason, exit_code=EX_CONFIG,
                         action="no new jobs; running ones drain; fix the cause, then start again")
            call(self.observers, "run_halted", reason)
        self._stop_intake()

    async def _store_call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One store call. A store that refuses it (a full or read-only disk, I/O errors, a lock held too
        long) is retried with backoff, logged and alerted, and work resumes by itself when it answers
        again; the caller simply waits, keeping whatever it holds. A damaged store is not retried."""
        delay, longest = self._store_retry
        while True:
            try:
                result = fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if self._stop_now.is_set():
                    raise
                error = str(exc)
                if self.store_trouble is None:
                    log.error("store_unavailable", operation=what, error=error, store=str(self.store.path),
                              retry_in_seconds=delay, action="dispatch paused; retrying until it answers")
                    call(self.observers, "store_unavailable", error)
                else:
                    log.warning("store_still_unavailable", operation=what, error=error, retry_in_seconds=delay)
                self.store_trouble = error
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            if self.store_trouble is not None:
                log.info("store_recovered", operation=what, error_was=self.store_trouble)
                self.store_trouble = None
            return result

    async def _startup(self) -> None:
        recovered = await self._store_call("recover_running", self.store.recover_running)
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
        started = self._scan_started = time.monotonic()
        try:
            result = await self._scan()
        except OSError as exc:
            log.error("scan_failed", videos_dir=str(self.settings.videos_dir), error=exc.strerror or str(exc),
                      action="keeping the queue as it is; the next scan tries again")
            return
        finally:
            self._scan_started = None
            if self._scan_stuck_logged:
                self._scan_stuck_logged = False
                log.info("scan_unstuck", seconds=round(time.monotonic() - started, 1))
        # Recording a big tree takes a while: on a connection of its own, off the event loop.
        try:
            sync = await asyncio.to_thread(sync_in_thread, self.store.path, result.videos, reprocess=reprocess,
                                           now=self._clock(), duration=self.settings.duration)
        except (sqlite3.OperationalError, StoreError) as exc:
            log.error("scan_not_recorded", store=str(self.store.path), error=str(exc), found=len(result.videos),
                      action="the next scan tries again")
            call(self.observers, "store_unavailable", str(exc))
            return
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
        if self.scans == 1:
            ready = await self._store_call("jobs", self.store.jobs, READY_STATES)
        else:
            ready = await self._store_call("jobs_by_id", self.store.jobs_by_id, sync.ready)
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
            if not self.daemon and self.scans == 1 and not self._outstanding:
                log.warning("nothing_to_do", unsettled=len(result.unsettled),
                            message=f"{len(result.unsettled)} video(s) changed within the last "
                                    f"{self.settings.discovery.settle_seconds:g} s (settle_seconds) and may still "
                                    "be recording; run again later, or lower discovery.settle_seconds")
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
                try:
                    self._reload_settings()
                    await self._scan_and_queue()
                finally:
                    self.notifier.ready(self.notifier.last_status or None)  # after RELOADING=1, always
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
        except OSError as exc:
            log.error("reload_failed", error=f"{getattr(exc, 'filename', '') or ''}: {exc.strerror or exc}",
                      kept=self.settings.source)
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
            started = False
            try:
                started = await self._start(item[2], gpu)
            except asyncio.CancelledError:
                if item[2] not in self.running:
                    self.queue.put_nowait(item)
                raise
            finally:
                if not started:
                    self.slots.release(gpu)

    async def _start(self, job_id: int, gpu: GpuId) -> bool:
        try:
            job = await self._store_call("get", self.store.get, job_id)
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
                await self._store_call("assign_result_key", self.store.assign_result_key, job.id, key)
            out_dir = job_output_dir(self.settings.output_dir, key)
        except ResultFolderTaken as exc:
            log.error("result_folder_conflict", job_id=job.id, video=str(job.path), other_job_id=exc.other.id,
                      other_video=str(exc.other.path), folder=exc.key)
            await self._finish_without_run(job, f"{job.path}: {exc}")
            return False
        except ValueError as exc:
            await self._finish_without_run(job, str(exc))
            return False
        if not job.path.is_file():
            await self._finish_without_run(job, f"{job.path}: the video is gone")
            return False
        try:
            make_result_dir(out_dir)
        except UnsafeOutput as exc:
            await self._finish_without_run(job, f"{job.path}: refusing to write results: {exc.strerror}")
            return False
        except OSError as exc:  # a full or read-only results disk: the worker reports it as transient
            log.warning("result_folder_not_created", folder=str(out_dir), error=exc.strerror or str(exc))
        if self._stop.is_set():
            return False  # stopped while the store was being waited for: start nothing new
        now = self._clock()
        job = await self._store_call("mark_running", self.store.mark_running, job_id, now=now)
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
        task.add_done_callback(self._job_task_done)
        return True

    async def _finish_without_run(self, job: Job, reason: str) -> None:
        await self._store_call("mark_running", self.store.mark_running, job.id, now=self._clock())
        await self._store_call("mark_failed", self.store.mark_failed, job.id, now=self._clock(), error=reason,
                               exit_code=None, retry_at=None)
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
            self.slots.release(rj.gpu)  # first: nothing below may keep a slot from the next job
            if outcome is None:  # cancelled: the supervisor is going away; the next start recovers the row
                del self.running[job.id]
                with contextlib.suppress(sqlite3.Error):
                    self.store.requeue_interrupted(job.id)
                self._check_idle()
        try:
            # The job stays ours (in `running`) until its outcome is in the store, however long that takes.
            state = await self._record(rj, outcome)
        finally:
            self.running.pop(job.id, None)
        if state is JobState.FAILED and not self._stop.is_set():
            self._enqueue(await self._store_call("get", self.store.get, job.id))  # to wait for its retry
        self._check_idle()
        call(self.observers, "job_finished", rj, outcome, state)

    async def _record(self, rj: RunningJob, outcome: Outcome) -> JobState:
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
            await self._store_call("mark_done", self.store.mark_done, job.id, now=now, duration=outcome.duration,
                                   output=output, video_seconds=video_seconds, covered_seconds=covered,
                                   damaged_seconds=damaged)
            self.stats.record_done(job.camera, outcome.duration)
            self._outstanding.discard(job.id)
            log.info("job_succeeded", duration_seconds=seconds, output=output, video_seconds=video_seconds,
                     covered_seconds=covered, damaged_seconds=damaged)
            if result.get("engine_fallback"):
                log.warning("engine_fallback", engine=result.get("engine"), reason=result["engine_fallback"])
            if damaged > 0:
                log.warning("video_damaged", damaged_seconds=damaged, spans=result.get("damaged_spans"),
                            output=output, message=f"done, {damaged:.1f} s damaged: see damage in summary.json")
            return JobState.DONE
        if outcome.kind is OutcomeKind.INTERRUPTED:
            await self._store_call("requeue_interrupted", self.store.requeue_interrupted, job.id)
            self.stats.interrupted += 1
            log.info("job_interrupted", duration_seconds=seconds)
            return JobState.QUEUED
        error = outcome.message or str(outcome.kind)
        if outcome.kind is OutcomeKind.BAD_CONFIG:
            # Not the video's fault: the job goes back to the queue, uncharged, and the run halts.
            await self._store_call("requeue_interrupted", self.store.requeue_interrupted, job.id)
            self._outstanding.discard(job.id)
            log.error("job_not_run", reason="the worker found the configuration unusable (exit 78)", error=error,
                      stderr_tail=outcome.stderr_tail)
            self.halt(f"worker exit 78 on {job.path}: {error}")
            return JobState.QUEUED
        w = self.settings.worker
        retry = should_retry(outcome.kind, job.attempts, w.max_attempts, w.max_transient_attempts)
        self.stats.record_failed_attempt(job.camera, outcome.duration, retry)
        if retry:
            delay = backoff_delay(job.attempts, w.retry_backoff_seconds, w.retry_backoff_max_seconds)
            await self._store_call("mark_failed", self.store.mark_failed, job.id, now=now, error=error,
                                   exit_code=outcome.exit_code, retry_at=now + delay)
            log.error("job_failed", outcome=str(outcome.kind), exit_code=outcome.exit_code, error=error,
                      duration_seconds=seconds, retry_in_seconds=round(delay, 3), stderr_tail=outcome.stderr_tail)
            self._outstanding.discard(job.id)
            return JobState.FAILED
        await self._store_call("mark_failed", self.store.mark_failed, job.id, now=now, error=error,
                               exit_code=outcome.exit_code, retry_at=None)
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
        try:
            self.job_counts = self.store.counts()
        except sqlite3.OperationalError as exc:  # reads go on with the last counts; writes report the trouble
            log.debug("counts_unavailable", error=str(exc))
        call(self.observers, "tick", self)

    def healthy(self) -> bool:
        """Whether systemd's watchdog may be fed: no task has crashed, every supervised task still runs, and
        no scan has been stuck longer than scan_stuck_seconds."""
        if self._crash is not None or any(t.done() for t in self._supervised):
            return False
        if self._scan_started is not None and time.monotonic() - self._scan_started > self._scan_stuck_seconds:
            if not self._scan_stuck_logged:
                self._scan_stuck_logged = True
                log.critical("scan_stuck", videos_dir=str(self.settings.videos_dir),
                             seconds=round(time.monotonic() - self._scan_started, 1),
                             action="not feeding the watchdog: systemd restarts the daemon (a hung network "
                                    "share? check the mount)")
            return False
        return True

    async def _heartbeat(self) -> None:
        """Watchdog pings from the event loop itself, so a hung loop gets restarted; observers' tick."""
        interval = HEARTBEAT_SECONDS
        if self.notifier.watchdog_seconds:
            interval = min(interval, self.notifier.watchdog_seconds / 2)
        while True:
            await asyncio.sleep(interval)
            if self.notifier.watchdog_seconds and self.healthy():
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
            _, stuck = await asyncio.wait(pending, timeout=self.settings.worker.stop_grace_seconds
                                          + RECORD_GRACE_SECONDS)
            for task in stuck:  # waiting on a store that does not answer: the next start recovers them
                task.cancel()
            if stuck:
                log.error("jobs_not_recorded", count=len(stuck), store_error=self.store_trouble,
                          action="left running in the store; the next start takes them up again")
                await asyncio.wait(stuck)
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
        try:
            counts: dict[str, int] | str = self.store.counts()
        except sqlite3.Error as exc:
            counts = f"unavailable: {exc}"
        log.info("run_summary", **self.stats.totals(), store=counts)
