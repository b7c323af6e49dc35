"""Recording what an attempt came to: the decision its outcome makes, the publication of a done attempt's
results while its claim is held, and the one write that records it, fenced by its claim.

The job runner (attempts.py) starts attempts and watches them; this decides and writes what each one
ended as. It stands on its own because a job's end is recorded the same way however it became known:
jobs taken over from a scheduler that is gone (takeover.py) are recorded done through `record_done`
too. It also keeps the causes said once per run, which the run's summary counts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from supervisor.clock import Clock
from supervisor.config import Settings
from supervisor.jobs.contract import JobStoreEngine
from supervisor.jobs.model import JobState
from supervisor.jobs.retrying import RetryingStore
from supervisor.observe.observers import Observers
from supervisor.observe.stats import RunStats
from supervisor.process.runner import Outcome, OutcomeKind
from supervisor.protocol.events import DoneEvent
from supervisor.protocol.hours import HourRow
from supervisor.protocol.paths import ResultRoot
from supervisor.scheduling.outcomes import Decision, Verdict, decide
from supervisor.scheduling.queue import JobQueue
from supervisor.scheduling.recovery import finished_result
from supervisor.scheduling.running import RunningJob
from supervisor.scheduling.slots import GpuId

log = structlog.get_logger("supervisor")


def published_path(output: str | None, staging: Path, final: Path) -> str | None:
    """A path the worker named inside its staging folder, as it reads once published."""
    if output is None:
        return output
    try:
        return str(final / Path(output).relative_to(staging))
    except ValueError:
        return output



class Recorder:
    """Records the outcomes of one scheduler's attempts. Its narrow ties to the job runner: `results()` (the
    output folder, opened once) and `read_hours(folder)` (a result set's people by hour, read off the loop);
    `excuse(gpu, outcome)` says why a failed attempt is not the job's (its GPU failed under it, the videos
    share stalled), or None."""

    def __init__(self, *, settings: Callable[[], Settings], store: JobStoreEngine, calls: RetryingStore,
                 queue: JobQueue, clock: Clock, observers: Observers, stats: RunStats,
                 results: Callable[[], ResultRoot], read_hours: Callable[[Path], Awaitable[list[HourRow] | None]],
                 excuse: Callable[[GpuId, Outcome], str | None]) -> None:
        self._settings = settings
        self.store = store
        self.calls = calls
        self.queue = queue
        self.clock = clock
        self.observers = observers
        self.stats = stats
        self._results_folder = results
        self._read_hours = read_hours
        self._excuse = excuse
        self.said: dict[tuple[str, str], int] = {}  # causes said once per run, with how often they held

    def _say_once(self, event: str, reason: str, **fields: Any) -> None:
        """A cause that holds for every job alike (a model without its CPU export) is said once per run;
        the run's summary says how many jobs it held for."""
        n = self.said[(event, reason)] = self.said.get((event, reason), 0) + 1
        if n == 1:
            log.warning(event, reason=reason, **fields)

    async def record(self, rj: RunningJob, outcome: Outcome) -> tuple[JobState, float | None]:
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
        d: Decision = decide(outcome, job, self._settings().worker, str(rj.output_dir))
        if d.verdict is Verdict.DONE and outcome.hung_after_done and finished_result(rj.staging, job,
                                                                                     rj.token) is None:
            outcome = replace(outcome, kind=OutcomeKind.FAILED, message=outcome.message + "; and its result set "
                              "is not complete (no valid summary.json)")
            d = decide(outcome, job, self._settings().worker, str(rj.output_dir))
        if d.verdict is Verdict.DONE:
            published = await self._publish(rj, d.output)
            if published is None:
                return JobState.RUNNING, None
            if isinstance(published, str):  # the results could not be put in place: an attempt that failed
                outcome = replace(outcome, kind=OutcomeKind.TRANSIENT, exit_code=None, message=published)
                d = decide(outcome, job, self._settings().worker, str(rj.output_dir))
        if d.verdict is Verdict.DONE:
            output = published_path(d.output, rj.staging, rj.output_dir)
            hours = await self._read_hours(rj.output_dir) or []
            if not await self.record_done(job.id, rj.token, now, outcome, d, output, hours):
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
        excuse = self._excuse(rj.gpu, outcome) if d.verdict in (Verdict.RETRY, Verdict.DEAD) else None
        if excuse is not None:
            # Not the video's fault, and not an attempt: its GPU failed under it, or the share it reads stalled.
            if not await self.calls.call("requeue_interrupted", self.store.requeue_interrupted, job.id,
                                          token=rj.token):
                return self._lost(rj, "requeue_interrupted")
            log.warning("job_not_charged", outcome=str(outcome.kind), exit_code=outcome.exit_code, reason=excuse,
                        action="queued again, no attempt charged")
            return JobState.QUEUED, now
        if d.verdict is Verdict.REQUEUE:
            if not await self.calls.call("requeue_interrupted", self.store.requeue_interrupted, job.id,
                                          token=rj.token):
                return self._lost(rj, "requeue_interrupted")
            self.queue.hold(job.id)  # not finished: an interrupted once run says so in its exit code
            self.stats.interrupted += 1
            log.info("job_interrupted", duration_seconds=seconds)
            return JobState.QUEUED, None
        error = outcome.message or str(outcome.kind)
        if d.verdict is Verdict.HALT:
            # Not the video's fault: the job goes back to the queue, uncharged, and the run halts.
            if not await self.calls.call("requeue_interrupted", self.store.requeue_interrupted, job.id,
                                          token=rj.token):
                return self._lost(rj, "requeue_interrupted")
            # The cause is run_halted's, said once there; this line says only what became of the job.
            log.error("job_not_run", reason="the worker found the configuration unusable (exit 78): see run_halted",
                      action="queued again, no attempt charged")
            return JobState.QUEUED, None
        retry = d.verdict is Verdict.RETRY
        retry_at = now + d.retry_in if d.retry_in is not None else None
        if not await self.calls.call("mark_failed", self.store.mark_failed, job.id, token=rj.token, now=now,
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

    async def record_done(self, job_id: int, token: int, now: float, outcome: Outcome, d: Decision,
                         output: str | None, hours: list[HourRow]) -> bool:
        """Record a done attempt, however its end became known (its done event, or its result set found after
        a crash); False when its claim is no longer held."""
        return await self.calls.call("mark_done", self.store.mark_done, job_id, token=token, now=now,
                                      duration=outcome.duration, output=output, video_seconds=d.video_seconds,
                                      covered_seconds=d.covered_seconds, damaged_seconds=d.damaged_seconds,
                                      hours=hours)

    async def _publish(self, rj: RunningJob, output: str | None) -> bool | str | None:
        """Put a done attempt's results in place, only while its claim is held (checked, and extended, just
        before the rename: nobody can take the job over within the lease that follows). True: published (or
        the worker wrote elsewhere, `output`); None: the claim was lost, nothing published; a text: why the
        results could not be put in place."""
        held = await self.calls.call("renew", self.store.renew, {rj.job.id: rj.token})
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
