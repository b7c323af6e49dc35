"""Admission by GPU memory, aware of jobs still growing into it.

A job's GPU memory grows for seconds after it starts (the model loads, the first batch runs), so
"enough free now" over-admits while others ramp up. This owns, per GPU:

- what each running job has been seen to use (NVML's memory of its process, each poll), and its peak;
- the expected peak of a job of this model and engine: the 90th percentile of the last jobs'
  peaks, `gpu.job_memory_mb` before any was measured;
- a cap on the GPU's parallel limit for `gpu.oom_cooldown_seconds` after a job on it ran out of
  memory (exit 75 saying so): one job fewer than ran then, so its retry does not hit the same wall.

A job is admitted on a GPU only when its free memory, less what the jobs still ramping up there
(started less than `gpu.memory_ramp_seconds` ago) have yet to take of their expected peak, covers
the new job's expected peak plus the reserve (`gpu.min_free_memory_mb`). A GPU whose free memory
is not known is not judged here, and one that runs none of our jobs always takes one (the policy's
free-memory floor still applies): memory that others hold is never waited on forever.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from supervisor.config import Settings
from supervisor.gpu.monitor import SlotTarget
from supervisor.gpu.probe import GpuId

log = structlog.get_logger("supervisor.gpu")

PEAKS_KEPT = 50
PERCENTILE = 0.9


@dataclass(frozen=True, slots=True)
class Running:
    """A job under way as admission sees it: where it runs, since when (wall clock), and its process."""

    job_id: int
    gpu: GpuId
    started_at: float
    pid: int | None


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class MemoryAdmission:
    def __init__(self, settings: Callable[[], Settings], running: Callable[[], Iterable[Running]],
                 clock: Callable[[], float]) -> None:
        self._settings = settings
        self._running = running
        self._clock = clock
        self._free: dict[GpuId, float | None] = {}
        self._used: dict[int, float] = {}  # job id -> the most its process was seen to use
        self._peaks: dict[str, deque[float]] = {}
        self._caps: dict[GpuId, tuple[int, float]] = {}  # gpu -> (limit, until)
        self.refused: dict[GpuId, str] = {}  # why the last admission on each GPU said no

    @property
    def profile(self) -> str:
        w = self._settings().worker
        return f"{w.model}|{w.engine}"

    def expected_mb(self) -> float:
        peaks = self._peaks.get(self.profile)
        if peaks:
            return percentile(peaks, PERCENTILE)
        return float(self._settings().gpu.job_memory_mb)

    def observe(self, targets: Iterable[SlotTarget]) -> None:
        """Each poll: free memory per GPU, and what each running job's process uses."""
        by_pid = {r.pid: r.job_id for r in self._running() if r.pid is not None}
        for t in targets:
            self._free[t.gpu] = t.memory_free_mb
            for pid, mb in t.process_memory_mb:
                job = by_pid.get(pid)
                if job is not None:
                    self._used[job] = max(self._used.get(job, 0.0), mb)

    def admits(self, gpu: GpuId) -> bool:
        free = self._free.get(gpu)
        if gpu is None or free is None:
            return True
        s = self._settings().gpu
        now = self._clock()
        expected = self.expected_mb()
        here = [r for r in self._running() if r.gpu == gpu]
        if not here:
            return True  # never wait forever on memory that none of ours holds: the floor still applies
        ramping = [r for r in here if now - r.started_at < s.memory_ramp_seconds]
        still = sum(max(0.0, expected - self._used.get(r.job_id, 0.0)) for r in ramping)
        need = expected + s.min_free_memory_mb
        if free - still >= need:
            self.refused.pop(gpu, None)
            return True
        why = (f"{free:.0f} MB free, {still:.0f} MB of it still to be taken by {len(ramping)} job(s) starting up; "
               f"a job takes about {expected:.0f} MB, plus {s.min_free_memory_mb} MB kept free")
        if self.refused.get(gpu) is None:
            log.info("gpu_memory_admission_waiting", gpu=gpu, reason=why)
        self.refused[gpu] = why
        return False

    def cap(self, gpu: GpuId) -> int | None:
        """The GPU's limit after an out-of-memory exit, while it lasts."""
        held = self._caps.get(gpu)
        if held is None:
            return None
        limit, until = held
        if self._clock() >= until:
            del self._caps[gpu]
            log.info("gpu_memory_cap_lifted", gpu=gpu)
            return None
        return limit

    def capped(self, targets: Iterable[SlotTarget]) -> list[SlotTarget]:
        """The monitor's targets with each GPU's out-of-memory cap applied."""
        out = []
        for t in targets:
            cap = self.cap(t.gpu)
            if cap is not None and t.limit > cap:
                t = SlotTarget(t.gpu, cap, t.accepting, t.temperature, f"{t.reason}; capped at {cap} after running "
                               "out of GPU memory", t.memory_free_mb, t.process_memory_mb, t.health)
            out.append(t)
        return out

    def finished(self, job_id: int, gpu: GpuId, *, out_of_memory: bool, running_on_gpu: int) -> int | None:
        """A job ended: its peak joins the profile's; an out-of-memory end caps its GPU. The new cap, if any."""
        used = self._used.pop(job_id, 0.0)
        if used > 0 and not out_of_memory:
            self._peaks.setdefault(self.profile, deque(maxlen=PEAKS_KEPT)).append(used)
        if not out_of_memory or gpu is None:
            return None
        limit = max(1, running_on_gpu - 1)
        seconds = self._settings().gpu.oom_cooldown_seconds
        self._caps[gpu] = (limit, self._clock() + seconds)
        log.warning("gpu_memory_capped", gpu=gpu, limit=limit, seconds=seconds,
                    reason=f"a job ran out of GPU memory with {running_on_gpu} running: {limit} at most for "
                           f"{seconds:g} s")
        return limit

    def figures(self, gpu: GpuId) -> dict[str, object]:
        """For one GPU's snapshot: the expected peak, where it came from, and the cap and refusal in force."""
        peaks = self._peaks.get(self.profile)
        cap = self._caps.get(gpu)
        return {"expected_job_mb": round(self.expected_mb()),
                "expected_from": f"p90 of {len(peaks)} jobs" if peaks else "gpu.job_memory_mb",
                "memory_cap": cap[0] if cap is not None else None, "memory_waiting": self.refused.get(gpu)}


def out_of_memory(exit_code: int | None, message: str, stderr_tail: str) -> bool:
    """Exit 75 because the GPU ran out of memory (not a full disk, the other cause of 75)."""
    return exit_code == 75 and "out of memory" in f"{message}\n{stderr_tail}".lower()
