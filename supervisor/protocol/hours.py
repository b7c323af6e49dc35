"""People by hour of recorded time: the rows a recording adds to the store's aggregates.

The worker knows what each stretch of video time holds (how long each sample stood
for, who was in each region, when intervals began and ended, what was damaged);
the recording's start puts those stretches on the wall clock. A stretch that
crosses an hour's end is split at it, so an hour's row holds exactly its part:

- covered_seconds: video time a sample stood for (what was seen), per region;
- occupied_seconds: time inside occupancy intervals;
- person_seconds: count x the time each sample stood for;
- peak: the largest count a sample of that hour saw;
- visits: intervals that began in that hour;
- damaged_seconds: time lost to damage.

An hour is named by its start, `2025-11-14T14:00`, in the recording's own clock
(the time its name gives, as every other time in the results).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

FIELDS = ("covered_seconds", "occupied_seconds", "person_seconds", "peak", "visits", "damaged_seconds")


@dataclass(slots=True)
class HourRow:
    region: str
    hour: str  # the hour's start, "YYYY-MM-DDTHH:00"
    covered_seconds: float = 0.0
    occupied_seconds: float = 0.0
    person_seconds: float = 0.0
    peak: int = 0
    visits: int = 0
    damaged_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        row = asdict(self)
        for name in ("covered_seconds", "occupied_seconds", "person_seconds", "damaged_seconds"):
            row[name] = round(row[name], 3)
        return row

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HourRow:
        return cls(str(data["region"]), str(data["hour"]), float(data.get("covered_seconds") or 0.0),
                   float(data.get("occupied_seconds") or 0.0), float(data.get("person_seconds") or 0.0),
                   int(data.get("peak") or 0), int(data.get("visits") or 0), float(data.get("damaged_seconds") or 0.0))


def hour_name(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:00")


class HourBuckets:
    """Accumulates stretches of video time into hour rows, one per region and hour."""

    def __init__(self, start: datetime, regions: Iterable[str]) -> None:
        self._start = start
        self._regions = tuple(regions)
        self._rows: dict[tuple[str, str], HourRow] = {}

    def _row(self, region: str, when: datetime) -> HourRow:
        key = (region, hour_name(when))
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = HourRow(region, key[1])
        return row

    def _pieces(self, a: float, b: float) -> Iterator[tuple[datetime, float]]:
        """[a, b) seconds of video time, split at the hours' ends: (a moment inside the hour, seconds)."""
        at = self._start + timedelta(seconds=a)
        end = self._start + timedelta(seconds=b)
        while at < end:
            next_hour = at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            upto = min(next_hour, end)
            yield at, (upto - at).total_seconds()
            at = upto

    def sample(self, t: float, seconds: float, counts: Iterable[int]) -> None:
        """A sample at video time `t` that stood for `seconds`, with its count per region."""
        counts = list(counts)
        for when, part in self._pieces(t, t + seconds):
            for region, n in zip(self._regions, counts, strict=True):
                row = self._row(region, when)
                row.covered_seconds += part
                row.person_seconds += n * part
        for region, n in zip(self._regions, counts, strict=True):
            row = self._row(region, self._start + timedelta(seconds=t))
            row.peak = max(row.peak, n)

    def interval(self, region: str, start: float, end: float) -> None:
        self._row(region, self._start + timedelta(seconds=start)).visits += 1
        for when, part in self._pieces(start, end):
            self._row(region, when).occupied_seconds += part

    def damage(self, start: float, end: float) -> None:
        for when, part in self._pieces(start, end):
            for region in self._regions:
                self._row(region, when).damaged_seconds += part

    def rows(self) -> list[HourRow]:
        return sorted(self._rows.values(), key=lambda r: (r.hour, r.region))


def rows_from_results(summary: Mapping[str, Any], counts_csv: str, intervals: Iterable[Mapping[str, Any]]
                      ) -> list[HourRow]:
    """Hour rows for a result set written before summary.json carried them: each sample stood for one
    sample period (as those workers counted), the intervals and damage as written. [] without a start."""
    import csv
    import io

    recorded = summary.get("recorded_at")
    if not recorded:
        return []
    regions = list(summary.get("regions") or {})
    period = 1.0 / float((summary.get("settings") or {}).get("sample_fps") or 2.0)
    buckets = HourBuckets(datetime.fromisoformat(recorded), regions)
    for row in csv.DictReader(io.StringIO(counts_csv)):
        buckets.sample(float(row["video_time_s"]), period, [int(row[r]) for r in regions])
    for iv in intervals:
        buckets.interval(str(iv["region"]), float(iv["start"]), float(iv["end"]))
    for span in (summary.get("damage") or {}).get("spans") or []:
        buckets.damage(float(span["start"]), float(span["end"]))
    return buckets.rows()


def hours_of(folder: Path) -> list[HourRow]:
    """The hour rows of a result folder: those its summary.json holds, or, for a result set written before
    summaries held them, rebuilt from its counts and intervals; none for a worker that writes no counts.
    OSError when the folder cannot be read now (a share not mounted), ValueError when it is not JSON."""
    import json

    summary = json.loads((folder / "summary.json").read_text())
    if "hours" in summary:
        return [HourRow.from_dict(row) for row in summary["hours"]]
    try:
        counts = (folder / "counts.csv").read_text()
        events = (folder / "events.jsonl").read_text()
    except FileNotFoundError:
        return []  # a worker that writes no counts: nothing to say by hour
    intervals = [json.loads(line) for line in events.splitlines() if line.strip()]
    return rows_from_results(summary, counts, intervals)
