"""`video-supervisor report`: per camera, what was processed, how fast, and what failed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from supervisor.jobs.model import Job, JobState

COLUMNS = ("camera", "videos", "video_hours", "processing_hours", "speed", "failures", "retries",
           "damaged_videos", "damaged_seconds", "partial_videos", "mean_job_seconds", "p95_job_seconds")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))  # ceil(q/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(slots=True)
class _Acc:
    durations: list[float] = field(default_factory=list)
    video_seconds: float = 0.0
    failures: int = 0
    retries: int = 0
    damaged_videos: int = 0
    damaged_seconds: float = 0.0
    partial_videos: int = 0

    def row(self, camera: str) -> dict[str, Any]:
        processing = sum(self.durations)
        return {
            "camera": camera, "videos": len(self.durations), "video_hours": round(self.video_seconds / 3600, 3),
            "processing_hours": round(processing / 3600, 3),
            "speed": round(self.video_seconds / processing, 2) if processing and self.video_seconds else None,
            "failures": self.failures, "retries": self.retries, "damaged_videos": self.damaged_videos,
            "damaged_seconds": round(self.damaged_seconds, 1), "partial_videos": self.partial_videos,
            "mean_job_seconds": round(processing / len(self.durations), 1) if self.durations else None,
            "p95_job_seconds": round(percentile(self.durations, 95), 1) if self.durations else None,
        }


class Finished(NamedTuple):
    """What the report reads of one finished job (the store's `finished_figures`, in this order)."""

    camera: str
    state: str
    duration_seconds: float | None
    video_seconds: float | None
    attempts: int
    damaged_seconds: float | None
    covered_seconds: float | None

    @property
    def partial(self) -> bool:
        return bool(self.covered_seconds)


def build_report(jobs: Iterable[Job | Finished]) -> dict[str, Any]:
    per: dict[str, _Acc] = {}
    total = _Acc()
    for job in jobs:
        for acc in (per.setdefault(job.camera, _Acc()), total):
            if job.state == JobState.DONE:
                acc.durations.append(job.duration_seconds or 0.0)
                acc.video_seconds += job.video_seconds or 0.0
                acc.retries += max(0, job.attempts - 1)
                if job.damaged_seconds:
                    acc.damaged_videos += 1
                    acc.damaged_seconds += job.damaged_seconds
                acc.partial_videos += job.partial
            elif job.state == JobState.DEAD:
                acc.failures += 1
    return {"cameras": [per[c].row(c) for c in sorted(per)], "total": total.row("total")}


def render_table(report: dict[str, Any]) -> str:
    head = (f"{'camera':<14} {'videos':>6} {'video h':>8} {'proc h':>7} {'speed':>6} {'failed':>6} "
            f"{'retries':>7} {'damaged':>12} {'mean s':>7} {'p95 s':>7}")
    lines = [head, "-" * len(head)]

    def fmt(v: Any, width: int, spec: str) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:>{width}{spec}}"

    for row in [*report["cameras"], report["total"]]:
        if row is report["total"]:
            lines.append("-" * len(head))
        lines.append(f"{row['camera']:<14} {row['videos']:>6} {row['video_hours']:>8.2f} "
                     f"{row['processing_hours']:>7.2f} {fmt(row['speed'], 5, '.2f')}x {row['failures']:>6} "
                     f"{row['retries']:>7} {_damaged(row):>12} {fmt(row['mean_job_seconds'], 7, '.1f')} "
                     f"{fmt(row['p95_job_seconds'], 7, '.1f')}")
    lines.append("speed: seconds of video per second of processing; damaged: videos (seconds undecodable)")
    partial = report["total"]["partial_videos"]
    if partial:
        lines.append(f"{partial} video(s) done for their first seconds only (--duration); a full run redoes them")
    return "\n".join(lines)


def _damaged(row: dict[str, Any]) -> str:
    return f"{row['damaged_videos']} ({row['damaged_seconds']:.1f} s)" if row["damaged_videos"] else "0"


def render_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for row in [*report["cameras"], report["total"]]:
        writer.writerow(row)
    return out.getvalue()


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
