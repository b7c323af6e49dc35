"""What observers see of the scheduler: frozen copies, made once per tick, never the scheduler itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.jobs.model import Job


def _fraction(done: Any, total: Any) -> float | None:
    if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return max(0.0, min(100.0, 100.0 * done / total))
    return None


@dataclass(frozen=True, slots=True)
class RunningView:
    """One running job as observers see it."""

    job: Job
    gpu: int | None
    started_at: float
    output_dir: Path
    progress: Mapping[str, Any] = field(default_factory=dict)

    def percent(self) -> float | None:
        p = self.progress
        by_time = _fraction(p.get("position_seconds"), p.get("duration_seconds"))
        return by_time if by_time is not None else _fraction(p.get("frame"), p.get("frames"))


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float
    daemon: bool
    started_at: float
    running: tuple[RunningView, ...]
    queued: int
    waiting_retry: int
    limit: int
    limits: Mapping[int | None, int]  # per GPU (None: no GPU pinning)
    monitored: bool
    gpus: tuple[Mapping[str, Any], ...]
    outstanding: int
    completed: int
    dead: int
    job_counts: Mapping[str, int]
    pending_bytes: Mapping[str, float]
    history: Mapping[str, tuple[float, float, float]]  # per camera: done work, re-read now and then
    scans: int
    last_scan_at: float | None
    reloads: int
    store_trouble: str | None
    # Per GPU, its last hours a point a minute (supervisor/gpu/trends.py).
    gpu_trends: Mapping[int, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    # The videos share, the store's round trip (supervisor/scheduling/share.py).
    io: Mapping[str, Any] = field(default_factory=dict)

    def queue_status(self) -> dict[str, int]:
        return {"queued": self.queued, "waiting_retry": self.waiting_retry, "running": len(self.running),
                "limit": self.limit}

    def running_job(self, job_id: int) -> RunningView | None:
        return next((r for r in self.running if r.job.id == job_id), None)
