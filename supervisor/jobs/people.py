"""People by camera, region and hour in the job store: the table, and its queries written once.

Each done job adds its hour rows (supervisor/protocol/hours.py) in the same
transaction that records it done, so the aggregates count every recording exactly
once; a job done again replaces its rows. The SQL here is plain enough for both
engines; only the placeholder differs (`?` for SQLite, `%s` for PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from supervisor.protocol.hours import FIELDS, HourRow


def table(real: str = "REAL", big: str = "INTEGER", clustered: str = " WITHOUT ROWID") -> str:
    """The table and its index, in one engine's types. Rows are kept in (camera, region, hour) order (SQLite:
    without rowid), so a report reads them in one pass: a year of 20 cameras in a fraction of a second."""
    return f"""
CREATE TABLE IF NOT EXISTS people (
    job_id {big} NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    camera TEXT NOT NULL,
    region TEXT NOT NULL,
    hour TEXT NOT NULL,
    covered_seconds {real} NOT NULL,
    occupied_seconds {real} NOT NULL,
    person_seconds {real} NOT NULL,
    peak INTEGER NOT NULL,
    visits INTEGER NOT NULL,
    damaged_seconds {real} NOT NULL,
    PRIMARY KEY (camera, region, hour, job_id)
){clustered};
CREATE INDEX IF NOT EXISTS people_by_job ON people(job_id);
"""


def replace_sql(mark: str) -> tuple[str, str, str]:
    """(forget a job's rows, add one row, note the job's rows as recorded), with `mark` as placeholder."""
    columns = ", ".join(FIELDS)
    values = ", ".join([mark] * (2 + len(FIELDS)))
    return (f"DELETE FROM people WHERE job_id = {mark}",
            f"INSERT INTO people (job_id, camera, region, hour, {columns}) "
            f"SELECT id, camera, {values} FROM jobs WHERE id = {mark}",
            f"UPDATE jobs SET people_recorded = 1 WHERE id = {mark}")


# `store copy`: every row with its recording's path, and back in by path (job ids differ between stores).
EXPORT = ("SELECT j.path, p.region, p.hour, " + ", ".join(f"p.{f}" for f in FIELDS)
          + " FROM people p JOIN jobs j ON j.id = p.job_id ORDER BY j.path, p.hour, p.region")
NOTE_COPIED = "UPDATE jobs SET people_recorded = 1 WHERE id IN (SELECT job_id FROM people)"


def import_sql(mark: str) -> str:
    marks = ", ".join([mark] * (2 + len(FIELDS)))
    return (f"INSERT INTO people (job_id, camera, region, hour, {', '.join(FIELDS)}) "
            f"SELECT id, camera, {marks} FROM jobs WHERE path = {mark}")


def import_params(row: Any) -> tuple[Any, ...]:
    return (row["region"], row["hour"], *(row[f] for f in FIELDS), row["path"])


def row_params(job_id: int, row: HourRow) -> tuple[Any, ...]:
    return (row.region, row.hour, row.covered_seconds, row.occupied_seconds, row.person_seconds, row.peak,
            row.visits, row.damaged_seconds, job_id)


# How rows are grouped: by hour, by day, by hour of the day, or over the whole range (SQL both engines read).
PERIODS = {"hour": "hour", "day": "substr(hour, 1, 10)", "hour_of_day": "substr(hour, 12, 2)",
           "total": "substr(hour, 1, 0)"}  # an expression: PostgreSQL refuses to group by a constant


@dataclass(frozen=True, slots=True)
class PeopleQuery:
    """Which hours to sum: `start` and `end` as hour names (end excluded), cameras and regions (empty: all)."""

    start: str = ""
    end: str = ""
    cameras: Sequence[str] = ()
    regions: Sequence[str] = ()

    def sql(self, mark: str, period: str = "hour") -> tuple[str, list[Any]]:
        """Per camera, region and period, the sums over every recording (peak: the largest), and the days
        with any hour recorded: one row each, in that order (the index's: no sort for hours)."""
        where: list[str] = []
        params: list[Any] = []
        if self.start:
            where.append(f"hour >= {mark}")
            params.append(self.start)
        if self.end:
            where.append(f"hour < {mark}")
            params.append(self.end)
        for column, wanted in (("camera", self.cameras), ("region", self.regions)):
            if wanted:
                where.append(f"{column} IN ({', '.join([mark] * len(wanted))})")
                params.extend(wanted)
        group = PERIODS[period]
        sums = ", ".join(f"max({f}) AS {f}" if f == "peak" else f"sum({f}) AS {f}" for f in FIELDS)
        days = "1" if period in ("hour", "day") else "count(DISTINCT substr(hour, 1, 10))"
        text = (f"SELECT camera, region, {group} AS period, {sums}, {days} AS days FROM people"
                + (f" WHERE {' AND '.join(where)}" if where else "")
                + f" GROUP BY camera, region, {group} ORDER BY camera, region, {group}")
        return text, params


COLUMNS = ("camera", "region", "period", *FIELDS, "days")


def as_rows(found: Iterable[Any]) -> list[dict[str, Any]]:
    """Query rows (tuples, or dicts in COLUMNS' order) as plain dicts."""
    return [dict(zip(COLUMNS, r.values() if isinstance(r, dict) else r, strict=True)) for r in found]
