"""Counting logic on hand-made detections: no model involved."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.counting import (
    Detections,
    OccupancyTracker,
    RegionCounter,
    canonical_names,
    points_in_polygon,
    wanted_class_ids,
)
from workers.rois import Region, point_in_polygon

LEFT = Region("left", ((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)))
RIGHT = Region("right", ((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)))
CARS = Region("lot", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)), classes=("car",))


def dets(*boxes: tuple[float, float, float, float, str]) -> Detections:
    if not boxes:
        return Detections.empty()
    return Detections(np.array([b[:4] for b in boxes], dtype=np.float32), np.full(len(boxes), 0.9, dtype=np.float32),
                      np.array([b[4] for b in boxes], dtype=object))


def test_a_person_counts_where_their_feet_are():
    counter = RegionCounter([LEFT, RIGHT])
    # Head in the left half, feet (bottom-centre) in the right half: counts on the right.
    leaning = (300, 100, 700, 900, "person")
    assert counter.count(dets(leaning), 1000, 1000) == [0, 1]
    standing_left = (100, 600, 200, 950, "person")
    above_floor = (100, 100, 200, 400, "person")  # feet above the regions
    assert counter.count(dets(standing_left, above_floor, leaning), 1000, 1000) == [1, 1]
    assert counter.count(dets(), 1000, 1000) == [0, 0]


def test_regions_count_only_their_classes():
    counter = RegionCounter([LEFT, CARS])
    assert counter.count(dets((100, 600, 200, 950, "person"), (600, 600, 900, 950, "car")), 1000, 1000) == [1, 1]


@given(st.lists(st.tuples(st.floats(-0.5, 1.5), st.floats(-0.5, 1.5)), min_size=1, max_size=30))
def test_vectorised_polygon_test_agrees_with_the_reference(points):
    poly = [(0.1, 0.1), (0.9, 0.2), (0.6, 0.5), (0.9, 0.9), (0.2, 0.8)]
    fast = points_in_polygon(np.array(points), poly)
    assert fast.tolist() == [point_in_polygon(x, y, poly) for x, y in points]


def track(counts, *, sample=0.5, gap=1.0, regions=(LEFT,)):
    t = OccupancyTracker(regions, sample_seconds=sample, gap_seconds=gap)
    for i, c in enumerate(counts):
        t.update(i * sample, [c] if isinstance(c, int) else c)
    return t.finish(), t


def test_one_missed_detection_does_not_split_an_interval():
    intervals, _ = track([0, 2, 1, 0, 1, 1, 0, 0, 0])
    assert [(iv.start, iv.end, iv.max_count) for iv in intervals] == [(0.5, 3.0, 2)]
    assert intervals[0].mean_count == pytest.approx((2 + 1 + 0 + 1 + 1) / 5)


def test_a_longer_gap_splits_it():
    intervals, _ = track([1, 0, 0, 0, 1])
    assert [(iv.start, iv.end) for iv in intervals] == [(0.0, 0.5), (2.0, 2.5)]


def test_short_visits_below_min_dwell_are_dropped_but_still_counted_in_totals():
    door = Region("door", LEFT.points, min_dwell_seconds=2.0)
    intervals, tracker = track([1, 1, 0, 0, 0, 1, 1, 1, 1, 0], regions=(door,))
    assert [(iv.start, iv.end) for iv in intervals] == [(2.5, 4.5)]
    totals = tracker.totals()["door"]
    assert totals == {"occupied_seconds": 2.0, "person_seconds": 3.0, "peak_count": 1}


def test_interval_still_open_at_the_end_is_closed():
    intervals, _ = track([0, 0, 3, 3])
    assert [(iv.start, iv.end, iv.max_count) for iv in intervals] == [(1.0, 2.0, 3)]


def test_fall_model_classes_map_to_person():
    names = canonical_names({0: "Normal", 1: "Fall"}, {"Normal": "person", "Fall": "person"})
    assert names == {0: "person", 1: "person"}
    assert wanted_class_ids(names, ["person"]) == [0, 1]
    assert wanted_class_ids({0: "person", 2: "car"}, ["car"]) == [2]


def test_feet_are_normalised_bottom_centres():
    d = dets((100, 50, 300, 400, "person"))
    assert d.feet(1000, 500).tolist() == [[pytest.approx(0.2), pytest.approx(0.8)]]
