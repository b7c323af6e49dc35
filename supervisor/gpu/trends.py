"""The last hours of each GPU, in memory: for `status`, the page and the report (the seed's "GPU
utilization trends").

One point a minute per GPU (the mean of that minute's polls, the hottest temperature), the last
TREND_HOURS kept: 360 points a GPU, a few kilobytes. Nothing here is stored: a restart starts anew.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from supervisor.gpu.probe import GpuReading

TREND_HOURS = 6.0
POINT_SECONDS = 60.0


@dataclass(slots=True)
class _Minute:
    start: float
    polls: int = 0
    temperature: float | None = None  # the hottest of the minute
    utilization: float = 0.0
    memory_used_mb: float = 0.0
    power_w: float = 0.0
    limit: int = 0
    seen: tuple[bool, bool, bool] = (False, False, False)  # utilization, memory, power reported

    def add(self, reading: GpuReading, limit: int) -> None:
        self.polls += 1
        if reading.temperature is not None:
            self.temperature = max(self.temperature or reading.temperature, reading.temperature)
        u, m, p = self.seen
        if reading.utilization is not None:
            self.utilization += reading.utilization
            u = True
        if reading.memory_used_mb is not None:
            self.memory_used_mb += reading.memory_used_mb
            m = True
        if reading.power_w is not None:
            self.power_w += reading.power_w
            p = True
        self.seen = (u, m, p)
        self.limit = limit  # the limit at the end of the minute

    def point(self) -> dict[str, Any]:
        n = max(1, self.polls)
        u, m, p = self.seen
        return {"t": self.start, "temperature": self.temperature, "limit": self.limit,
                "utilization": round(self.utilization / n, 1) if u else None,
                "memory_used_mb": round(self.memory_used_mb / n) if m else None,
                "power_w": round(self.power_w / n, 1) if p else None}


class GpuTrends:
    """Owns the per-GPU series; fed once a poll by the GPU monitor."""

    def __init__(self, hours: float = TREND_HOURS, point_seconds: float = POINT_SECONDS) -> None:
        self.point_seconds = point_seconds
        self._points: dict[int, deque[dict[str, Any]]] = {}
        self._open: dict[int, _Minute] = {}
        self._keep = max(1, int(hours * 3600 / point_seconds))

    def add(self, gpu: int, reading: GpuReading, limit: int, at: float) -> None:
        """`at`: wall-clock seconds (the points are shown as times of day)."""
        minute = self._open.get(gpu)
        start = at - at % self.point_seconds
        if minute is not None and minute.start != start:
            self._points.setdefault(gpu, deque(maxlen=self._keep)).append(minute.point())
            minute = None
        if minute is None:
            minute = self._open[gpu] = _Minute(start)
        minute.add(reading, limit)

    def series(self, gpu: int) -> list[dict[str, Any]]:
        """Every finished minute, oldest first, then the minute under way."""
        out = list(self._points.get(gpu, ()))
        if gpu in self._open:
            out.append(self._open[gpu].point())
        return out

    def summary(self, gpu: int, seconds: float = 3600.0) -> dict[str, Any]:
        """The last `seconds` in a few figures, for one line of `status`."""
        points = self.series(gpu)
        if not points:
            return {}
        since = points[-1]["t"] - seconds
        recent = [p for p in points if p["t"] >= since]
        temps = [p["temperature"] for p in recent if p["temperature"] is not None]
        utils = [p["utilization"] for p in recent if p["utilization"] is not None]
        return {"minutes": len(recent),
                "temperature_max": max(temps) if temps else None,
                "temperature_min": min(temps) if temps else None,
                "utilization_mean": round(sum(utils) / len(utils), 1) if utils else None,
                "limit_min": min(p["limit"] for p in recent)}
