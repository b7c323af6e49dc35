"""Whether a faster run counts as the reference run did: the rule `auto` and the bench apply."""

from __future__ import annotations

import pytest

from workers.agreement import Agreement


def region(occupied: float, person: float, peak: int) -> dict:
    return {"occupied_seconds": occupied, "person_seconds": person, "peak_count": peak}


@pytest.mark.parametrize(("reference", "other", "agrees"), [
    (region(1000, 1500, 3), region(1000, 1500, 3), True),
    (region(1000, 1500, 3), region(1019, 1470, 3), True),  # within 2 %
    (region(1000, 1500, 3), region(1030, 1500, 3), False),  # 3 % more occupied time
    (region(1000, 1500, 3), region(1000, 1500, 4), False),  # another peak
    (region(10, 10, 1), region(10.5, 10.5, 1), True),  # under the 1 s floor: one sample's worth
    (region(0, 0, 0), region(0, 0, 0), True),
    (region(0, 0, 0), region(3, 3, 1), False),
])
def test_two_runs_agree_within_two_percent_and_the_same_peak(reference, other, agrees):
    agreement = Agreement()
    agreement.add("a.mp4", {"frame": reference}, {"frame": other})
    assert agreement.agrees is agrees
    assert bool(agreement.differences) is not agrees


def test_every_recording_must_agree_and_the_totals_add_up():
    agreement = Agreement()
    agreement.add("a.mp4", {"left": region(100, 100, 1)}, {"left": region(100, 100, 1)})
    agreement.add("b.mp4", {"left": region(100, 200, 2)}, {"left": region(100, 150, 2)})
    assert not agreement.agrees and agreement.differences == ["b.mp4 left: person_seconds 150 against 200"]
    assert agreement.relative("person_seconds") == pytest.approx(-50 / 300)
    assert agreement.as_dict()["recordings"] == 2


def test_no_recording_compared_is_no_agreement():
    assert Agreement().agrees is False
