"""People in regions: detections as arrays, the feet point, polygons, debounced occupancy.

Pure numpy, no model: tested on hand-made detections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .rois import Region


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes of one frame in pixels (x1, y1, x2, y2), with confidence and canonical class name."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_name: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=object))

    @classmethod
    def from_ultralytics(cls, result: Any, names: Mapping[int, str]) -> Detections:
        """From one ultralytics `Results`; `names` maps the model's class ids to canonical names."""
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return cls.empty()
        cls_ids = boxes.cls.cpu().numpy().astype(int)
        return cls(
            boxes.xyxy.cpu().numpy().astype(np.float32),
            boxes.conf.cpu().numpy().astype(np.float32),
            np.array([names.get(int(c), str(c)) for c in cls_ids], dtype=object),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def feet(self, width: float, height: float) -> np.ndarray:
        """Bottom-centre of each box, normalised to 0..1: where a person stands."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2.0 / width
        y = self.xyxy[:, 3] / height
        return np.stack([x, y], axis=1) if len(self) else np.zeros((0, 2), dtype=np.float32)


def points_in_polygon(points: np.ndarray, polygon: Sequence[tuple[float, float]]) -> np.ndarray:
    """Even-odd rule for many points at once; same answers as `rois.point_in_polygon`."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    px, py = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), dtype=bool)
    poly = list(polygon)
    j = len(poly) - 1
    for i in range(len(poly)):
        xi, yi = poly[i]
        xj, yj = poly[j]
        crosses = (yi > py) != (yj > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = xi + (py - yi) * (xj - xi) / (yj - yi)
        inside ^= crosses & (px < x_cross)
        j = i
    return inside


class RegionCounter:
    """Counts, per region, the detections of its classes whose feet are inside it."""

    def __init__(self, regions: Sequence[Region]) -> None:
        self.regions = tuple(regions)
        self.names = [r.name for r in self.regions]

    def count(self, det: Detections, width: float, height: float) -> list[int]:
        feet = det.feet(width, height)
        out = []
        for region in self.regions:
            wanted = np.isin(det.class_name, list(region.classes)) if len(det) else np.zeros(0, dtype=bool)
            inside = points_in_polygon(feet, region.points)
            out.append(int(np.count_nonzero(inside & wanted)))
        return out


@dataclass(slots=True)
class Interval:
    region: str
    start: float
    end: float
    max_count: int
    mean_count: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {"region": self.region, "start": round(self.start, 3), "end": round(self.end, 3),
                "seconds": round(self.seconds, 3), "max_count": self.max_count,
                "mean_count": round(self.mean_count, 3)}


@dataclass(slots=True)
class _Open:
    start: float
    last_seen: float
    counts: list[int] = field(default_factory=list)


class OccupancyTracker:
    """Turns per-sample counts into occupancy intervals, one list per region.

    A region is occupied from the first sample with a count until the last one
    before a gap of at least `gap_seconds` without any: a single missed
    detection does not split an interval. Intervals shorter than the region's
    `min_dwell_seconds` are dropped. Each sample stands for `sample_seconds`.
    """

    def __init__(self, regions: Sequence[Region], *, sample_seconds: float, gap_seconds: float) -> None:
        self.regions = tuple(regions)
        self.sample_seconds = sample_seconds
        self.gap_seconds = max(gap_seconds, sample_seconds)
        self._open: list[_Open | None] = [None] * len(self.regions)
        self.intervals: list[Interval] = []
        self.person_seconds = [0.0] * len(self.regions)
        self.peak = [0] * len(self.regions)

    def update(self, t: float, counts: Sequence[int]) -> None:
        for i, n in enumerate(counts):
            self.person_seconds[i] += n * self.sample_seconds
            self.peak[i] = max(self.peak[i], n)
            cur = self._open[i]
            if cur is not None and t - cur.last_seen > self.gap_seconds:
                self._close(i, cur)
                cur = None
            if n > 0:
                if cur is None:
                    cur = self._open[i] = _Open(start=t, last_seen=t)
                else:
                    # samples inside a bridged gap count as zero for the mean
                    missed = round((t - cur.last_seen) / self.sample_seconds) - 1
                    cur.counts.extend([0] * max(0, missed))
                cur.last_seen = t
                cur.counts.append(n)

    def _close(self, i: int, cur: _Open) -> None:
        self._open[i] = None
        region = self.regions[i]
        end = cur.last_seen + self.sample_seconds
        if end - cur.start + 1e-9 < region.min_dwell_seconds:
            return
        self.intervals.append(Interval(region.name, cur.start, end, max(cur.counts),
                                       sum(cur.counts) / len(cur.counts)))

    def finish(self) -> list[Interval]:
        for i, cur in enumerate(self._open):
            if cur is not None:
                self._close(i, cur)
        self.intervals.sort(key=lambda iv: (iv.start, iv.region))
        return self.intervals

    def totals(self) -> dict[str, dict[str, float]]:
        occupied: dict[str, float] = {r.name: 0.0 for r in self.regions}
        for iv in self.intervals:
            occupied[iv.region] += iv.seconds
        return {
            r.name: {"occupied_seconds": round(occupied[r.name], 3),
                     "person_seconds": round(self.person_seconds[i], 3), "peak_count": self.peak[i]}
            for i, r in enumerate(self.regions)
        }


def canonical_names(model_names: Mapping[int, str], class_map: Mapping[str, str]) -> dict[int, str]:
    """The model's class ids to the names regions ask for (e.g. a fall model's Normal/Fall -> person)."""
    return {int(i): class_map.get(name, name) for i, name in model_names.items()}


def wanted_class_ids(names: Mapping[int, str], classes: Iterable[str]) -> list[int]:
    wanted = set(classes)
    return sorted(i for i, n in names.items() if n in wanted)
