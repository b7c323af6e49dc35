"""People in regions: detections as arrays, the feet point, debounced occupancy.

Pure numpy, no model: tested on hand-made detections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from supervisor.protocol.geometry import points_in_polygon
from supervisor.protocol.rois import Region


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes of one frame in pixels (x1, y1, x2, y2), with confidence and canonical class name, and the
    size of the frame they were found in (the frame actually decoded, not what the container claims)."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_name: np.ndarray
    width: float
    height: float

    @classmethod
    def empty(cls, width: float = 1.0, height: float = 1.0) -> Detections:
        return cls(np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=object),
                   width, height)

    @classmethod
    def from_ultralytics(cls, result: Any, names: Mapping[int, str]) -> Detections:
        """From one ultralytics `Results`; `names` maps the model's class ids to canonical names."""
        height, width = result.orig_shape[:2]
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return cls.empty(width, height)
        cls_ids = boxes.cls.cpu().numpy().astype(int)
        return cls(
            boxes.xyxy.cpu().numpy().astype(np.float32),
            boxes.conf.cpu().numpy().astype(np.float32),
            np.array([names.get(int(c), str(c)) for c in cls_ids], dtype=object),
            float(width), float(height),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def feet(self) -> np.ndarray:
        """Bottom-centre of each box, normalised to 0..1: where a person stands. A box cut by the frame's
        bottom edge ends exactly on it (y = 1.0), which regions include."""
        if not len(self):
            return np.zeros((0, 2), dtype=np.float64)
        x = (self.xyxy[:, 0].astype(np.float64) + self.xyxy[:, 2]) / 2.0 / self.width
        y = self.xyxy[:, 3].astype(np.float64) / self.height
        feet: np.ndarray = np.clip(np.stack([x, y], axis=1), 0.0, 1.0)
        return feet


class RegionCounter:
    """Counts, per region, the detections of its classes whose feet are inside it (edges included)."""

    def __init__(self, regions: Sequence[Region]) -> None:
        self.regions = tuple(regions)
        self.names = [r.name for r in self.regions]

    def count(self, det: Detections) -> list[int]:
        feet = det.feet()
        out = []
        for region in self.regions:
            wanted = np.isin(det.class_name, list(region.classes)) if len(det) else np.zeros(0, dtype=bool)
            if region.whole_frame:
                out.append(int(np.count_nonzero(wanted)))
                continue
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
    last_slot: int
    counts: list[int] = field(default_factory=list)


class OccupancyTracker:
    """Turns per-sample counts into occupancy intervals, one list per region.

    Samples are numbered by slot (one slot per sample period). A region is
    occupied from the first sample with a count until `close_after` samples in
    a row have none: fewer missed samples (a detection missed, a frame lost)
    do not split an interval. Slots without a sample count as missed. Counting
    samples, not differences of times, keeps frame-quantised times (0.48 s and
    0.52 s apart at 25 fps) from closing an interval early. An interval ends one
    sample period after its last sample with a count. Intervals shorter than
    the region's `min_dwell_seconds` are dropped.
    """

    def __init__(self, regions: Sequence[Region], *, sample_seconds: float, close_after: int) -> None:
        self.regions = tuple(regions)
        self.sample_seconds = sample_seconds
        self.close_after = max(1, close_after)
        self._open: list[_Open | None] = [None] * len(self.regions)
        self.intervals: list[Interval] = []
        self.person_seconds = [0.0] * len(self.regions)
        self.peak = [0] * len(self.regions)

    @staticmethod
    def samples_for(debounce_seconds: float, sample_fps: float) -> int:
        """Empty samples in a row that close an interval: the debounce time at the sample rate, rounded."""
        return max(1, round(debounce_seconds * sample_fps))

    def update(self, slot: int, t: float, counts: Sequence[int]) -> None:
        for i, n in enumerate(counts):
            self.person_seconds[i] += n * self.sample_seconds
            self.peak[i] = max(self.peak[i], n)
            cur = self._open[i]
            if cur is None:
                if n > 0:
                    self._open[i] = _Open(start=t, last_seen=t, last_slot=slot, counts=[n])
                continue
            missed = slot - cur.last_slot - 1 if n > 0 else slot - cur.last_slot
            if missed >= self.close_after:
                self._close(i, cur)
                if n > 0:
                    self._open[i] = _Open(start=t, last_seen=t, last_slot=slot, counts=[n])
            elif n > 0:
                cur.counts.extend([0] * missed)  # bridged samples count as zero for the mean
                cur.counts.append(n)
                cur.last_seen, cur.last_slot = t, slot

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
