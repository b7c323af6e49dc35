"""`report --html FILE`: one self-contained page of what the recordings showed, for a manager.

Per camera and region: how many people were there by hour of the day, a day x
hour heatmap, and daily totals; then how much was recorded and how much was
damaged, and how the processing went. Every chart has its numbers in a table
under it (cells carry `data-value`, the figure to six decimals), so
the page can be checked against the store, and read without script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from supervisor.jobs.contract import JobReader
from supervisor.jobs.people import PeopleQuery
from supervisor.observe import people
from supervisor.observe.charts import canvas, page

Rows = Sequence[Mapping[str, Any]]


def _td(value: float | int | None, shown: str | None = None) -> str:
    if value is None:
        return '<td class="muted">-</td>'
    raw = round(value, 6) if isinstance(value, float) else value
    return f'<td data-value="{raw}">{escape(shown if shown is not None else str(raw))}</td>'


def _h(seconds: float) -> str:
    """A time as a person reads it (2.4 h, 12.5 min, 7.0 s); the cell's value in hours."""
    return _td(seconds / 3600, span(seconds))


def span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _mean(person: float, covered: float) -> float | None:
    return person / covered if covered > 0 else None


def _group(rows: Rows) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    out: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        out.setdefault((row["camera"], row["region"]), []).append(row)
    return out


def _region_section(camera: str, region: str, hod: Rows, days: Rows, hours: Rows, charts: dict[str, Any],
                    n: int) -> str:
    """One region: people by hour of the day, day x hour, each day; each chart over its table."""
    by_hod: dict[int, tuple[float, float]] = {int(r["period"]): (r["person_seconds"], r["covered_seconds"])
                                              for r in hod}
    ordered = [r["period"] for r in days]
    cells: dict[str, list[float | None]] = {d: [None] * 24 for d in ordered}
    for row in hours:
        cells[row["period"][:10]][int(row["period"][11:13])] = _mean(row["person_seconds"], row["covered_seconds"])
    means = [_mean(*by_hod.get(h, (0.0, 0.0))) for h in range(24)]
    key = f"r{n}"
    charts[f"{key}h"] = {"kind": "bars", "unit": "people present on average", "labels": [f"{h:02d}" for h in range(24)],
                         "values": [round(m or 0.0, 3) for m in means]}
    charts[f"{key}m"] = {"kind": "heatmap", "rows": ordered,
                         "cells": [[None if v is None else round(v, 3) for v in cells[d]] for d in ordered]}
    scale, unit = (3600, "person-hours") if max((r["person_seconds"] for r in days), default=0) >= 7200 else (
        60, "person-minutes")
    charts[f"{key}d"] = {"kind": "bars", "unit": f"{unit} a day", "labels": [d[5:] for d in ordered],
                         "values": [round(r["person_seconds"] / scale, 3) for r in days]}
    hod_rows = "".join(
        f"<tr><td>{h:02d}:00</td>{_td(means[h], _fmt(means[h]))}{_h(by_hod.get(h, (0.0, 0.0))[0])}"
        f"{_h(by_hod.get(h, (0.0, 0.0))[1])}</tr>" for h in range(24))
    # Plain cells (their text is the figure): a year of a region is 8,760 of them.
    heat_rows = "".join(f"<tr><td class=l>{d}</td>" + "".join(f"<td>{_fmt(v)}</td>" for v in cells[d]) + "</tr>"
                        for d in ordered)
    day_rows = "".join(
        f"<tr><td class=l>{t['period']}</td>{_h(t['person_seconds'])}{_h(t['occupied_seconds'])}{_td(t['visits'])}"
        f"{_td(t['peak'])}{_h(t['covered_seconds'])}{_td(t['damaged_seconds'], _fmt1(t['damaged_seconds']))}</tr>"
        for t in days)
    name = f"{escape(camera)} · {escape(region)}"
    return (f'<section class="region" data-camera="{escape(camera)}" data-region="{escape(region)}">'
            f"<h2>{name}</h2>"
            f"<h3>People by hour of the day</h3>{canvas(f'{key}h')}"
            f'<table class="numbers hod"><tr><th>hour</th><th>people on average</th><th>person-time</th>'
            f"<th>recorded</th></tr>{hod_rows}</table>"
            f"<h3>Day × hour (people on average; grey: not recorded)</h3>{canvas(f'{key}m', 120)}"
            f'<details><summary>the numbers</summary><table class="numbers heat"><tr><th class=l>day</th>'
            + "".join(f"<th>{h:02d}</th>" for h in range(24)) + f"</tr>{heat_rows}</table></details>"
            f"<h3>Each day</h3>{canvas(f'{key}d')}"
            f'<details><summary>the numbers</summary><table class="numbers days"><tr><th class=l>day</th>'
            "<th>person-time</th><th>occupied</th><th>visits</th><th>peak</th><th>recorded</th>"
            f"<th>damaged s</th></tr>{day_rows}</table></details></section>")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _fmt1(v: float) -> str:
    return f"{v:.1f}"


def render(store: JobReader, wanted: PeopleQuery, throughput: Mapping[str, Any], *, title: str,
           generated: datetime) -> tuple[str, int]:
    """The whole page and the number of cameras in it, from the store (the commands' reader) and
    `report`'s throughput."""
    charts: dict[str, Any] = {}
    hourly = store.people(wanted, "hour")
    read = {"hour": hourly, "day": people.regroup(hourly, "day"), "hour_of_day": people.regroup(hourly, "hour_of_day")}
    summary = people.summarize(people.regroup(hourly, "total"), read["hour_of_day"])
    hod, days, hours = (_group(read[period]) for period in ("hour_of_day", "day", "hour"))
    counts = store.counts()
    rows = "".join(
        f"<tr><td class=l>{escape(r['camera'])}</td><td class=l>{escape(r['region'])}</td>"
        f"{_h(r['occupied_seconds'])}{_h(r['person_seconds'])}{_td(r['peak'])}{_td(r['visits'])}"
        f"<td>{escape(r['busiest_hour'] or '-')}</td>{_h(r['covered_seconds'])}"
        f"{_td(r['damaged_seconds'], _fmt1(r['damaged_seconds']))}</tr>" for r in summary)
    total = throughput["total"]
    health = "".join(f"<tr><td class=l>{escape(state)}</td>{_td(counts.get(state, 0))}</tr>"
                     for state in ("done", "queued", "running", "failed", "dead"))
    damaged = (f'<p class="{"bad" if total["damaged_videos"] else "ok"}">{total["damaged_videos"]} recording(s) '
               f'done with damage ({total["damaged_seconds"]:.1f} s undecodable); {counts.get("dead", 0)} given up '
               "on.</p>")
    sections = "".join(_region_section(camera, region, hod[(camera, region)], days[(camera, region)],
                                       hours[(camera, region)], charts, n)
                       for n, (camera, region) in enumerate(sorted(days)))
    all_days = sorted({r["period"] for group in days.values() for r in group})
    span = f"recorded {all_days[0]} to {all_days[-1]}" if all_days else "nothing recorded yet"
    body = (f"<h1>{escape(title)}</h1><p class=muted>{escape(span)} · made {generated:%Y-%m-%d %H:%M}</p>"
            + ("<p>No people recorded yet: done recordings with a recording time add them.</p>" if not summary else
               '<h2>Every camera and region</h2><table class="numbers summary"><tr><th class=l>camera</th>'
               "<th class=l>region</th><th>occupied</th><th>person-time</th><th>peak</th><th>visits</th>"
               f"<th>busiest hour</th><th>recorded</th><th>damaged s</th></tr>{rows}</table>")
            + sections
            + f'<h2>Processing</h2>{damaged}<table class="numbers health"><tr><th class=l>jobs</th><th>count</th>'
            f"</tr>{health}</table><p class=muted>{total['videos']} recordings done, "
            f"{total['video_hours']:.2f} video-hours in {total['processing_hours']:.2f} hours of processing.</p>")
    return page(title, body, charts), len({camera for camera, _ in days})


def write(path: Path, store: JobReader, wanted: PeopleQuery, *, title: str = "People report") -> int:
    """Render the page from the store into `path` (complete or not at all); the number of cameras in it.
    OSError when it cannot be written."""
    import os

    from supervisor.observe.report import Finished, build_report

    throughput = build_report(Finished(*row) for row in store.finished_figures(None))
    text, cameras = render(store, wanted, throughput, title=title, generated=datetime.now())
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return cameras
