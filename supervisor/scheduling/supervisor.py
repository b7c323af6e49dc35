"""The supervisor: takes ready jobs oldest first, gives each a slot and a worker, records what came of it.

Data flows one way: intake (scan -> store -> queue) -> slot -> launcher -> outcome -> store.
Its seams are injected: the store engine, the clock, the launcher and the GPU probe; observers
see frozen snapshots. Signals are wired by the caller (app.py) to request_stop/request_reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import structlog

from supervisor.clock import Clock, LoopClock
from supervisor.config import Settings
from supervisor.gpu.monitor import NO_DRIVER_WARNING, GpuMonitor, open_probe
from supervisor.gpu.policy import PolicyConfig
from supervisor.gpu.probe import GpuProbe
from supervisor.jobs.contract import JobStoreEngine
from supervisor.jobs.model import Job, JobState, ResultFolderTaken, StoreError, StoreUnavailable, Takeover
from supervisor.observe.notify import Notifier
from supervisor.observe.observers import Observer, Observers
from supervisor.observe.snapshot import RunningView, Snapshot
from supervisor.observe.stats import RunStats
from supervisor.process.command import worker_argv, worker_env
from supervisor.process.launcher import Launcher, LaunchSpec, ProcessLauncher, WorkerHandle
from supervisor.process.orphans import OrphanReaper
from supervisor.process.runner import Outcome, OutcomeKind
from supervisor.protocol import EX_CONFIG, EX_FAILED, EX_OK, EX_SOFTWARE
from supervisor.protocol.events import EVENT_PROGRESS, EVENT_WARNING, DoneEvent
from supervisor.protocol.hours import HourRow, hours_of
from supervisor.protocol.paths import ResultRoot, UnsafeOutput, staging_key
from supervisor.scheduling.intake import Intake
from supervisor.scheduling.outcomes import Decision, Verdict, decide
from supervisor.scheduling.queue import JobQueue, QueueItem
from supervisor.scheduling.recovery import finished_result, recovered_outcome
from supervisor.scheduling.result_folders import job_output_dir, real_root, result_key
from supervisor.scheduling.slots import GpuId, SlotPool

log = structlog.get_logger("supervisor")

HEARTBEAT_SECONDS = 2.0
# A store that refuses writes (a full or read-only disk) is retried, first after 1 s, then ever less often.
STORE_RETRY_FIRST = 1.0
STORE_RETRY_MAX = 60.0
# After the drain and the workers' stop grace, how long a job task may still take to record its outcome.
RECORD_GRACE_SECONDS = 5.0
# A scan of the videos folder still running after this long is stuck (a hung network share): the
# watchdog is no longer fed, so systemd restarts the daemon, loudly.
SCAN_STUCK_SECONDS = 900.0
# How often the per-camera history behind the ETA is read again from the store.
HISTORY_REFRESH_SECONDS = 30.0
EX_INTERRUPTED = 130
T = TypeVar("T")


def _published(output: str | None, staging: Path, final: Path) -> str | None:
    """A path the worker named inside its staging folder, as it reads once published."""
    if output is None:
        return output
    try:
        return str(final / Path(output).relative_to(staging))
    except ValueError:
        return output


@dataclass(slots=True)
class RunningJob:
    """What is known of a job while its worker runs (not stored). The worker writes into `staging`, a
    folder of its attempt's own; only while the claim (`job.claim_token`) is held is it published at
    `output_dir` (the result folder, `key` under the output root)."""

    job: Job
    gpu: GpuId
    run: WorkerHandle
    started_at: float
    output_dir: Path
    key: str
    staging: Path
    progress: dict[str, Any] = field(default_factory=dict)
    lease_lost: bool = False  # another scheduler took the job over: nothing of this attempt is recorded
    recording: bool = False  # its outcome is on its way to the store

    @property
    def token(self) -> int:
        return self.job.claim_token

    def view(self) -> RunningView:
        return RunningView(self.job, self.gpu, self.started_at, self.output_dir, dict(self.progress))


class Supervisor:
    """Runs jobs for every discovered video until done (once) or until told to stop (daemon)."""

    def __init__(self, settings: Settings, store: JobStoreEngine, *, daemon: bool = False,
                 probe: GpuProbe | None = None, probe_warning: str | None = None,
                 clock: Clock | None = None, launcher: Launcher | None = None, notifier: Notifier | None = None,
                 reload: Callable[[], Settings] | None = None, observers: list[Observer] | None = None,
                 store_retry: tuple[float, float] = (STORE_RETRY_FIRST, STORE_RETRY_MAX),
                 scan_stuck_seconds: float = SCAN_STUCK_SECONDS, orphans: OrphanReaper | None = None) -> None:
        self.store = store
        self.daemon = daemon
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.launcher: Launcher = launcher if launcher is not None else ProcessLauncher()
        self.notifier = notifier if notifier is not None else Notifier("")
        self.orphans = orphans  # where this process is a subreaper: the orphans of finished jobs end
        self._reload = reload
        self.observers = Observers(observers or [])
        self.started_at = self.clock.time()
        if probe is None:
            probe, probe_warning = open_probe(settings.gpu)
        self.probe = probe
        self._probe_warning = probe_warning
        gpus: list[GpuId] = list(probe.indices()) or [None]
        self.slots = SlotPool(gpus, settings.scheduler.max_parallel)
        self.monitor = GpuMonitor(
            probe, gpus, PolicyConfig.from_settings(settings.gpu, settings.scheduler.max_parallel),
            poll_seconds=settings.gpu.poll_seconds, snapshot_seconds=settings.gpu.snapshot_seconds,
            slots=lambda: {g: (self.slots.limit(g), self.slots.held(g), self.slots.accepting(g))
                           for g in self.slots.gpus},
            clock=self.clock.monotonic, sleep=self.clock.sleep,
            on_health_change=self.observers.gpu_health_changed,
        )
        probe.watch_load(lambda: {g: n for g, n in self.slots.held_by_gpu().items() if g is not None})
        self.queue = JobQueue(self.clock)
        self.intake = Intake(settings, store, self.queue, self.clock, daemon=daemon, observers=self.observers,
                             enqueue=self._enqueue, store_call=self._store_call)
        self.running: dict[int, RunningJob] = {}
        self.stats = RunStats()
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._stop_now = asyncio.Event()
        self.job_counts: dict[str, int] = {}  # by state, refreshed at each tick
        self._pending_bytes: dict[str, float] = {}
        self._history: dict[str, tuple[float, float, float]] = {}
        self._history_at = float("-inf")
        self._idle = asyncio.Event()
        self._stop_requested = False  # by a signal or the embedding program, not by a fault
        self._crash: str | None = None  # a long-lived task died: the daemon drains and exits 70
        self._halt: str | None = None  # a worker found the configuration unusable: exit 78
        self._supervised: dict[asyncio.Task[Any], str] = {}
        self.store_trouble: str | None = None  # the error while the store refuses writes
        self._reading = 0  # result folders being read on threads (people by hour)
        self._said: dict[tuple[str, str], int] = {}  # causes said once per run, with how often they held
        self._store_retry = store_retry  # (first delay, longest delay) between tries of a refused store call
        self._scan_stuck_seconds = scan_stuck_seconds
        self._base_env = dict(os.environ)  # what workers inherit, copied once
        self._results: ResultRoot | None = None  # the output folder, opened at the first job
        self._beat_failing = False  # a shared store has not taken the last heartbeat

    @property
    def settings(self) -> Settings:
        """The settings in force: intake owns them, since a reload swaps them there."""
        return self.intake.settings

    @settings.setter
    def settings(self, new: Settings) -> None:
        self.intake.settings = new

    @property
    def scans(self) -> int:
        return self.intake.scans

    @property
    def reloads(self) -> int:
        return self.intake.reloads

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
        self.intake.request_reload()

    # --- the front door -----------------------------------------------------

    async def run(self) -> int:
        """Run to completion; returns the process exit code."""
        tasks: dict[asyncio.Task[Any], str] = {}
        try:
            await self._startup()
            with contextlib.suppress(StoreError):  # a broken store: the first heartbeat's check stops the run
                await self.intake.scan_and_queue(reprocess=self.settings.reprocess)
            self._check_idle()
            snapshot = await self.snapshot()
            await self.observers.start(snapshot)
            self.observers.tick(snapshot)
            self.notifier.ready(self.notifier.last_status or None)
            long_lived: list[tuple[str, Awaitable[None]]] = [
                ("dispatch", self._dispatch()), ("queue-report", self._report_queue()),
                ("heartbeat", self._heartbeat()), ("leases", self._leases()),
            ]
            if self.store.shared:
                long_lived.append(("takeovers", self._takeovers()))
            if self.monitor.policies:
                long_lived.append(("gpu-health", self.monitor.run(self.slots.apply)))
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
            self.probe.close()
            if self._results is not None:
                self._results.close()
        return self._exit_code()

    def _exit_code(self) -> int:
        if self._crash is not None:
            return EX_SOFTWARE
        if self._halt is not None:
            return EX_CONFIG
        if self.daemon:
            return EX_OK  # a requested stop of the service is a clean one, whatever the jobs came to
        if self._stop_requested and self.outstanding:
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
        self.observers.run_halted(self._crash)
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
            self.observers.run_halted(reason)
        self._stop_intake()

    async def _store_call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """One store call. A store that refuses it (a full or read-only disk, I/O errors, a lock held too
        long, a server restarting) is retried with backoff, logged and alerted, and work resumes by itself
        when it answers again; the caller simply waits, keeping whatever it holds. A damaged store is not
        retried."""
        delay, longest = self._store_retry
        while True:
            try:
                result = await fn(*args, **kwargs)
            except StoreUnavailable as exc:
                if self._stop_now.is_set():
                    raise
                error = str(exc)
                if self.store_trouble is None:
                    log.error("store_unavailable", operation=what, error=error, store=self.store.describe,
                              retry_in_seconds=delay, action="dispatch paused; retrying until it answers")
                    self.observers.store_unavailable(error)
                else:
                    log.warning("store_still_unavailable", operation=what, error=error, retry_in_seconds=delay)
                self.store_trouble = error
                await self.clock.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            if self.store_trouble is not None:
                log.info("store_recovered", operation=what, error_was=self.store_trouble)
                self.store_trouble = None
            return result

    async def _startup(self) -> None:
        recovered: list[Takeover] = await self._store_call("recover_running", self.store.recover_running)
        await self._settle_recovered(recovered, enqueue=False)  # the first scan queues the rest
        log.info(
            "supervisor_started", mode="daemon" if self.daemon else "once", pid=os.getpid(),
            videos_dir=str(self.settings.videos_dir), store=self.store.describe,
            max_parallel=self.settings.scheduler.max_parallel, probe=self.probe.name,
            gpus=[g for g in self.slots.gpus if g is not None], recovered_running=len(recovered),
        )
        if self._probe_warning is not None:
            log.warning("gpu_monitoring_unavailable", message=NO_DRIVER_WARNING, reason=self._probe_warning)
        if self.monitor.monitored:
            self.slots.apply(self.monitor.poll_once())  # never start 4 jobs on a GPU that is already hot
        await self._fill_people()

    async def _hours(self, folder: Path) -> list[HourRow] | None:
        """A published result set's people by hour, for the store (none when its files do not say, as a
        worker of the user's own that writes no counts); None when the folder cannot be read now. Read off
        the loop."""
        self._reading += 1
        try:
            return await asyncio.to_thread(hours_of, folder)
        except OSError as exc:
            log.warning("people_unreadable", folder=str(folder), error=exc.strerror or str(exc),
                        action="no people by hour from it now")
            return None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("people_unreadable", folder=str(folder), error=str(exc),
                        action="its summary.json is not what the worker writes: no people by hour from it")
            return []
        finally:
            self._reading -= 1

    def _say_once(self, event: str, reason: str, **fields: Any) -> None:
        """A cause that holds for every job alike (a model without its CPU export) is said once per run;
        the run's summary says how many jobs it held for."""
        n = self._said[(event, reason)] = self._said.get((event, reason), 0) + 1
        if n == 1:
            log.warning(event, reason=reason, **fields)

    def busy_off_loop(self) -> bool:
        """Whether work it handed to a thread (a store call, a scan, a result read) is still under way: what a
        clock moved by hand waits for before it moves on."""
        return self.store.in_flight > 0 or self.intake.scan_started is not None or self._reading > 0

    async def _fill_people(self) -> None:
        """Once, for a store kept before it held people by hour: each done job's rows, from its result files."""
        filled = later = 0
        after = 0
        while batch := await self._store_call("without_people", self.store.without_people, after=after):
            for job in batch:
                after = job.id
                folder = job_output_dir(self.settings.output_dir, job.result_key) if job.result_key else None
                hours = await self._hours(folder) if folder is not None else []
                if hours is None:  # not readable now (a share not mounted yet): the next start tries again
                    later += 1
                    continue
                await self._store_call("record_people", self.store.record_people, job.id, hours)
                filled += 1
        if filled:
            log.info("people_filled", jobs=filled, message="people by hour of done jobs read from their results")
        if later:
            log.warning("people_not_filled", jobs=later, action="their result folders cannot be read now; the "
                        "next start tries again")

    async def _settle_recovered(self, takeovers: list[Takeover], *, enqueue: bool) -> None:
        """Jobs whose scheduler is gone, now held by this one: done if the lost attempt had finished (its
        result set complete, published now if it was still staged), else queued again, the attempt not
        counted (`enqueue`: into this run's queue at once; otherwise the next scan does it)."""
        for taken in takeovers:
            job, lost = taken.job, taken.lost_token
            result, key = None, job.result_key
            if key is not None:
                result = self._lost_attempts_result(job, key, lost)
            if result is None:
                if key is not None:
                    with contextlib.suppress(OSError, ValueError):
                        self._results_folder().discard(key, lost)
                requeued = await self._store_call("requeue_interrupted", self.store.requeue_interrupted, job.id,
                                                  token=job.claim_token)
                log.warning("job_recovered", job_id=job.id, video=str(job.path), camera=job.camera,
                            action="its scheduler stopped while it ran: queued again, the attempt not counted"
                            if requeued else "taken by another scheduler meanwhile")
                if enqueue and requeued:
                    self._enqueue(replace(job, state=JobState.QUEUED))
                continue
            outcome = recovered_outcome(result, job, self.clock.time())
            d = decide(outcome, job, self.settings.worker, result.output or "")
            hours = await self._hours(Path(d.output or "").parent) or []
            if await self._mark_done(job.id, job.claim_token, self.clock.time(), outcome, d, d.output, hours):
                log.info("job_done_before_restart", job_id=job.id, video=str(job.path), output=d.output,
                         message="its worker had finished when its scheduler stopped: recorded done, not run again")

    def _lost_attempts_result(self, job: Job, key: str, lost: int) -> DoneEvent | None:
        """The done event of the attempt of claim `lost`, published if it was still staged; else None."""
        try:
            final = job_output_dir(self.settings.output_dir, key)
            staged = job_output_dir(self.settings.output_dir, staging_key(key, lost))
            result = finished_result(staged, job, lost)
            if result is not None and self._results_folder().publish(key, lost):
                return replace(result, output=_published(result.output, staged, final))
            return finished_result(final, job, lost)
        except (OSError, ValueError) as exc:
            log.warning("result_not_checked", job_id=job.id, folder=key, error=str(exc))
            return None

    # --- intake -------------------------------------------------------------

    async def _rescan_loop(self) -> None:
        last_scan = self.clock.monotonic()
        while True:
            await self.intake.next_request(last_scan)
            last_scan = self.clock.monotonic()
            if self.intake.reload_requested:
                self.intake.reload_requested = False
                self.notifier.reloading()
                try:
                    new = self.intake.reload(self._reload)
                    if new is not None:
                        self._apply_settings(new)
                    await self.intake.scan_and_queue()
                finally:
                    self.notifier.ready(self.notifier.last_status or None)  # after RELOADING=1, always
            else:
                await self.intake.scan_and_queue()
            self._check_idle()

    def _apply_settings(self, new: Settings) -> None:
        self.slots.apply(self.monitor.reconfigure(PolicyConfig.from_settings(new.gpu, new.scheduler.max_parallel),
                                                  poll_seconds=new.gpu.poll_seconds,
                                                  snapshot_seconds=new.gpu.snapshot_seconds))

    # --- queue and dispatch -------------------------------------------------

    def _enqueue(self, job: Job) -> bool:
        if job.id in self.running:
            return False
        return self.queue.add(job)

    def _check_idle(self) -> None:
        if not self.queue.outstanding and not self.running:
            self._idle.set()

    async def _dispatch(self) -> None:
        while True:
            item = await self.queue.take()
            try:
                gpu = await self.slots.acquire()
            except asyncio.CancelledError:
                self.queue.put_back(item)
                raise
            item = self.queue.oldest(item)  # something older may have arrived while we waited for the slot
            started = False
            try:
                started = await self._start(item, gpu)
            except asyncio.CancelledError:
                if item.job_id not in self.running:
                    self.queue.put_back(item)
                raise
            finally:
                if not started:
                    self.slots.release(gpu)

    async def _start(self, item: QueueItem, gpu: GpuId) -> bool:
        job_id, video = item.job_id, Path(item.video)
        if self._stop.is_set():
            return False  # stopped while waiting for a slot: start nothing new
        try:
            key = result_key(self.settings.videos_dir, video)
            out_dir = job_output_dir(self.settings.output_dir, key)
            job = await self._store_call("claim", self.store.claim, job_id, now=self.clock.time(), result_key=key)
        except ResultFolderTaken as exc:
            log.error("result_folder_conflict", job_id=job_id, video=str(video), other_job_id=exc.other.id,
                      other_video=str(exc.other.path), folder=exc.key)
            await self._finish_without_run(job_id, None, video, f"{video}: {exc}")
            return False
        except ValueError as exc:
            await self._finish_without_run(job_id, None, video, str(exc))
            return False
        if job is None:  # done, gone or running meanwhile (another scan, another host)
            self.queue.forget(job_id)
            self._check_idle()
            return False
        if self._stop.is_set():  # stopped while the claim was on its way: give it back, uncharged
            await self._store_call("requeue_interrupted", self.store.requeue_interrupted, job_id,
                                   token=job.claim_token)
            return False
        if job.result_key is not None and job.result_key != key:  # a folder recorded by an older version
            key = job.result_key
            out_dir = job_output_dir(self.settings.output_dir, key)
        if not job.path.is_file():
            await self._finish_without_run(job.id, job.claim_token, job.path, f"{job.path}: the video is gone",
                                           job.camera)
            return False
        staging = job_output_dir(self.settings.output_dir, staging_key(key, job.claim_token))
        try:
            results = self._results_folder()
            stale = results.clear_stale(key, job.claim_token)
            if stale:
                log.info("stale_attempts_removed", folder=str(out_dir), removed=stale)
            results.make(staging_key(key, job.claim_token))
        except UnsafeOutput as exc:
            await self._finish_without_run(job.id, job.claim_token, job.path,
                                           f"{job.path}: refusing to write results: {exc.strerror}", job.camera)
            return False
        except OSError as exc:  # a full or read-only results disk: the worker reports it as transient
            log.warning("result_folder_not_created", folder=str(staging), error=exc.strerror or str(exc))
        self.queue.forget(job_id)
        w = self.settings.worker
        spec = LaunchSpec(worker_argv(self.settings, job, staging), worker_env(job, gpu, self._base_env),
                          w.timeout_seconds, w.stop_grace_seconds, w.done_grace_seconds)
        run = self.launcher.launch(spec, on_event=lambda event: self._on_worker_event(job_id, event),
                                   on_line=lambda line: log.debug("worker_output", line=line[:1000]))
        rj = RunningJob(job, gpu, run, job.started_at or self.clock.time(), out_dir, key, staging)
        self.running[job_id] = rj
        self.observers.job_started(rj.view())
        task = asyncio.create_task(self._execute(rj), name=f"job-{job_id}")
        self._job_tasks.add(task)
        task.add_done_callback(self._job_task_done)
        return True

    async def _finish_without_run(self, job_id: int, token: int | None, video: Path, reason: str,
                                  camera: str | None = None) -> None:
        """Dead without a worker: nothing any attempt could change (a folder taken, a video gone). `token`: the
        claim taken for it, or None when none was."""
        await self._store_call("mark_failed", self.store.mark_failed, job_id, token=token, now=self.clock.time(),
                               error=reason, exit_code=None, retry_at=None)
        if camera is None:
            camera = (await self._store_call("get", self.store.get, job_id)).camera
        self.stats.record_dead(camera)
        log.error("job_dead", job_id=job_id, camera=camera, video=str(video), error=reason)
        self.queue.forget(job_id)
        self._check_idle()


    def _results_folder(self) -> ResultRoot:
        root = real_root(self.settings.output_dir)
        if self._results is None or self._results.path != root:
            if self._results is not None:
                self._results.close()
            self._results = ResultRoot(root)
        return self._results

    def _on_worker_event(self, job_id: int, event: dict[str, Any]) -> None:
        rj = self.running.get(job_id)
        if rj is not None and event["event"] == EVENT_PROGRESS:
            rj.progress = {k: v for k, v in event.items() if k != "event"}
            rj.progress["at"] = self.clock.time()
        elif event["event"] == EVENT_WARNING:  # the job goes on: a doubt about its input, for the journal
            log.warning("worker_warning", job_id=job_id, message=str(event.get("message", ""))[:500])

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
            if outcome.kind is OutcomeKind.BAD_CONFIG:  # before the slot is free: no other job may start
                self.halt(f"worker exit 78 on {job.path}: {outcome.message or outcome.kind}")
        finally:
            self.slots.release(rj.gpu)  # first: nothing below may keep a slot from the next job
            if outcome is None:  # cancelled: the supervisor is going away; the next start recovers the row
                del self.running[job.id]
                with contextlib.suppress(Exception):
                    await self.store.requeue_interrupted(job.id, token=rj.token)
                self._check_idle()
        try:
            # The job stays ours (in `running`) until its outcome is in the store, however long that takes.
            state, retry_at = await self._record(rj, outcome)
        finally:
            self.running.pop(job.id, None)
        if retry_at is not None and not self._stop.is_set():
            # It waits for its retry: the store holds the time, the queue a timer for it.
            self._enqueue(replace(job, state=JobState.FAILED, not_before=retry_at))
        self._check_idle()
        self.observers.job_finished(rj.view(), outcome, state)

    async def _record(self, rj: RunningJob, outcome: Outcome) -> tuple[JobState, float | None]:
        """Store what the attempt came to (one write, fenced by its claim); the job's new state, and when it is
        retried. A done attempt's results are published first, while its claim is held."""
        rj.recording = True
        job = rj.job
        now = self.clock.time()
        seconds = round(outcome.duration, 3)
        if rj.lease_lost:
            self._discard(rj)
            log.error("attempt_void", outcome=str(outcome.kind), duration_seconds=seconds,
                      reason="its claim was taken over by another scheduler: nothing of this attempt is recorded")
            return JobState.RUNNING, None
        d: Decision = decide(outcome, job, self.settings.worker, str(rj.output_dir))
        if d.verdict is Verdict.DONE and outcome.hung_after_done and finished_result(rj.staging, job,
                                                                                     rj.token) is None:
            outcome = replace(outcome, kind=OutcomeKind.FAILED, message=outcome.message + "; and its result set "
                              "is not complete (no valid summary.json)")
            d = decide(outcome, job, self.settings.worker, str(rj.output_dir))
        if d.verdict is Verdict.DONE:
            published = await self._publish(rj, d.output)
            if published is None:
                return JobState.RUNNING, None
            if isinstance(published, str):  # the results could not be put in place: an attempt that failed
                outcome = replace(outcome, kind=OutcomeKind.TRANSIENT, exit_code=None, message=published)
                d = decide(outcome, job, self.settings.worker, str(rj.output_dir))
        if d.verdict is Verdict.DONE:
            output = _published(d.output, rj.staging, rj.output_dir)
            hours = await self._hours(rj.output_dir) or []
            if not await self._mark_done(job.id, rj.token, now, outcome, d, output, hours):
                return self._lost(rj, "mark_done")
            self.observers.people_counted(job.camera, hours)
            self.stats.record_done(job.camera, outcome.duration)
            log.info("job_succeeded", duration_seconds=seconds, output=output, video_seconds=d.video_seconds,
                     covered_seconds=d.covered_seconds, damaged_seconds=d.damaged_seconds)
            if outcome.hung_after_done:
                log.warning("worker_hung_after_done", message=outcome.message,
                            action="its result set is complete: recorded done, not retried")
            said = outcome.done or DoneEvent()
            if said.engine_fallback:
                self._say_once("engine_fallback", said.engine_fallback, engine=said.engine)
            if d.damaged_seconds > 0:
                log.warning("video_damaged", damaged_seconds=d.damaged_seconds, spans=said.damaged_spans,
                            output=output,
                            message=f"done, {d.damaged_seconds:.1f} s damaged: see damage in summary.json")
            return JobState.DONE, None
        self._discard(rj)
        if d.verdict is Verdict.REQUEUE:
            if not await self._store_call("requeue_interrupted", self.store.requeue_interrupted, job.id,
                                          token=rj.token):
                return self._lost(rj, "requeue_interrupted")
            self.queue.hold(job.id)  # not finished: an interrupted once run says so in its exit code
            self.stats.interrupted += 1
            log.info("job_interrupted", duration_seconds=seconds)
            return JobState.QUEUED, None
        error = outcome.message or str(outcome.kind)
        if d.verdict is Verdict.HALT:
            # Not the video's fault: the job goes back to the queue, uncharged, and the run halts.
            if not await self._store_call("requeue_interrupted", self.store.requeue_interrupted, job.id,
                                          token=rj.token):
                return self._lost(rj, "requeue_interrupted")
            # The cause is run_halted's, said once there; this line says only what became of the job.
            log.error("job_not_run", reason="the worker found the configuration unusable (exit 78): see run_halted",
                      action="queued again, no attempt charged")
            return JobState.QUEUED, None
        retry = d.verdict is Verdict.RETRY
        retry_at = now + d.retry_in if d.retry_in is not None else None
        if not await self._store_call("mark_failed", self.store.mark_failed, job.id, token=rj.token, now=now,
                                      error=error, exit_code=outcome.exit_code, retry_at=retry_at):
            return self._lost(rj, "mark_failed")
        self.stats.record_failed_attempt(job.camera, outcome.duration, retry)
        if retry_at is not None:
            log.error("job_failed", outcome=str(outcome.kind), exit_code=outcome.exit_code, error=error,
                      duration_seconds=seconds, retry_in_seconds=round(d.retry_in or 0.0, 3),
                      stderr_tail=outcome.stderr_tail)
            return JobState.FAILED, retry_at
        self.stats.record_dead(job.camera)
        log.error("job_dead", outcome=str(outcome.kind), exit_code=outcome.exit_code, error=error,
                  attempts=job.attempts, duration_seconds=seconds, stderr_tail=outcome.stderr_tail)
        return JobState.DEAD, None

    async def _mark_done(self, job_id: int, token: int, now: float, outcome: Outcome, d: Decision,
                         output: str | None, hours: list[HourRow]) -> bool:
        """Record a done attempt, however its end became known (its done event, or its result set found after
        a crash); False when its claim is no longer held."""
        return await self._store_call("mark_done", self.store.mark_done, job_id, token=token, now=now,
                                      duration=outcome.duration, output=output, video_seconds=d.video_seconds,
                                      covered_seconds=d.covered_seconds, damaged_seconds=d.damaged_seconds,
                                      hours=hours)

    async def _publish(self, rj: RunningJob, output: str | None) -> bool | str | None:
        """Put a done attempt's results in place, only while its claim is held (checked, and extended, just
        before the rename: nobody can take the job over within the lease that follows). True: published (or
        the worker wrote elsewhere, `output`); None: the claim was lost, nothing published; a text: why the
        results could not be put in place."""
        held = await self._store_call("renew", self.store.renew, {rj.job.id: rj.token})
        if rj.job.id not in held:
            self._lost(rj, "publish")
            return None
        try:
            published = self._results_folder().publish(rj.key, rj.token)
        except OSError as exc:
            self._discard(rj)
            return f"cannot put the results in place at {rj.output_dir}: {exc.strerror or exc}"
        if not published and output is not None and Path(output).is_relative_to(rj.staging):
            return f"its done event names results in {rj.staging}, which is gone or empty"
        return True

    def _discard(self, rj: RunningJob) -> None:
        """Remove what an attempt that will not be published wrote."""
        try:
            self._results_folder().discard(rj.key, rj.token)
        except (OSError, ValueError) as exc:  # left for the next claim of the job to clear
            log.warning("attempt_files_not_removed", folder=str(rj.staging), error=str(exc))

    def _lost(self, rj: RunningJob, operation: str) -> tuple[JobState, float | None]:
        """The store did not take an attempt's outcome: its claim is no longer this scheduler's."""
        self._discard(rj)
        log.error("lease_lost", operation=operation, token=rj.token,
                  reason="the job was taken over by another scheduler (this one paused or cut off past its "
                         "lease): nothing of this attempt is recorded")
        return JobState.RUNNING, None

    # --- reporting ----------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Jobs this run still has to finish: queued, waiting to retry, or running."""
        return len(self.queue.outstanding | set(self.running))

    def queue_status(self) -> dict[str, Any]:
        return {"queued": self.queue.queued, "waiting_retry": self.queue.waiting_retry,
                "running": len(self.running), "limit": self.slots.total_limit}

    async def snapshot(self) -> Snapshot:
        """A frozen look for observers; the store's figures read once for all of them, off the loop."""
        try:
            self.job_counts = await self.store.counts()
            self._pending_bytes = await self.store.pending_bytes_by_camera()
            if self.clock.monotonic() - self._history_at >= HISTORY_REFRESH_SECONDS:
                self._history = await self.store.done_work_by_camera()
                self._history_at = self.clock.monotonic()
        except StoreUnavailable as exc:  # reads go on with the last figures; writes report the trouble
            log.debug("counts_unavailable", error=str(exc))
        return Snapshot(
            at=self.clock.time(), daemon=self.daemon, started_at=self.started_at,
            running=tuple(rj.view() for rj in sorted(self.running.values(), key=lambda r: r.started_at)),
            queued=self.queue.queued, waiting_retry=self.queue.waiting_retry, limit=self.slots.total_limit,
            limits={g: self.slots.limit(g) for g in self.slots.gpus}, monitored=self.monitor.monitored,
            gpus=tuple(self.monitor.snapshot()), outstanding=self.outstanding, completed=self.stats.completed,
            dead=self.stats.dead, job_counts=dict(self.job_counts), pending_bytes=dict(self._pending_bytes),
            history=self._history, scans=self.intake.scans, last_scan_at=self.intake.last_scan_at,
            reloads=self.intake.reloads, store_trouble=self.store_trouble,
        )

    async def tick_observers(self) -> None:
        self.observers.tick(await self.snapshot())

    def healthy(self) -> bool:
        """Whether systemd's watchdog may be fed: no task has crashed, every supervised task still runs, and
        no scan has been stuck longer than scan_stuck_seconds."""
        if self._crash is not None or any(t.done() for t in self._supervised):
            return False
        began = self.intake.scan_started
        if began is not None and self.clock.monotonic() - began > self._scan_stuck_seconds:
            if not self.intake.stuck_logged:
                self.intake.stuck_logged = True
                log.critical("scan_stuck", videos_dir=str(self.settings.videos_dir),
                             seconds=round(self.clock.monotonic() - began, 1),
                             action="not feeding the watchdog: systemd restarts the daemon (a hung network "
                                    "share? check the mount)")
            return False
        return True

    def _beat_interval(self) -> float:
        interval = min(HEARTBEAT_SECONDS, self.settings.scheduler.lease_seconds / 4)  # renewals well within
        if self.notifier.watchdog_seconds:
            interval = min(interval, self.notifier.watchdog_seconds / 2)
        return interval

    async def _heartbeat(self) -> None:
        """Watchdog pings from the event loop itself, so a hung loop gets restarted; the store's identity is
        checked (a store deleted or replaced under us stops the run, loudly) and kept whole; observers tick."""
        while True:
            await self.clock.sleep(self._beat_interval())
            await self.store.check(idle=not self.running and not self.queue.outstanding)
            if self.notifier.watchdog_seconds and self.healthy():
                self.notifier.watchdog()
            if self.orphans is not None:
                self.orphans.sweep({rj.job.id for rj in self.running.values()})
            await self.tick_observers()

    async def _leases(self) -> None:
        """Renew this scheduler's claims, in a task of its own that does nothing else (a slow scan, store
        check or takeover never delays it); stop at once the worker of a claim found lost."""
        while True:
            await self.clock.sleep(self._beat_interval())
            await self._renew_claims()

    async def _takeovers(self) -> None:
        """A shared store: say what this scheduler runs, and take over the jobs of one that stopped renewing
        its claims."""
        while True:
            await self.clock.sleep(self._beat_interval())
            await self._share_state()

    async def _renew_claims(self) -> None:
        claims = {rj.job.id: rj.token for rj in self.running.values() if not rj.lease_lost}
        try:
            held = await self.store.renew(claims) if claims else set()
        except StoreUnavailable as exc:
            if not self._beat_failing and self.running:  # once an outage: our claims may run out meanwhile
                log.warning("claims_not_renewed", error=str(exc), running=len(self.running),
                            lease_seconds=self.settings.scheduler.lease_seconds,
                            action="running jobs go on; if this lasts past the lease, another host may take them")
            self._beat_failing = True
            return
        if self._beat_failing:
            self._beat_failing = False
            log.info("claims_renewed")
        for job_id in claims.keys() - held:
            rj = self.running.get(job_id)
            if rj is None or rj.recording or rj.lease_lost or rj.token != claims[job_id]:
                continue  # finished meanwhile: its own write is fenced
            rj.lease_lost = True
            rj.run.kill_now()
            log.error("lease_lost", job_id=job_id, camera=rj.job.camera, video=str(rj.job.path), token=rj.token,
                      action="its worker was killed at once; the scheduler that took the job over runs it, and "
                             "nothing of this attempt is recorded")

    async def _share_state(self) -> None:
        """Say what this scheduler runs, and take over the jobs of one that stopped renewing its claims. A store
        that does not answer now is asked next time."""
        try:
            await self.store.publish_status({
                "running": [{"job_id": rj.job.id, "camera": rj.job.camera, "video": str(rj.job.path),
                             "gpu": rj.gpu, "started_at": rj.started_at} for rj in self.running.values()],
                "limit": self.slots.total_limit, "gpus": self.monitor.snapshot(), "queue": self.queue_status()})
            reclaimed = await self.store.reclaim_expired()
        except StoreUnavailable:
            return  # said once by the renewals; asked again next time
        await self._settle_recovered(reclaimed, enqueue=not self._stop.is_set())

    async def _report_queue(self) -> None:
        while True:
            await self.clock.sleep(self.settings.gpu.snapshot_seconds)
            log.info("queue_status", **self.queue_status())

    # --- the back door ------------------------------------------------------

    async def _shutdown(self) -> None:
        stopping = self._stop.is_set()
        if stopping:
            self.notifier.stopping()
            log.info("shutdown_requested", running=len(self.running), queued=self.queue.queued,
                     drain_seconds=self.settings.scheduler.drain_seconds)
        self.queue.cancel_timers()
        tasks = list(self._job_tasks)
        if tasks and not self._stop_now.is_set():
            # Let running jobs finish for drain_seconds, unless a second stop request cuts it short.
            drained = asyncio.ensure_future(asyncio.wait(tasks))
            hurry = asyncio.ensure_future(self._stop_now.wait())
            deadline = asyncio.ensure_future(self.clock.sleep(self.settings.scheduler.drain_seconds))
            await asyncio.wait({drained, hurry, deadline}, return_when=asyncio.FIRST_COMPLETED)
            for helper in (drained, hurry, deadline):
                helper.cancel()
        pending = {t for t in tasks if not t.done()}
        if pending:
            for rj in list(self.running.values()):
                rj.run.request_stop()
            waited = asyncio.ensure_future(asyncio.wait(pending))
            grace = asyncio.ensure_future(self.clock.sleep(self.settings.worker.stop_grace_seconds
                                                           + RECORD_GRACE_SECONDS))
            await asyncio.wait({waited, grace}, return_when=asyncio.FIRST_COMPLETED)
            for helper in (waited, grace):
                helper.cancel()
            stuck = {t for t in pending if not t.done()}
            for task in stuck:  # waiting on a store that does not answer: the next start recovers them
                task.cancel()
            if stuck:
                log.error("jobs_not_recorded", count=len(stuck), store_error=self.store_trouble,
                          action="left running in the store; the next start takes them up again")
                _, deaf = await asyncio.wait(stuck, timeout=RECORD_GRACE_SECONDS)
                if deaf:  # not even cancelling ends them: exit all the same, never hang here
                    log.critical("jobs_not_stopped", count=len(deaf), action="exiting without them")
        if self.orphans is not None:
            self.orphans.sweep(set(self.running))  # the jobs are over (but for any stuck on the store)
        await self._log_summary()
        await self.observers.stop()
        if stopping:
            log.info("shutdown_complete", drained=len(tasks) - len(pending), stopped=len(pending))

    async def _log_summary(self) -> None:
        for camera, c in sorted(self.stats.cameras.items()):
            log.info("camera_summary", camera=camera, **c.as_dict())
        try:
            counts: dict[str, int] | str = await self.store.counts()
        except Exception as exc:  # the summary goes out whatever the store's state
            counts = f"unavailable: {exc}"
        log.info("run_summary", **self.stats.totals(), store=counts)
        for (event, reason), n in self._said.items():
            if n > 1:
                log.warning(f"{event}_repeated", reason=reason, count=n,
                            message=f"said once above; it held for {n} jobs of this run")
