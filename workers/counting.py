"""People in regions: detections as arrays, the feet point, debounced occupancy.

Pure numpy, no model: tested on hand-made detections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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
    end: float  # where the last sample with somebody stops standing for time
    weighted: float  # count x seconds, bridged samples included
    seconds: float
    peak: int
    empty_samples: int = 0  # samples with nobody since the last with somebody
    empty_weighted: float = 0.0
    empty_seconds: float = 0.0


class OccupancyTracker:
    """Turns per-sample counts into occupancy intervals and person-seconds, one list per region.

    Each sample stands for the time it covers: from its own time to where the
    next one starts (or to a break: a damaged stretch, or a gap longer than
    `max_weight` where the time is unknown), at most `max_weight`. Person-seconds
    add count x that time, so sparse or variable frames weigh what they cover.
    A region is occupied from the first sample with a count until `close_after`
    samples in a row see nobody; fewer (a detection missed) do not split an
    interval. Only samples that saw nobody count: stretches without frames (a
    recorder that writes fewer frames when nothing moves) never close one,
    whatever the sample rate. Counting samples, not differences of times, keeps
    frame-quantised times (0.48 s and 0.52 s apart at 25 fps) from closing an
    interval early. A break closes every interval: who was there across lost or
    unknown time is not known. An interval ends where its last sample with a
    count stops standing for time, so never past the video's end. Intervals
    shorter than the region's `min_dwell_seconds` are dropped.

    A sample's weight is known once the next one arrives, so each update
    settles the sample before it; `finish` settles the last.
    """

    def __init__(self, regions: Sequence[Region], *, close_after: int, max_weight: float) -> None:
        self.regions = tuple(regions)
        self.close_after = max(1, close_after)
        self.max_weight = max_weight
        self._open: list[_Open | None] = [None] * len(self.regions)
        self._last: tuple[float, list[int]] | None = None
        self.intervals: list[Interval] = []
        self.person_seconds = [0.0] * len(self.regions)
        self.peak = [0] * len(self.regions)
        self.observed_seconds = 0.0
        self.settled: list[tuple[float, float, list[int]]] = []  # (time, the seconds it stood for, counts)

    @staticmethod
    def samples_for(debounce_seconds: float, sample_fps: float) -> int:
        """Empty samples in a row that close an interval: the debounce time at the sample rate, rounded."""
        return max(1, round(debounce_seconds * sample_fps))

    def update(self, t: float, counts: Sequence[int], *, prev_end: float | None = None,
               break_before: bool = False) -> None:
        """A new sample at `t`. `prev_end`: where the previous sample stops standing for time (default `t`);
        `break_before`: lost or unknown time lies between the two."""
        if self._last is not None:
            self._settle(*self._last, end=t if prev_end is None else prev_end)
            if break_before:
                self._close_all()
        self._last = (t, list(counts))

    def finish(self, end: float) -> list[Interval]:
        """The last sample stands for time up to `end` (the video's end as read)."""
        if self._last is not None:
            self._settle(*self._last, end=end)
            self._last = None
        self._close_all()
        self.intervals.sort(key=lambda iv: (iv.start, iv.region))
        return self.intervals

    def _settle(self, t: float, counts: list[int], *, end: float) -> None:
        weight = min(max(0.0, end - t), self.max_weight)
        self.observed_seconds += weight
        self.settled.append((t, weight, counts))
        for i, n in enumerate(counts):
            self.person_seconds[i] += n * weight
            self.peak[i] = max(self.peak[i], n)
            cur = self._open[i]
            if n > 0:
                if cur is None:
                    self._open[i] = _Open(start=t, end=t + weight, weighted=n * weight, seconds=weight, peak=n)
                    continue
                # Bridged samples count as zero for the mean.
                cur.weighted += cur.empty_weighted + n * weight
                cur.seconds += cur.empty_seconds + weight
                cur.empty_samples, cur.empty_weighted, cur.empty_seconds = 0, 0.0, 0.0
                cur.end, cur.peak = t + weight, max(cur.peak, n)
            elif cur is not None:
                cur.empty_samples += 1
                cur.empty_seconds += weight
                if cur.empty_samples >= self.close_after:
                    self._close(i, cur)

    def _close_all(self) -> None:
        for i, cur in enumerate(self._open):
            if cur is not None:
                self._close(i, cur)

    def _close(self, i: int, cur: _Open) -> None:
        self._open[i] = None
        region = self.regions[i]
        if cur.end - cur.start + 1e-9 < region.min_dwell_seconds:
            return
        self.intervals.append(Interval(region.name, cur.start, cur.end, cur.peak,
                                       cur.weighted / cur.seconds if cur.seconds > 0 else float(cur.peak)))

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
