"""Run statistics: per camera, jobs completed, failed attempts, dead, processing time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class CameraStats:
    completed: int = 0
    failed_attempts: int = 0
    dead: int = 0
    processing_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        avg = self.processing_seconds / self.completed if self.completed else 0.0
        return {
            "completed": self.completed, "failed_attempts": self.failed_attempts, "dead": self.dead,
            "total_processing_seconds": round(self.processing_seconds, 3),
            "average_processing_seconds": round(avg, 3),
        }


@dataclass(slots=True)
class RunStats:
    cameras: dict[str, CameraStats] = field(default_factory=dict)
    retries: int = 0
    interrupted: int = 0

    def camera(self, camera: str) -> CameraStats:
        return self.cameras.setdefault(camera, CameraStats())

    def record_done(self, camera: str, seconds: float) -> None:
        c = self.camera(camera)
        c.completed += 1
        c.processing_seconds += seconds

    def record_failed_attempt(self, camera: str, seconds: float, retried: bool) -> None:
        c = self.camera(camera)
        c.failed_attempts += 1
        c.processing_seconds += seconds
        if retried:
            self.retries += 1

    def record_dead(self, camera: str) -> None:
        self.camera(camera).dead += 1

    @property
    def completed(self) -> int:
        return sum(c.completed for c in self.cameras.values())

    @property
    def dead(self) -> int:
        return sum(c.dead for c in self.cameras.values())

    @property
    def failed_attempts(self) -> int:
        return sum(c.failed_attempts for c in self.cameras.values())

    def totals(self) -> dict[str, Any]:
        total = CameraStats(
            completed=self.completed, failed_attempts=self.failed_attempts, dead=self.dead,
            processing_seconds=sum(c.processing_seconds for c in self.cameras.values()),
        ).as_dict()
        total["retries"] = self.retries
        total["interrupted"] = self.interrupted
        return total
