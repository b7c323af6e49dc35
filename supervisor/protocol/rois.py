"""ROI configuration: per camera, named polygons in which people are counted.

One file for all cameras, TOML (or JSON with the same shape):

    [cameras.camera_35]
    frame_size = [1920, 1080]          # optional: points below are then pixels
    [[cameras.camera_35.regions]]
    name = "counter"
    points = [[0.10, 0.55], [0.45, 0.55], [0.45, 0.95], [0.10, 0.95]]
    classes = ["person"]               # optional, default ["person"]
    min_dwell_seconds = 0              # optional

Coordinates are normalised (0..1, x to the right, y down) unless the region
or its camera declares `frame_size`, in which case they are pixels of that
frame size. A camera without regions counts the whole frame.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.protocol.geometry import point_in_polygon

Point = tuple[float, float]
WHOLE_FRAME: tuple[Point, ...] = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))


class RoiError(Exception):
    """An unusable ROI file: names the file, the camera/region and why."""

    def __init__(self, source: str, where: str, reason: str) -> None:
        super().__init__(f"{source}: {where}: {reason}")
        self.source, self.where, self.reason = source, where, reason


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    points: tuple[Point, ...]  # normalised
    classes: tuple[str, ...] = ("person",)
    min_dwell_seconds: float = 0.0
    frame_size: tuple[float, float] | None = None  # the frame the points were drawn on, when given in pixels
    whole_frame: bool = False  # no polygon: everyone detected counts

    def contains(self, x: float, y: float) -> bool:
        return self.whole_frame or point_in_polygon(x, y, self.points)


@dataclass(frozen=True, slots=True)
class RoiConfig:
    cameras: dict[str, tuple[Region, ...]]
    source: str = ""

    def regions_for(self, camera: str) -> tuple[Region, ...]:
        regions = self.cameras.get(camera)
        if regions:
            return regions
        return (Region("frame", WHOLE_FRAME, whole_frame=True),)


# Aspect ratios (width / height) closer than this are the same picture at another resolution.
ASPECT_TOLERANCE = 0.01


def same_aspect(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs((a[0] / a[1]) / (b[0] / b[1]) - 1.0) <= ASPECT_TOLERANCE


def check_frame_size(regions: Sequence[Region], width: int, height: int, camera: str, source: str) -> None:
    """Pixel regions drawn on a frame of another shape would be stretched: refuse them, naming both sizes."""
    for region in regions:
        if region.frame_size is not None and not same_aspect(region.frame_size, (width, height)):
            fw, fh = region.frame_size
            raise RoiError(source or "ROI file", f"camera {camera!r}, region {region.name!r}",
                           f"drawn on a {fw:g}x{fh:g} frame but the video is {width}x{height}: a different "
                           "aspect ratio, so the polygon would be stretched; redraw it for this camera's "
                           "picture or fix frame_size")


def _orient(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and d1 * d2 != 0 and d3 * d4 != 0:
        return True
    return (
        (d1 == 0 and _on_segment(q1, q2, p1)) or (d2 == 0 and _on_segment(q1, q2, p2))
        or (d3 == 0 and _on_segment(p1, p2, q1)) or (d4 == 0 and _on_segment(p1, p2, q2))
    )


def self_intersects(points: Sequence[Point]) -> bool:
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbours share a vertex
            if _segments_cross(*edges[i], *edges[j]):
                return True
    return False


def polygon_area(points: Sequence[Point]) -> float:
    n = len(points)
    return abs(sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1]
                   for i in range(n))) / 2.0


def _frame_size(value: Any, source: str, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)):
        raise RoiError(source, where, "frame_size must be [width, height] in pixels, both > 0")
    return float(value[0]), float(value[1])


def _parse_region(raw: Any, source: str, camera: str, index: int,
                  camera_frame: tuple[float, float] | None) -> Region:
    where = f"camera {camera!r}, region #{index + 1}"
    if not isinstance(raw, dict):
        raise RoiError(source, where, "expected a table with name and points")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RoiError(source, where, "needs a non-empty name")
    where = f"camera {camera!r}, region {name!r}"
    known = {"name", "points", "classes", "min_dwell_seconds", "frame_size"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RoiError(source, where, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    frame = _frame_size(raw.get("frame_size"), source, where) or camera_frame
    pts_raw = raw.get("points")
    if not isinstance(pts_raw, list):
        raise RoiError(source, where, "points must be a list of [x, y] pairs")
    points: list[Point] = []
    for k, p in enumerate(pts_raw):
        if (not isinstance(p, list) or len(p) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
            raise RoiError(source, where, f"point #{k + 1} is {p!r}, expected [x, y] numbers")
        x, y = float(p[0]), float(p[1])
        if frame is not None:
            if not (0 <= x <= frame[0] and 0 <= y <= frame[1]):
                raise RoiError(source, where, f"point #{k + 1} {p!r} is outside the {frame[0]:g}x{frame[1]:g} frame")
            x, y = x / frame[0], y / frame[1]
        elif not (0 <= x <= 1 and 0 <= y <= 1):
            raise RoiError(source, where, f"point #{k + 1} {p!r} is out of range 0..1 "
                           "(give frame_size = [w, h] to use pixel coordinates)")
        points.append((x, y))
    if len(points) < 3:
        raise RoiError(source, where, f"a polygon needs at least 3 points, got {len(points)}")
    if len(set(points)) != len(points):
        raise RoiError(source, where, "repeats a point")
    if self_intersects(points):
        raise RoiError(source, where, "the polygon crosses itself")
    if polygon_area(points) <= 0:
        raise RoiError(source, where, "the polygon has no area")
    classes = raw.get("classes", ["person"])
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise RoiError(source, where, "classes must be a non-empty list of class names")
    dwell = raw.get("min_dwell_seconds", 0)
    if isinstance(dwell, bool) or not isinstance(dwell, (int, float)) or dwell < 0:
        raise RoiError(source, where, "min_dwell_seconds must be a number >= 0")
    return Region(name.strip(), tuple(points), tuple(classes), float(dwell), frame)


def parse_rois(data: Any, source: str) -> RoiConfig:
    if not isinstance(data, dict):
        raise RoiError(source, "-", "expected a table at the top level")
    unknown = sorted(set(data) - {"cameras"})
    if unknown:
        raise RoiError(source, unknown[0], "unknown key (expected [cameras.<camera id>] tables)")
    cams = data.get("cameras", {})
    if not isinstance(cams, dict):
        raise RoiError(source, "cameras", "expected a table of cameras")
    out: dict[str, tuple[Region, ...]] = {}
    for camera, body in cams.items():
        where = f"camera {camera!r}"
        if not isinstance(body, dict):
            raise RoiError(source, where, "expected a table with regions")
        extra = sorted(set(body) - {"regions", "frame_size"})
        if extra:
            raise RoiError(source, where, f"unknown key {extra[0]!r} (known: frame_size, regions)")
        frame = _frame_size(body.get("frame_size"), source, where)
        regions_raw = body.get("regions", [])
        if not isinstance(regions_raw, list):
            raise RoiError(source, where, "regions must be a list ([[cameras.<id>.regions]] tables)")
        regions = tuple(_parse_region(r, source, camera, i, frame) for i, r in enumerate(regions_raw))
        sized = [r for r in regions if r.frame_size is not None]
        for r in sized[1:]:
            assert r.frame_size is not None and sized[0].frame_size is not None
            if not same_aspect(r.frame_size, sized[0].frame_size):
                raise RoiError(source, f"camera {camera!r}, region {r.name!r}",
                               f"frame_size {r.frame_size[0]:g}x{r.frame_size[1]:g} has another aspect ratio than "
                               f"region {sized[0].name!r}'s {sized[0].frame_size[0]:g}x{sized[0].frame_size[1]:g}: "
                               "one camera has one picture shape")
        names = [r.name for r in regions]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise RoiError(source, f"camera {camera!r}", f"two regions are named {dup!r}")
        out[camera] = regions
    return RoiConfig(out, source)


def load_rois(path: Path | None) -> RoiConfig:
    if path is None or str(path) == "":
        return RoiConfig({}, "")
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoiError(source, "-", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise RoiError(source, "-", f"not UTF-8 text ({exc.reason})") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise RoiError(source, "-", f"invalid {kind}: {exc}") from exc
    return parse_rois(data, source)
