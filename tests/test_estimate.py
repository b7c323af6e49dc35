from __future__ import annotations

import pytest

from supervisor.observe.estimate import Rates, format_duration, queue_eta, running_remaining
from supervisor.observe.report import percentile


def test_rates_are_learnt_per_camera_with_an_overall_fallback():
    rates = Rates.learn({"a": (100.0, 1000.0, 50.0), "b": (300.0, 1000.0, 60.0), "c": (0.0, 10.0, 0.0)})
    assert rates.per_camera == {"a": 0.1, "b": 0.3}
    assert rates.overall == pytest.approx(0.2)
    assert rates.seconds_for("a", 500) == pytest.approx(50)
    assert rates.seconds_for("new camera", 500) == pytest.approx(100)
    assert Rates.learn({}).seconds_for("a", 1) is None


def test_queue_eta_spreads_queued_work_over_the_slots():
    rates = Rates({"a": 0.1, "b": 0.3}, 0.2)
    # 1000 bytes of a (100 s) + 1000 of b (300 s) + running jobs with 20 s and 40 s left, 2 slots.
    assert queue_eta({"a": 1000, "b": 1000}, rates, [20.0, 40.0], 2) == pytest.approx((100 + 300 + 60) / 2)
    assert queue_eta({}, rates, [20.0, 40.0], 2) == 40.0  # only the running ones
    assert queue_eta({"a": 10}, Rates({}, None), [], 2) is None  # nothing learnt yet
    assert queue_eta({"a": 10}, rates, [None], 2) is None


def test_running_job_remaining_time_prefers_its_own_progress():
    assert running_remaining(100, 1100, 50.0, 999.0, 5.0) == pytest.approx(20.0)
    assert running_remaining(None, None, None, 60.0, 45.0) == pytest.approx(15.0)
    assert running_remaining(None, None, None, 60.0, 90.0) == 0.0
    assert running_remaining(None, None, None, None, 1.0) is None


@pytest.mark.parametrize(("seconds", "text"), [(42, "42s"), (600, "10m"), (7800, "2h10m"), (93600, "1d02h")])
def test_durations_read_like_a_person_writes_them(seconds, text):
    assert format_duration(seconds) == text


def test_nearest_rank_percentile():
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 95) == 19.0
    assert percentile(values, 50) == 10.0
    assert percentile([7.0], 95) == 7.0


def test_the_speed_model_learns_each_finished_job_without_reading_the_store_again():
    from supervisor.observe.status import SpeedModel

    history = {"cam": (100.0, 1000.0, 50.0)}  # what the scheduler read from the store
    model = SpeedModel()
    assert model.learn(history).seconds_for("cam", 10) == pytest.approx(1.0)
    for _ in range(1000):
        model.job_done("cam", 0.1, 10.0)  # faster now: 0.01 s a byte
        model.learn(history)  # the same reading again: nothing is recomputed from it
    assert model.rates.seconds_for("cam", 10) == pytest.approx(10 * (100 + 100) / (1000 + 10_000))
    model.job_done("new", 5.0, 100.0)
    assert model.rates.seconds_for("new", 10) == pytest.approx(0.5)
