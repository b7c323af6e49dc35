"""`report`'s people: per camera and region, by hour, day or weekday-hour, from the store's aggregates.

The store sums every recording per camera, region and hour of recorded time; this
module groups those hours into the periods a reader asks for and renders them. A
period's `covered_seconds` is how much recording was seen: an hour with people
seconds 0 and coverage 3600 was empty, one with coverage 0 was not recorded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from supervisor.jobs.contract import JobReader
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


def _rounded(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items() if k != "days"}


def combine(rows: Iterable[Mapping[str, Any]],
            key_of: Callable[[Mapping[str, Any]], tuple[tuple[Any, ...], str]]) -> list[dict[str, Any]]:
    """Rows summed per group, as the store sums them: `key_of(row)` gives the group's sort key and its
    period's label; peak is the largest, `days` the distinct days the group's rows fall on."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    days: dict[tuple[Any, ...], set[str]] = {}
    for row in rows:
        key, label = key_of(row)
        days.setdefault(key, set()).add(row["period"][:10])
        group = groups.get(key)
        if group is None:
            groups[key] = {**row, "period": label}
            continue
        for f in FIELDS:
            group[f] = max(group[f], row[f]) if f == "peak" else group[f] + row[f]
    return [{**groups[k], "days": len(days[k])} for k in sorted(groups)]


def weekday_hours(hours: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Hour rows (period: an hour's name) summed per camera, region, weekday and hour of the day."""
    def weekday(row: Mapping[str, Any]) -> tuple[tuple[Any, ...], str]:
        when = datetime.strptime(row["period"], "%Y-%m-%dT%H:00")
        return (when.weekday(), when.hour, row["camera"], row["region"]), \
            f"{WEEKDAYS[when.weekday()]} {when.hour:02d}:00"

    return [_rounded(r) for r in combine(hours, weekday)]


def by_period(store: JobReader, wanted: PeopleQuery, by: str) -> list[dict[str, Any]]:
    """One row per camera, region and period (`BY`), with the sums of its hours (peak: the largest)."""
    if by == "weekday-hour":
        return weekday_hours(store.people(wanted, "hour"))
    return [_rounded(r) for r in store.people(wanted, by)]


def summary(store: JobReader, wanted: PeopleQuery) -> list[dict[str, Any]]:
    """Per camera and region over the whole range: the sums, the days with a recording, and the busiest
    hour of the day (the most person-seconds per second recorded)."""
    return summarize(store.people(wanted, "total"), store.people(wanted, "hour_of_day"))


def summarize(totals: Iterable[Mapping[str, Any]], hours_of_day: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """summary() from rows already read: per camera and region over the range, and by hour of the day."""
    busiest: dict[tuple[str, str], tuple[float, int]] = {}
    for row in hours_of_day:
        if row["covered_seconds"] > 0 and row["person_seconds"] > 0:
            rate, hour = row["person_seconds"] / row["covered_seconds"], int(row["period"])
            key = (row["camera"], row["region"])
            if key not in busiest or (rate, -hour) > (busiest[key][0], -busiest[key][1]):
                busiest[key] = (rate, hour)
    out = []
    for row in totals:
        found = busiest.get((row["camera"], row["region"]))
        out.append({**_rounded({k: v for k, v in row.items() if k != "period"}),
                    "busiest_hour": f"{found[1]:02d}:00" if found else None, "days": row["days"]})
    return sorted(out, key=lambda r: (r["camera"], r["region"]))


def regroup(hours: Iterable[Mapping[str, Any]], period: str) -> list[dict[str, Any]]:
    """Hour rows summed into another of the store's periods ("day", "hour_of_day", "total"), as the store
    would: one read of the hours serves every view of a page."""
    cut = {"day": slice(0, 10), "hour_of_day": slice(11, 13), "total": slice(0, 0)}[period]
    return combine(hours, lambda row: ((row["camera"], row["region"], row["period"][cut]), row["period"][cut]))


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
