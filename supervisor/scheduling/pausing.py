"""Pause when critical: a GPU above its critical band for a while runs no more than critical_parallel.

Lowering the limit stops new jobs, but the ones running keep heating the card. With
`gpu.pause_when_critical`, once a GPU has been critical (hot, or in a hardware slowdown) for
`gpu.critical_pause_seconds`, its running workers beyond `critical_parallel` are paused (SIGSTOP to
their process group), the newest first: they keep their memory and their place, and use no GPU time.
As it cools they are resumed oldest first, as many as the GPU's limit then allows. A paused job's
timeout does not run. A stop of the daemon resumes them first, so they can act on SIGTERM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from supervisor.config import Settings
from supervisor.gpu.monitor import SlotTarget
from supervisor.gpu.probe import GpuId

log = structlog.get_logger("supervisor.gpu")


class Pausable(Protocol):
    @property
    def paused(self) -> bool: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Worker:
    """A running job as pausing sees it."""

    job_id: int
    gpu: GpuId
    started_at: float
    handle: Pausable


class CriticalPause:
    """Owns which workers are paused and since when each GPU has been critical."""

    def __init__(self, settings: Callable[[], Settings], clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._critical_since: dict[GpuId, float] = {}
        self.paused: dict[int, GpuId] = {}  # job id -> its GPU

    def apply(self, targets: Iterable[SlotTarget], workers: Sequence[Worker]) -> None:
        s = self._settings().gpu
        now = self._clock()
        for t in targets:
            on_gpu = sorted((w for w in workers if w.gpu == t.gpu), key=lambda w: w.started_at)
            if t.health == "critical":
                since = self._critical_since.setdefault(t.gpu, now)
                if s.pause_when_critical and now - since >= s.critical_pause_seconds:
                    self._pause_beyond(t, on_gpu, s.critical_parallel)
                continue
            self._critical_since.pop(t.gpu, None)
            self._resume_within(t, on_gpu)

    def _pause_beyond(self, t: SlotTarget, on_gpu: list[Worker], keep: int) -> None:
        active = [w for w in on_gpu if not w.handle.paused]
        for w in reversed(active[keep:] if len(active) > keep else []):  # the newest first
            w.handle.pause()
            if not w.handle.paused:
                continue  # not started yet: the next poll tries again
            self.paused[w.job_id] = t.gpu
            log.warning("job_paused", job_id=w.job_id, gpu=t.gpu, reason=t.reason,
                        action=f"resumed when the GPU cools; {keep} keep running")

    def _resume_within(self, t: SlotTarget, on_gpu: list[Worker]) -> None:
        active = sum(1 for w in on_gpu if not w.handle.paused)
        for w in on_gpu:  # the oldest first, as many as the limit now allows
            if w.handle.paused and active < max(1, t.limit):
                w.handle.resume()
                self.paused.pop(w.job_id, None)
                active += 1
                log.info("job_resumed", job_id=w.job_id, gpu=t.gpu, reason=t.reason)

    def resume_all(self, workers: Iterable[Worker]) -> None:
        """Before a stop: a stopped process cannot act on SIGTERM."""
        for w in workers:
            if w.handle.paused:
                w.handle.resume()
                log.info("job_resumed", job_id=w.job_id, gpu=w.gpu, reason="the daemon is stopping")
        self.paused.clear()

    def forget(self, job_id: int) -> None:
        self.paused.pop(job_id, None)
