"""Whether two runs over the same recordings count the same: a faster path (motion-gated, INT8) against
the reference (ungated, FP32), region by region.

Two runs agree when, in every region of every recording, the peak count is equal and occupied seconds
and person-seconds are within `tolerance` (2 %) of the reference's, or within `floor_seconds` (1 s,
two samples at the default rate) where the totals are too small for a share to mean anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TOLERANCE = 0.02
FLOOR_SECONDS = 1.0
MEASURES = ("occupied_seconds", "person_seconds")


@dataclass(slots=True)
class Agreement:
    """The comparison of one run's region totals with the reference's, over one or more recordings."""

    tolerance: float = TOLERANCE
    floor_seconds: float = FLOOR_SECONDS
    reference: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MEASURES, 0.0))
    other: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MEASURES, 0.0))
    differences: list[str] = field(default_factory=list)  # what disagreed, where
    recordings: int = 0

    def add(self, name: str, reference: Mapping[str, Mapping[str, Any]], other: Mapping[str, Mapping[str, Any]]
            ) -> None:
        """One recording's `summary.json` regions from each run."""
        self.recordings += 1
        for region, ref in reference.items():
            got = other.get(region)
            if got is None:
                self.differences.append(f"{name} {region}: missing")
                continue
            if int(got["peak_count"]) != int(ref["peak_count"]):
                self.differences.append(f"{name} {region}: peak {got['peak_count']} against {ref['peak_count']}")
            for measure in MEASURES:
                a, b = float(ref[measure]), float(got[measure])
                self.reference[measure] += a
                self.other[measure] += b
                if not self.close(a, b):
                    self.differences.append(f"{name} {region}: {measure} {b:g} against {a:g}")

    def close(self, reference: float, other: float) -> bool:
        return abs(other - reference) <= max(self.tolerance * max(abs(reference), abs(other)), self.floor_seconds)

    @property
    def agrees(self) -> bool:
        return self.recordings > 0 and not self.differences

    def relative(self, measure: str) -> float:
        """The whole run's difference in `measure`, as a share of the reference's total."""
        ref = self.reference[measure]
        return (self.other[measure] - ref) / ref if ref else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"within_tolerance": self.agrees, "tolerance": self.tolerance, "floor_seconds": self.floor_seconds,
                "recordings": self.recordings,
                "reference_totals": {k: round(v, 3) for k, v in self.reference.items()},
                "totals": {k: round(v, 3) for k, v in self.other.items()},
                "differences": self.differences[:50]}
