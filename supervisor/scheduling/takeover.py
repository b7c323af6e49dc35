"""Jobs this scheduler takes over from one that is gone (a crash, a lease that ran out), and people by hour
filled in for done jobs of an older store: both read result folders left by attempts this run did not see.

A taken-over job is done when the lost attempt had finished (its result set complete: recovery.py
says so, and the same decision as any other success records it), else queued again, the attempt
not counted. Every write is fenced by the claim this scheduler now holds.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import structlog

from supervisor.jobs.model import Job, JobState, Takeover
from supervisor.protocol.events import DoneEvent
from supervisor.protocol.paths import staging_key
from supervisor.scheduling.attempts import JobRunner
from supervisor.scheduling.outcomes import decide
from supervisor.scheduling.recording import published_path
from supervisor.scheduling.recovery import finished_result, recovered_outcome
from supervisor.scheduling.result_folders import job_output_dir

log = structlog.get_logger("supervisor")


class Takeovers:
    """Settles the jobs a scheduler inherits, through the job runner's store calls, result folders and recorder."""

    def __init__(self, runner: JobRunner) -> None:
        self._runner = runner

    async def fill_people(self) -> None:
        """Once, for a store kept before it held people by hour: each done job's rows, from its result files."""
        filled = later = 0
        after = 0
        while batch := await self._runner.calls.call("without_people", self._runner.store.without_people, after=after):
            for job in batch:
                after = job.id
                folder = job_output_dir(self._runner.settings.output_dir, job.result_key) if job.result_key else None
                hours = await self._runner.read_hours(folder) if folder is not None else []
                if hours is None:  # not readable now (a share not mounted yet): the next start tries again
                    later += 1
                    continue
                await self._runner.calls.call("record_people", self._runner.store.record_people, job.id, hours)
                filled += 1
        if filled:
            log.info("people_filled", jobs=filled, message="people by hour of done jobs read from their results")
        if later:
            log.warning("people_not_filled", jobs=later, action="their result folders cannot be read now; the "
                        "next start tries again")

    async def settle_recovered(self, takeovers: list[Takeover], *, enqueue: bool) -> None:
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
                        self._runner.results_folder().discard(key, lost)
                store = self._runner.store
                requeued = await self._runner.calls.call("requeue_interrupted", store.requeue_interrupted, job.id,
                                                         token=job.claim_token)
                log.warning("job_recovered", job_id=job.id, video=str(job.path), camera=job.camera,
                            action="its scheduler stopped while it ran: queued again, the attempt not counted"
                            if requeued else "taken by another scheduler meanwhile")
                if enqueue and requeued:
                    self._runner.enqueue(replace(job, state=JobState.QUEUED))
                continue
            outcome = recovered_outcome(result, job, self._runner.clock.time())
            d = decide(outcome, job, self._runner.settings.worker, result.output or "")
            hours = await self._runner.read_hours(Path(d.output or "").parent) or []
            now = self._runner.clock.time()
            if await self._runner.recorder.record_done(job.id, job.claim_token, now, outcome, d, d.output, hours):
                log.info("job_done_before_restart", job_id=job.id, video=str(job.path), output=d.output,
                         message="its worker had finished when its scheduler stopped: recorded done, not run again")

    def _lost_attempts_result(self, job: Job, key: str, lost: int) -> DoneEvent | None:
        """The done event of the attempt of claim `lost`, published if it was still staged; else None."""
        try:
            final = job_output_dir(self._runner.settings.output_dir, key)
            staged = job_output_dir(self._runner.settings.output_dir, staging_key(key, lost))
            result = finished_result(staged, job, lost)
            if result is not None and self._runner.results_folder().publish(key, lost):
                return replace(result, output=published_path(result.output, staged, final))
            return finished_result(final, job, lost)
        except (OSError, ValueError) as exc:
            log.warning("result_not_checked", job_id=job.id, folder=key, error=str(exc))
            return None
