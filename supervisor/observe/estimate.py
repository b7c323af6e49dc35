"""How long the queue will take, from measured per-camera processing speed. Pure functions.

The speed of a camera is learnt from its finished jobs as processing seconds
per byte of video (recordings of one camera have a near-constant bitrate, so
this also stands for processing seconds per second of video). A camera
without history borrows the average of the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rates:
    per_camera: Mapping[str, float]  # processing seconds per byte
    overall: float | None

    @classmethod
    def learn(cls, done: Mapping[str, tuple[float, ...]]) -> Rates:
        """From {camera: (processing seconds, bytes, ...)} of finished jobs."""
        pairs = {cam: (v[0], v[1]) for cam, v in done.items() if v[0] > 0 and v[1] > 0}
        per_camera = {cam: secs / size for cam, (secs, size) in pairs.items()}
        total_secs = sum(secs for secs, _ in pairs.values())
        total_size = sum(size for _, size in pairs.values())
        return cls(per_camera, total_secs / total_size if total_size else None)

    def seconds_for(self, camera: str, size: float) -> float | None:
        rate = self.per_camera.get(camera, self.overall)
        return None if rate is None else rate * size


def running_remaining(frame: float | None, frames: float | None, fps: float | None,
                      expected_total: float | None, elapsed: float) -> float | None:
    """A running job's remaining seconds: from its progress when it reports some, else from the estimate."""
    if frame is not None and frames and fps and fps > 0 and frames >= frame:
        return (frames - frame) / fps
    if expected_total is not None:
        return max(0.0, expected_total - elapsed)
    return None


def queue_eta(pending_bytes: Mapping[str, float], rates: Rates, running: Iterable[float | None],
              limit: int) -> float | None:
    """Seconds until the queue is empty if `limit` jobs run at once; None when nothing is known yet."""
    work = 0.0
    for camera, size in pending_bytes.items():
        secs = rates.seconds_for(camera, size)
        if secs is None:
            return None
        work += secs
    remaining = [r for r in running]
    if any(r is None for r in remaining):
        return None
    busy = [r for r in remaining if r is not None]
    # The running jobs finish first, then the queued work spreads over the slots.
    return max(busy, default=0.0) if not work else (sum(busy) + work) / max(1, limit)


def format_duration(seconds: float) -> str:
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes = total // 60
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
