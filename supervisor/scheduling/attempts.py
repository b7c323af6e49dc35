"""The job runner: takes ready jobs oldest first, gives each a slot and a worker, records what came of it.

It owns the attempts under way (`running`, one task each) and everything about one attempt until it
ends: its claim, its staging folder, its worker and the slot it holds. What its outcome comes to (the
decision, the publication of its results and the write that records it, fenced by its claim) is the
recorder's (recording.py), which it owns. The supervisor (supervisor.py) owns the run around it:
startup, the long-lived tasks, the stop and the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from supervisor.clock import Clock
from supervisor.config import Settings
from supervisor.jobs.contract import JobStoreEngine
from supervisor.jobs.model import Job, JobState, ResultFolderTaken
from supervisor.jobs.retrying import RetryingStore
from supervisor.observe.job_logs import JobLog, job_log_path
from supervisor.observe.observers import Observers
from supervisor.observe.stats import RunStats
from supervisor.process.command import worker_argv, worker_env
from supervisor.process.launcher import Launcher, LaunchSpec
from supervisor.process.runner import Outcome, OutcomeKind
from supervisor.protocol.events import EVENT_PROGRESS, EVENT_WARNING
from supervisor.protocol.hours import HourRow, hours_of
from supervisor.protocol.paths import ResultRoot, UnsafeOutput, staging_key
from supervisor.scheduling.gpu_memory import MemoryAdmission, Running, out_of_memory
from supervisor.scheduling.pausing import Worker
from supervisor.scheduling.queue import JobQueue, QueueItem
from supervisor.scheduling.recording import Recorder
from supervisor.scheduling.result_folders import job_output_dir, real_root, result_key
from supervisor.scheduling.running import RunningJob
from supervisor.scheduling.slots import GpuId, SlotPool

log = structlog.get_logger("supervisor")


class JobRunner:
    """Runs the attempts of one scheduler. Its narrow ties to the run: `settings()` (the settings in force),
    `stopping()` (no new attempt may start), `halt(reason)` (a worker found the configuration unusable),
    `check_idle()` (the run may have nothing left), `crashed(task, name)` (a job task died of a bug)."""

    def __init__(self, *, settings: Callable[[], Settings], store: JobStoreEngine, calls: RetryingStore,
                 queue: JobQueue, slots: SlotPool, clock: Clock, launcher: Launcher, observers: Observers,
                 stats: RunStats, base_env: dict[str, str], stopping: Callable[[], bool],
                 halt: Callable[[str], None], check_idle: Callable[[], None],
                 crashed: Callable[[asyncio.Task[Any], str], None], memory: MemoryAdmission | None = None,
                 excuse: Callable[[GpuId, Outcome], str | None] = lambda gpu, outcome: None) -> None:
        self._settings = settings
        self.store = store
        self.calls = calls
        self.queue = queue
        self.slots = slots
        self.clock = clock
        self.launcher = launcher
        self.observers = observers
        self.stats = stats
        self._base_env = base_env  # what workers inherit, copied once
        self._stopping = stopping
        self._halt = halt
        self._check_idle = check_idle
        self._crashed = crashed
        self.memory = memory  # admission by GPU memory: told each attempt's end
        self.running: dict[int, RunningJob] = {}
        self.tasks: set[asyncio.Task[None]] = set()  # one per attempt under way
        self.reading = 0  # result folders being read on threads (people by hour)
        self._results: ResultRoot | None = None  # the output folder, opened at the first job
        self.recorder = Recorder(settings=settings, store=store, calls=calls, queue=queue, clock=clock,
                                 observers=observers, stats=stats, results=self.results_folder,
                                 read_hours=self.read_hours, excuse=excuse)

    @property
    def settings(self) -> Settings:
        return self._settings()

    def close(self) -> None:
        if self._results is not None:
            self._results.close()
            self._results = None

    def admission_view(self) -> list[Running]:
        """The running jobs as admission by GPU memory sees them."""
        return [Running(rj.job.id, rj.gpu, rj.started_at, getattr(rj.run, "pid", None))
                for rj in self.running.values()]

    def pausing_view(self) -> list[Worker]:
        """The running jobs as pausing on a critical GPU sees them."""
        return [Worker(rj.job.id, rj.gpu, rj.started_at, rj.run) for rj in self.running.values()]

    def stop_all(self) -> None:
        """Stop every worker (a second stop request): SIGTERM, then SIGKILL after its grace."""
        for rj in self.running.values():
            rj.run.request_stop()

    async def read_hours(self, folder: Path) -> list[HourRow] | None:
        """A published result set's people by hour, for the store (none when its files do not say, as a
        worker of the user's own that writes no counts); None when the folder cannot be read now. Read off
        the loop."""
        self.reading += 1
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
            self.reading -= 1

    def enqueue(self, job: Job) -> bool:
        if job.id in self.running:
            return False
        return self.queue.add(job)

    async def dispatch(self) -> None:
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
        if self._stopping():
            return False  # stopped while waiting for a slot: start nothing new
        try:
            key = result_key(self.settings.videos_dir, video)
            out_dir = job_output_dir(self.settings.output_dir, key)
            job = await self.calls.call("claim", self.store.claim, job_id, now=self.clock.time(), result_key=key)
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
        if self._stopping():  # stopped while the claim was on its way: give it back, uncharged
            await self.calls.call("requeue_interrupted", self.store.requeue_interrupted, job_id,
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
            results = self.results_folder()
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
        output_log = JobLog(job_log_path(self.settings.log_dir, job_id), job_id) if self.settings.log_dir else None
        if output_log is not None:
            output_log.open(job.attempts, spec.argv)

        def on_line(stream: str, line: str) -> None:
            log.debug("worker_output", stream=stream, line=line[:1000])
            if output_log is not None:
                output_log.line(stream, line)

        run = self.launcher.launch(spec, on_event=lambda event: self._on_worker_event(job_id, event),
                                   on_line=on_line)
        rj = RunningJob(job, gpu, run, job.started_at or self.clock.time(), out_dir, key, staging,
                        output_log=output_log)
        self.running[job_id] = rj
        self.observers.job_started(rj.view())
        task = asyncio.create_task(self._execute(rj), name=f"job-{job_id}")
        self.tasks.add(task)
        task.add_done_callback(self._job_task_done)
        return True

    async def _finish_without_run(self, job_id: int, token: int | None, video: Path, reason: str,
                                  camera: str | None = None) -> None:
        """Dead without a worker: nothing any attempt could change (a folder taken, a video gone). `token`: the
        claim taken for it, or None when none was."""
        await self.calls.call("mark_failed", self.store.mark_failed, job_id, token=token, now=self.clock.time(),
                               error=reason, exit_code=None, retry_at=None)
        if camera is None:
            camera = (await self.calls.call("get", self.store.get, job_id)).camera
        self.stats.record_dead(camera)
        log.error("job_dead", job_id=job_id, camera=camera, video=str(video), error=reason)
        self.queue.forget(job_id)
        self._check_idle()

    def results_folder(self) -> ResultRoot:
        root = real_root(self.settings.output_dir)
        if self._results is None or self._results.path != root:
            if self._results is not None:
                self._results.close()
            self._results = ResultRoot(root)
        return self._results

    def _on_worker_event(self, job_id: int, event: dict[str, Any]) -> None:
        rj = self.running.get(job_id)
        if rj is not None and rj.output_log is not None:
            rj.output_log.event(event)
        if rj is not None and event["event"] == EVENT_PROGRESS:
            rj.progress = {k: v for k, v in event.items() if k != "event"}
            rj.progress["at"] = self.clock.time()
        elif event["event"] == EVENT_WARNING:  # the job goes on: a doubt about its input, for the journal
            log.warning("worker_warning", job_id=job_id, message=str(event.get("message", ""))[:500])

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
                self._halt(f"worker exit 78 on {job.path}: {outcome.message or outcome.kind}")
        finally:
            if self.memory is not None and outcome is not None:
                self._memory_after(rj, outcome)
            self.slots.release(rj.gpu)  # first: nothing below may keep a slot from the next job
            if rj.output_log is not None:
                rj.output_log.close("stopped by the supervisor" if outcome is None else
                                    f"{outcome.kind} (exit {outcome.exit_code}) {outcome.message}".rstrip())
            if outcome is None:  # cancelled: the supervisor is going away; the next start recovers the row
                del self.running[job.id]
                with contextlib.suppress(Exception):
                    await self.store.requeue_interrupted(job.id, token=rj.token)
                self._check_idle()
        try:
            # The job stays ours (in `running`) until its outcome is in the store, however long that takes.
            state, retry_at = await self.recorder.record(rj, outcome)
        finally:
            self.running.pop(job.id, None)
        if retry_at is not None and not self._stopping():
            # It waits for its retry: the store holds the time, the queue a timer for it.
            self.enqueue(replace(job, state=JobState.FAILED, not_before=retry_at))
        self._check_idle()
        self.observers.job_finished(rj.view(), outcome, state)

    def _memory_after(self, rj: RunningJob, outcome: Outcome) -> None:
        assert self.memory is not None
        oom = out_of_memory(outcome.exit_code, outcome.message, outcome.stderr_tail)
        cap = self.memory.finished(rj.job.id, rj.gpu, out_of_memory=oom, running_on_gpu=self.slots.held(rj.gpu))
        if cap is not None and self.slots.limit(rj.gpu) > cap:
            self.slots.set_limit(rj.gpu, cap)

    def _job_task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._crashed(task, task.get_name())
