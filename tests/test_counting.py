"""Counting logic on hand-made detections: no model involved."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.protocol.rois import WHOLE_FRAME, Region, RoiConfig, point_in_polygon
from workers.counting import (
    Detections,
    OccupancyTracker,
    RegionCounter,
    canonical_names,
    points_in_polygon,
    wanted_class_ids,
)

LEFT = Region("left", ((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)))
RIGHT = Region("right", ((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)))
CARS = Region("lot", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)), classes=("car",))


def dets(*boxes: tuple[float, float, float, float, str], size: tuple[float, float] = (1000, 1000)) -> Detections:
    if not boxes:
        return Detections.empty(*size)
    return Detections(np.array([b[:4] for b in boxes], dtype=np.float32), np.full(len(boxes), 0.9, dtype=np.float32),
                      np.array([b[4] for b in boxes], dtype=object), *size)


def test_a_person_counts_where_their_feet_are():
    counter = RegionCounter([LEFT, RIGHT])
    # Head in the left half, feet (bottom-centre) in the right half: counts on the right.
    leaning = (300, 100, 720, 900, "person")
    assert counter.count(dets(leaning)) == [0, 1]
    standing_left = (100, 600, 200, 950, "person")
    above_floor = (100, 100, 200, 400, "person")  # feet above the regions
    assert counter.count(dets(standing_left, above_floor, leaning)) == [1, 1]
    assert counter.count(dets()) == [0, 0]


def test_regions_count_only_their_classes():
    counter = RegionCounter([LEFT, CARS])
    assert counter.count(dets((100, 600, 200, 950, "person"), (600, 600, 900, 950, "car"))) == [1, 1]


@given(st.lists(st.tuples(st.floats(-0.5, 1.5), st.floats(-0.5, 1.5)), min_size=1, max_size=30))
def test_many_points_at_once_agree_with_one_at_a_time(points):
    poly = [(0.1, 0.1), (0.9, 0.2), (0.6, 0.5), (0.9, 0.9), (0.2, 0.8)]
    fast = points_in_polygon(np.array(points), poly)
    assert fast.tolist() == [point_in_polygon(x, y, poly) for x, y in points]


def track(counts, *, sample=0.5, debounce=1.0, regions=(LEFT,), times=None):
    """Feed one count per sample; `times` are the samples' frame times (default: ideal i * sample). The last
    sample stands for one sample period."""
    t = OccupancyTracker(regions, close_after=OccupancyTracker.samples_for(debounce, 1.0 / sample), max_weight=2.0)
    times = times or [i * sample for i in range(len(counts))]
    for i, c in enumerate(counts):
        t.update(times[i], [c] if isinstance(c, int) else c)
    return t.finish(times[len(counts) - 1] + sample if counts else 0.0), t


def quantised(n: int, fps: float, sample_fps: float = 2.0) -> list[float]:
    """The times samples really get: the first frame at or after each slot's start, at `fps`."""
    import math

    return [math.ceil(k / sample_fps * fps - 1e-9) / fps for k in range(n)]


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
    d = dets((100, 50, 300, 400, "person"), size=(1000, 500))
    assert d.feet().tolist() == [[pytest.approx(0.2), pytest.approx(0.8)]]


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001, 10.0])
def test_frame_quantised_sample_times_never_split_an_interval_on_one_missed_sample(fps):
    times = quantised(12, fps)
    # Present throughout, one sample missed at a time, twice.
    intervals, _ = track([1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1], times=times)
    assert len(intervals) == 1
    assert intervals[0].start == 0.0 and intervals[0].end == pytest.approx(times[-1] + 0.5)


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001])
def test_two_missed_samples_in_a_row_close_the_interval_at_quantised_times(fps):
    times = quantised(9, fps)
    intervals, _ = track([1, 1, 0, 0, 1, 1, 0, 0, 0], times=times)
    assert [(iv.start, iv.end) for iv in intervals] == [
        (0.0, pytest.approx(times[2])), (pytest.approx(times[4]), pytest.approx(times[6]))]


def test_a_break_closes_the_interval_where_the_last_sample_stopped_standing_for_time():
    tracker = OccupancyTracker((LEFT,), close_after=2, max_weight=2.0)
    tracker.update(0.0, [1])
    tracker.update(0.5, [1])
    tracker.update(2.5, [1], prev_end=0.9, break_before=True)  # frames lost from 0.9 s to 2.5 s
    assert [(iv.start, iv.end) for iv in tracker.finish(3.0)] == [(0.0, 0.9), (2.5, 3.0)]
    assert tracker.person_seconds == [pytest.approx(0.5 + 0.4 + 0.5)]


def test_sparse_frames_weigh_the_time_they_cover_and_never_split_a_visit():
    # 25 fps, then one frame every 2 s while nothing moves, then 25 fps again: somebody there throughout,
    # missed once in the sparse stretch.
    times = [0.0, 0.52, 1.0, 3.0, 5.0, 7.0, 9.0, 9.52, 10.0]
    counts = [2, 2, 2, 2, 0, 2, 2, 2, 2]
    tracker = OccupancyTracker((LEFT,), close_after=2, max_weight=2.0)
    for t, c in zip(times, counts, strict=True):
        tracker.update(t, [c])
    [interval] = tracker.finish(10.5)
    assert (interval.start, interval.end, interval.max_count) == (0.0, 10.5, 2)
    assert tracker.person_seconds == [pytest.approx(2 * (10.5 - 2.0))]
    assert interval.mean_count == pytest.approx(2 * 8.5 / 10.5)


def test_no_sample_stands_for_more_than_the_cap_nor_past_the_end():
    tracker = OccupancyTracker((LEFT,), close_after=2, max_weight=2.0)
    tracker.update(0.0, [1])
    tracker.update(5.0, [1], prev_end=2.0, break_before=True)  # 3 s unknown: no frames, no evidence
    tracker.update(5.5, [1])
    intervals = tracker.finish(5.75)  # a 5.75 s file: the last sample covers 0.25 s, not a whole period
    assert [(iv.start, iv.end) for iv in intervals] == [(0.0, 2.0), (5.0, 5.75)]
    assert tracker.person_seconds == [pytest.approx(2.0 + 0.5 + 0.25)]
    assert tracker.observed_seconds == pytest.approx(2.75)


def test_a_box_cut_by_the_bottom_edge_stands_on_the_edge_and_counts():
    # ultralytics clips boxes to the image: the feet point is exactly on y = height.
    cut = dets((100, 300, 200, 720, "person"), size=(1280, 720))
    assert cut.feet()[0][1] == 1.0
    whole = RoiConfig({}, "").regions_for("cam")
    assert whole[0].whole_frame and RegionCounter(whole).count(cut) == [1]
    bottom_band = Region("band", ((0.0, 0.8), (1.0, 0.8), (1.0, 1.0), (0.0, 1.0)))
    assert RegionCounter([bottom_band, LEFT]).count(cut) == [1, 1]


@pytest.mark.parametrize("point", [(0.0, 0.0), (1.0, 1.0), (0.5, 1.0), (1.0, 0.3), (0.0, 0.7), (0.25, 0.0)])
def test_points_on_the_boundary_are_inside(point):
    assert point_in_polygon(*point, WHOLE_FRAME)
    assert points_in_polygon(np.array([point]), WHOLE_FRAME).tolist() == [True]


def test_points_on_a_slanted_edge_are_inside_and_just_outside_are_not():
    triangle = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    assert point_in_polygon(0.5, 0.5, triangle)
    assert not point_in_polygon(0.5, 0.5 + 1e-6, triangle)
