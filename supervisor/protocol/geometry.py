"""Points in polygons, edges included: one implementation, for one point or many."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]
# How close to an edge (in normalised units) a point counts as on it: float noise, not a margin.
EDGE_EPSILON = 1e-9


def points_in_polygon(points: np.ndarray, polygon: Sequence[Point]) -> np.ndarray:
    """For each (x, y) row: inside the polygon or on its boundary (even-odd rule inside)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    px, py = pts[:, 0], pts[:, 1]
    inside = np.zeros(len(pts), dtype=bool)
    on_edge = np.zeros(len(pts), dtype=bool)
    poly = [(float(x), float(y)) for x, y in polygon]
    j = len(poly) - 1
    for i in range(len(poly)):
        xi, yi = poly[i]
        xj, yj = poly[j]
        crosses = (yi > py) != (yj > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = xi + (py - yi) * (xj - xi) / (yj - yi)
        inside ^= crosses & (px < x_cross)
        # On the segment: collinear with it and within its bounding box.
        cross = (xj - xi) * (py - yi) - (yj - yi) * (px - xi)
        length = max(abs(xj - xi), abs(yj - yi), EDGE_EPSILON)
        on_edge |= ((np.abs(cross) <= EDGE_EPSILON * length)
                    & (px >= min(xi, xj) - EDGE_EPSILON) & (px <= max(xi, xj) + EDGE_EPSILON)
                    & (py >= min(yi, yj) - EDGE_EPSILON) & (py <= max(yi, yj) + EDGE_EPSILON))
        j = i
    return inside | on_edge


def point_in_polygon(x: float, y: float, polygon: Sequence[Point]) -> bool:
    return bool(points_in_polygon(np.array([[x, y]]), polygon)[0])
