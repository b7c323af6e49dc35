"""Motion-gated inference: run the network only where the picture changed, as Frigate does.

Each sample carries a thumbnail: its luma (the grey picture the recorder encoded), scaled down by
area averaging to `THUMB_WIDTH` pixels wide, which also averages away sensor and compression noise.
The gate compares it with the thumbnail of the last sample that was *inferred* (not the last sample:
a person who walks in slowly adds up against a fixed reference until a cell changes enough) in cells
of `CELL` x `CELL` thumbnail pixels. Where no cell's mean absolute difference reaches `threshold`
grey levels, nothing in the frame moved and the last detections stand for this sample too.

Where the camera has regions drawn, only cells in or next to a region count (one cell around each,
so feet stepping in are seen before they are inside): what moves elsewhere (a burnt-in clock, a
street through the window, a screen) cannot change a region's count, and would otherwise keep the
network running all day.

A sample is always inferred when:

- it is the first, or its picture has another size than the reference (a resolution change);
- lost or unknown time lies between it and the sample before (damage, a gap): who is there is unknown;
- `max_reuse_seconds` of video have passed since the last inferred sample, so a person who sits
  still, or walks in more slowly than any threshold sees, is found within that time.

Pure: no model, no I/O; the worker asks `decide` and reports `inferred`/`reused` and the spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from supervisor.protocol.rois import Region

THUMB_WIDTH = 160
CELL = 8


@dataclass(frozen=True, slots=True)
class MotionSettings:
    enabled: bool = False
    threshold: float = 6.0  # mean absolute grey-level difference in one cell (0..255) that is motion
    max_reuse_seconds: float = 10.0  # a sample is inferred at least this often, whatever moved

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "threshold": self.threshold, "max_reuse_seconds": self.max_reuse_seconds,
                "thumbnail_width": THUMB_WIDTH, "cell": CELL}


def thumbnail(luma: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    """The grey picture scaled to `width` pixels wide by area averaging (float32, for differences)."""
    import cv2

    h, w = luma.shape[:2]
    height = max(1, round(h * width / w))
    small: np.ndarray = cv2.resize(luma, (width, height), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32)


def cell_differences(current: np.ndarray, reference: np.ndarray, cell: int = CELL) -> np.ndarray:
    """Mean absolute difference per cell of `cell` x `cell` pixels (the edge cells may be smaller)."""
    diff = np.abs(current - reference)
    h, w = diff.shape
    rows, cols = -(-h // cell), -(-w // cell)
    padded = np.zeros((rows * cell, cols * cell), dtype=np.float32)
    counts = np.zeros_like(padded)
    padded[:h, :w] = diff
    counts[:h, :w] = 1.0
    sums = padded.reshape(rows, cell, cols, cell).sum(axis=(1, 3))
    n = counts.reshape(rows, cell, cols, cell).sum(axis=(1, 3))
    means: np.ndarray = sums / np.maximum(n, 1.0)
    return means


def region_cells(regions: Sequence[Region], shape: tuple[int, int], cell: int = CELL,
                 margin: int = 1) -> np.ndarray | None:
    """Which cells of a thumbnail of `shape` lie in or within `margin` cells of a region (None: every
    cell, for a camera counted over the whole frame)."""
    import cv2

    if not regions or any(r.whole_frame for r in regions):
        return None
    h, w = shape
    mask = np.zeros((h, w), dtype=np.uint8)
    for region in regions:
        points = np.round(np.array(region.points, dtype=np.float64) * [w - 1, h - 1]).astype(np.int32)
        cv2.fillPoly(mask, [points], 1)
        cv2.polylines(mask, [points], True, 1)  # a region thinner than a pixel still has its cells
    rows, cols = -(-h // cell), -(-w // cell)
    padded = np.zeros((rows * cell, cols * cell), dtype=np.uint8)
    padded[:h, :w] = mask
    cells = padded.reshape(rows, cell, cols, cell).max(axis=(1, 3))
    grown: np.ndarray = cv2.dilate(cells, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    return grown


@dataclass(slots=True)
class MotionGate:
    """Decides, sample by sample, whether to run the network or reuse the last detections."""

    settings: MotionSettings
    regions: tuple[Region, ...] = ()
    inferred: int = 0
    reused: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: {"first": 0, "motion": 0, "interval": 0, "break": 0,
                                                             "off": 0})
    spans: list[list[float]] = field(default_factory=list)  # [start, end] of each run of reused samples
    _reference: np.ndarray | None = None
    _reference_t: float = 0.0
    _last_t: float | None = None
    _last_reused: bool = False
    _mask: np.ndarray | None = None
    _mask_shape: tuple[int, ...] = ()

    def decide(self, t: float, thumb: np.ndarray | None, *, break_before: bool = False) -> bool:
        """True: infer this sample (and it becomes the reference); False: reuse the last detections."""
        reason = self._reason(t, thumb, break_before)
        infer = reason is not None
        if infer:
            self.inferred += 1
            self.reasons[reason or "off"] += 1
            self._reference, self._reference_t = thumb, t
            if self._last_reused and self.spans:
                self.spans[-1][1] = t  # the run of reused samples stood for time up to this one
        else:
            self.reused += 1
            if not self._last_reused:
                self.spans.append([t, t])
        self._last_reused = not infer
        self._last_t = t
        return infer

    def _reason(self, t: float, thumb: np.ndarray | None, break_before: bool) -> str | None:
        if not self.settings.enabled or thumb is None:
            return "off"
        reference = self._reference
        if reference is None or reference.shape != thumb.shape:
            return "first"
        if break_before:
            return "break"
        if t - self._reference_t >= self.settings.max_reuse_seconds - 1e-6:
            return "interval"
        differences = cell_differences(thumb, reference)
        if thumb.shape != self._mask_shape:
            self._mask = region_cells(self.regions, (thumb.shape[0], thumb.shape[1]))
            self._mask_shape = thumb.shape
        if self._mask is not None:
            differences = differences[self._mask]
        if differences.size and float(differences.max()) >= self.settings.threshold:
            return "motion"
        return None

    def finish(self, end: float) -> None:
        """The last run of reused samples stands for time up to `end`."""
        if self._last_reused and self.spans:
            self.spans[-1][1] = max(self.spans[-1][1], end)
        self._last_reused = False

    def as_dict(self) -> dict[str, Any]:
        total = self.inferred + self.reused
        watched = None if self._mask is None else int(self._mask.sum())
        return {**self.settings.as_dict(), "cells_watched": watched, "samples_inferred": self.inferred,
                "samples_reused": self.reused,
                "reused_fraction": round(self.reused / total, 4) if total else 0.0,
                "inferred_because": dict(self.reasons),
                "reused_spans": [[round(a, 3), round(b, 3)] for a, b in self.spans]}
