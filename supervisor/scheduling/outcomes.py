"""What a worker's outcome does to its job: a pure decision, tested as a table, applied by the supervisor."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from supervisor.config import WorkerSettings
from supervisor.jobs.model import Job
from supervisor.process.runner import Outcome, OutcomeKind
from supervisor.protocol.events import DoneEvent


class Verdict(enum.StrEnum):
    DONE = "done"
    REQUEUE = "requeue"  # stopped by us: back to queued, the attempt not charged
    HALT = "halt"  # the configuration is unusable (exit 78): back to queued, uncharged, and the run stops
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    retry_in: float | None = None  # seconds, for RETRY
    output: str | None = None  # for DONE
    video_seconds: float | None = None
    covered_seconds: float | None = None  # set when only the first N seconds were processed
    damaged_seconds: float = 0.0


def should_retry(kind: OutcomeKind, attempts: int, max_attempts: int, max_transient_attempts: int) -> bool:
    """Whether a failed attempt is followed by another (else the job is dead). Every kind has a cap."""
    if kind in (OutcomeKind.SUCCEEDED, OutcomeKind.BAD_INPUT, OutcomeKind.BAD_CONFIG):
        return False
    if kind is OutcomeKind.INTERRUPTED:
        return True  # not an attempt of the job's: it is not charged one
    if kind is OutcomeKind.TRANSIENT:
        return attempts < max_transient_attempts
    return attempts < max_attempts


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff: base, 2*base, 4*base, ... never above cap."""
    if attempts <= 0:
        return 0.0
    return float(min(cap, base * (2 ** min(attempts - 1, 30))))


def decide(outcome: Outcome, job: Job, worker: WorkerSettings, default_output: str) -> Decision:
    """What `outcome` does to `job`. A success reads the worker's done event (none said: the result folder,
    `default_output`); an attempt found finished after a crash (recovery) comes here the same way."""
    if outcome.kind is OutcomeKind.SUCCEEDED:
        done = outcome.done or DoneEvent()
        return Decision(
            Verdict.DONE, output=done.output or default_output, video_seconds=done.video_seconds,
            covered_seconds=done.covered_seconds, damaged_seconds=done.damaged_seconds,
        )
    if outcome.kind is OutcomeKind.INTERRUPTED:
        return Decision(Verdict.REQUEUE)
    if outcome.kind is OutcomeKind.BAD_CONFIG:
        return Decision(Verdict.HALT)
    if should_retry(outcome.kind, job.attempts, worker.max_attempts, worker.max_transient_attempts):
        return Decision(Verdict.RETRY, retry_in=backoff_delay(job.attempts, worker.retry_backoff_seconds,
                                                              worker.retry_backoff_max_seconds))
    return Decision(Verdict.DEAD)
