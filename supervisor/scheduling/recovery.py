"""Exactly once across a crash: a job found running after its scheduler died may have finished.

A worker writes summary.json last, naming the video it read (path, size, mtime), the job id and
the claim of its attempt. If that file is there, names this job's video as it is now, and was
written by the attempt in question (its claim; for a worker that does not say, written after the
attempt began), the result set is complete and the job is done: it is recorded so, never run again.
"""

from __future__ import annotations

import json
from pathlib import Path

from supervisor.jobs.model import Job
from supervisor.process.runner import Outcome, OutcomeKind
from supervisor.protocol import EX_OK
from supervisor.protocol.events import DoneEvent
from supervisor.protocol.results import SUMMARY, same_video, written_by

CLOCK_SLACK_SECONDS = 2.0  # the file's mtime and the store's start time come from different clocks


def finished_result(out_dir: Path, job: Job, claim: int) -> DoneEvent | None:
    """The worker's done event, as `out_dir/summary.json` records it, when it is the attempt of `claim`'s;
    else None."""
    summary_path = out_dir / SUMMARY
    try:
        written = summary_path.stat().st_mtime
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or not same_video(summary.get("video"), job.path, job.size, job.mtime, job.id):
        return None
    by_this = written_by(summary["video"], claim)
    if by_this is False:
        return None  # another attempt's results (an earlier run, before a reprocess): run it again
    if by_this is None and job.started_at is not None and written < job.started_at - CLOCK_SLACK_SECONDS:
        return None  # an earlier run's results (a reprocess that was cut short): run it again
    return DoneEvent.from_summary(summary, str(summary_path))


def recovered_outcome(done: DoneEvent, job: Job, now: float) -> Outcome:
    """The outcome of an attempt found finished after its scheduler died: a success like any other, decided
    and recorded the same way (its duration as the store saw it, from its claim to now or its end)."""
    started = job.started_at if job.started_at is not None else now
    return Outcome(OutcomeKind.SUCCEEDED, EX_OK, done=done, duration=max(0.0, (job.finished_at or now) - started))
