"""`report`'s people: per camera and region, by hour, day or weekday-hour, from the store's aggregates.

The store sums every recording per camera, region and hour of recorded time; this
module groups those hours into the periods a reader asks for and renders them. A
period's `covered_seconds` is how much recording was seen: an hour with people
seconds 0 and coverage 3600 was empty, one with coverage 0 was not recorded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from supervisor.jobs.people import PeopleQuery
from supervisor.protocol.hours import FIELDS

BY = ("hour", "day", "weekday-hour")
COLUMNS = ("camera", "region", "period", *FIELDS)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def query(start: str | None, end: str | None, cameras: Iterable[str] = (), regions: Iterable[str] = ()
          ) -> PeopleQuery:
    """From `--from`/`--to` (a date, inclusive, or a date and time, exclusive for `--to`); ValueError when
    either is not a date."""
    def hour(text: str, *, upper: bool) -> str:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a date (e.g. 2025-11-14 or 2025-11-14T12:00)") from None
        if upper and len(text.strip()) <= 10:  # a whole day: up to its end
            when += timedelta(days=1)
        return when.strftime("%Y-%m-%dT%H:00")

    return PeopleQuery(hour(start, upper=False) if start else "", hour(end, upper=True) if end else "",
                       tuple(cameras), tuple(regions))


def _period(hour: str, by: str) -> tuple[tuple[Any, ...], str]:
    """(sort key, label) of the period an hour belongs to."""
    when = datetime.strptime(hour, "%Y-%m-%dT%H:00")
    if by == "hour":
        return (hour,), hour
    if by == "day":
        return (hour[:10],), hour[:10]
    return (when.weekday(), when.hour), f"{WEEKDAYS[when.weekday()]} {when.hour:02d}:00"


def _add(into: dict[str, Any], row: Mapping[str, Any]) -> None:
    for f in FIELDS:
        into[f] = max(into[f], row[f]) if f == "peak" else into[f] + row[f]


def _empty() -> dict[str, Any]:
    return {f: 0 if f in ("peak", "visits") else 0.0 for f in FIELDS}


def by_period(hours: Iterable[Mapping[str, Any]], by: str) -> list[dict[str, Any]]:
    """One row per camera, region and period, with the sums of its hours (peak: the largest)."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in hours:
        key, label = _period(row["hour"], by)
        group = groups.setdefault((*key, row["camera"], row["region"]),
                                  {"camera": row["camera"], "region": row["region"], "period": label, **_empty()})
        _add(group, row)
    return [_rounded(groups[k]) for k in sorted(groups)]


def summary(hours: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per camera and region over the whole range: the sums, and the busiest hour of the day (the most
    person-seconds per second covered)."""
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    by_hour: dict[tuple[str, str], dict[int, list[float]]] = {}
    days: dict[tuple[str, str], set[str]] = {}
    for row in hours:
        key = (row["camera"], row["region"])
        _add(totals.setdefault(key, {"camera": key[0], "region": key[1], **_empty()}), row)
        slot = by_hour.setdefault(key, {}).setdefault(int(row["hour"][11:13]), [0.0, 0.0])
        slot[0] += row["person_seconds"]
        slot[1] += row["covered_seconds"]
        days.setdefault(key, set()).add(row["hour"][:10])
    out = []
    for key in sorted(totals):
        row = _rounded(totals[key])
        rates = {h: p / c for h, (p, c) in by_hour[key].items() if c > 0}
        busiest = max(rates, key=lambda h: (rates[h], -h)) if rates and max(rates.values()) > 0 else None
        row["busiest_hour"] = f"{busiest:02d}:00" if busiest is not None else None
        row["days"] = len(days[key])
        out.append(row)
    return out


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def render_summary(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "people: none recorded yet (done recordings with a recording time add them)"
    head = (f"{'camera':<14} {'region':<12} {'occupied h':>10} {'person h':>9} {'peak':>5} {'visits':>6} "
            f"{'busiest':>8} {'covered h':>9} {'damaged s':>9}")
    lines = ["people", head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['camera']:<14} {r['region']:<12} {r['occupied_seconds'] / 3600:>10.2f} "
                     f"{r['person_seconds'] / 3600:>9.2f} {r['peak']:>5} {r['visits']:>6} "
                     f"{r['busiest_hour'] or '-':>8} {r['covered_seconds'] / 3600:>9.2f} "
                     f"{r['damaged_seconds']:>9.1f}")
    lines.append("busiest: the hour of the day with the most people per second recorded")
    return "\n".join(lines)


def render_periods(rows: list[dict[str, Any]], by: str) -> str:
    if not rows:
        return f"people by {by}: none in this range"
    head = (f"{'camera':<14} {'region':<12} {by:<16} {'occupied s':>10} {'person s':>10} {'peak':>5} "
            f"{'visits':>6} {'covered s':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['camera']:<14} {r['region']:<12} {r['period']:<16} {r['occupied_seconds']:>10.1f} "
                     f"{r['person_seconds']:>10.1f} {r['peak']:>5} {r['visits']:>6} {r['covered_seconds']:>9.1f}")
    return "\n".join(lines)


def render_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
