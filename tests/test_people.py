"""People by camera, region and hour: split at the hours, kept with the job done (both engines), reported.

The store's rows are checked against the recordings' own summary.json files, which
are checked against the scenes' truth in test_recorder_formats.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from supervisor.jobs.model import READY_STATES
from supervisor.jobs.people import PeopleQuery
from supervisor.jobs.sqlite_store import JobStore
from supervisor.observe import people
from supervisor.protocol.hours import HourBuckets, HourRow, rows_from_results
from tests import browser
from tests.fakes import REPO, cli, cli_env
from tests.test_store_contract import video
from workers.scenes import Actor, encode_scene


def test_stretches_are_split_at_the_hours_end() -> None:
    buckets = HourBuckets(datetime(2025, 11, 14, 13, 59, 50), ["door"])
    buckets.sample(0.0, 15.0, [2])  # 13:59:50 to 14:00:05
    buckets.interval("door", 5.0, 20.0)  # 13:59:55 to 14:00:10
    buckets.damage(8.0, 12.0)
    first, second = buckets.rows()
    assert (first.hour, second.hour) == ("2025-11-14T13:00", "2025-11-14T14:00")
    assert (first.covered_seconds, first.person_seconds, first.peak) == (10.0, 20.0, 2)
    assert (second.covered_seconds, second.person_seconds, second.peak) == (5.0, 10.0, 0)
    assert (first.occupied_seconds, first.visits, second.occupied_seconds, second.visits) == (5.0, 1, 10.0, 0)
    assert (first.damaged_seconds, second.damaged_seconds) == (2.0, 2.0)


def test_results_from_before_hours_were_kept_are_rebuilt_as_those_workers_counted() -> None:
    summary = {"recorded_at": "2025-11-14T10:59:59", "processed_seconds": 2.2, "settings": {"sample_fps": 2.0},
               "regions": {"left": {}, "right": {}}, "damage": {"spans": []}}
    counts = "video_time_s,recorded_time,left,right\n0.000,,1,0\n0.500,,1,2\n1.000,,0,2\n1.500,,0,0\n2.000,,0,1\n"
    rows = rows_from_results(summary, counts, [{"region": "left", "start": 0.0, "end": 1.0}])
    per_region = {r: sum(x.person_seconds for x in rows if x.region == r) for r in ("left", "right")}
    assert per_region == {"left": pytest.approx(1.0), "right": pytest.approx(2.5)}  # their summary's totals
    assert [x.hour for x in rows if x.region == "left"] == ["2025-11-14T10:00", "2025-11-14T11:00"]
    assert rows_from_results({**summary, "recorded_at": None}, counts, []) == []


def _row(region: str, hour: str, person: float, peak: int = 1) -> HourRow:
    return HourRow(region, hour, covered_seconds=600.0, occupied_seconds=person, person_seconds=person, peak=peak,
                   visits=1)


@pytest.fixture(params=["sqlite", "postgres"])
def store_pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, Any]:
    """(open the scheduler's engine, open the commands' reader) on one store of each engine."""
    from supervisor.jobs.connect import open_reader
    from supervisor.jobs.postgres import PostgresEngine
    from supervisor.jobs.sqlite_engine import SqliteEngine

    if request.param == "sqlite":
        async def open_sqlite() -> Any:
            return SqliteEngine.open(tmp_path / "jobs.db")
        return open_sqlite, lambda: open_reader(tmp_path / "jobs.db")
    url = request.getfixturevalue("pg_url")

    async def open_pg() -> Any:
        return await PostgresEngine.open(url)
    return open_pg, lambda: open_reader(url)


def test_rows_are_kept_with_the_done_record_once_replaced_by_a_redo_and_fenced(store_pair: Any) -> None:
    open_engine, open_reader = store_pair

    async def main() -> tuple[Any, ...]:
        e = await open_engine()
        [a, b] = (await e.sync([video("a.mp4", 1), video("b.mp4", 2, camera="bar")], reprocess=False, now=1.0,
                               duration=0)).new
        ja = await e.claim(a, now=2.0)
        stale = await e.mark_done(a, token=ja.claim_token + 1, now=3.0, duration=1.0, output=None,
                                  video_seconds=10.0, covered_seconds=None, damaged_seconds=0.0,
                                  hours=[_row("door", "2025-11-14T10:00", 99.0)])
        done = await e.mark_done(a, token=ja.claim_token, now=3.0, duration=1.0, output=None, video_seconds=10.0,
                                 covered_seconds=None, damaged_seconds=0.0,
                                 hours=[_row("door", "2025-11-14T10:00", 5.0), _row("door", "2025-11-14T11:00", 7.0)])
        jb = await e.claim(b, now=4.0)
        await e.mark_done(b, token=jb.claim_token, now=5.0, duration=1.0, output=None, video_seconds=10.0,
                          covered_seconds=None, damaged_seconds=0.0, hours=[_row("door", "2025-11-14T10:00", 3.0, 4)])
        missing = await e.without_people()
        # Done again (the file changed): its rows replace the first attempt's.
        await e.sync([video("a.mp4", 1, size=200)], reprocess=False, now=6.0, duration=0)
        [again] = [j for j in await e.jobs(READY_STATES) if j.id == a]
        j2 = await e.claim(again.id, now=7.0)
        await e.mark_done(a, token=j2.claim_token, now=8.0, duration=1.0, output=None, video_seconds=10.0,
                          covered_seconds=None, damaged_seconds=0.0, hours=[_row("door", "2025-11-14T10:00", 6.0)])
        await e.close()
        return stale, done, missing

    stale, done, missing = asyncio.run(main())
    assert (stale, done, missing) == (False, True, [])
    reader = open_reader()
    try:
        rows = reader.people(PeopleQuery())
        only_bar = reader.people(PeopleQuery(cameras=("bar",)))
        from_eleven = reader.people(PeopleQuery(start="2025-11-14T11:00"))
        days = reader.people(PeopleQuery(), "day")
        totals = people.summary(reader, PeopleQuery())
    finally:
        reader.close()
    assert [(r["camera"], r["period"], r["person_seconds"], r["peak"]) for r in rows] == [
        ("bar", "2025-11-14T10:00", 3.0, 4), ("cam", "2025-11-14T10:00", 6.0, 1)]
    assert [r["camera"] for r in only_bar] == ["bar"] and from_eleven == []
    assert [(r["camera"], r["period"], r["visits"], r["days"]) for r in days] == [
        ("bar", "2025-11-14", 1, 1), ("cam", "2025-11-14", 1, 1)]
    assert [(r["camera"], r["person_seconds"], r["busiest_hour"], r["days"]) for r in totals] == [
        ("bar", 3.0, "10:00", 1), ("cam", 6.0, "10:00", 1)]


def test_weekday_hours_sum_every_week_and_dates_are_read_whole_days() -> None:
    def hour(period: str, person: float, covered: float, peak: int, visits: int) -> dict[str, Any]:
        return {"camera": "c", "region": "door", "period": period, "covered_seconds": covered,
                "occupied_seconds": person / 2, "person_seconds": person, "peak": peak, "visits": visits,
                "damaged_seconds": 0.0, "days": 1}

    fridays = people.weekday_hours([hour("2025-11-14T12:00", 5400.0, 3600.0, 3, 4),
                                    hour("2025-11-14T13:00", 600.0, 3600.0, 1, 1),
                                    hour("2025-11-21T12:00", 900.0, 1800.0, 2, 2)])
    assert [(r["period"], r["person_seconds"], r["covered_seconds"], r["peak"], r["visits"]) for r in fridays] == [
        ("Fri 12:00", 6300.0, 5400.0, 3, 6), ("Fri 13:00", 600.0, 3600.0, 1, 1)]
    assert people.query("2025-11-14", "2025-11-14") == PeopleQuery("2025-11-14T00:00", "2025-11-15T00:00")
    assert people.query("2025-11-14T12:00", "2025-11-14T14:00") == PeopleQuery("2025-11-14T12:00",
                                                                                  "2025-11-14T14:00")
    with pytest.raises(ValueError, match="not a date"):
        people.query("Friday", None)


@pytest.mark.timeout(600)
def test_a_run_puts_each_recordings_hours_in_the_store_and_report_shows_them(tmp_path: Path) -> None:
    """The real worker on two recordings across an hour's end; `report` against their summary.json files."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("the ffmpeg tool is missing: `make test` installs it (Debian: ffmpeg)")
    videos = tmp_path / "videos"
    made = [encode_scene(videos / "counter" / "counter_20251114_125956.mp4", (Actor("man", 0.2, 1.0, 7.0),),
                         seconds=8),
            encode_scene(videos / "door" / "door_20251114_130001.mp4", (Actor("man", 0.6, 0.0, 4.0),), seconds=5)]
    for v in made:
        os.utime(v, (time.time() - 3600, time.time() - 3600))
    common = ("--state-db", str(tmp_path / "jobs.db"))
    run = subprocess.run(cli("--videos-dir", str(videos), "--output-dir", str(tmp_path / "out"), "--log-dir",
                             str(tmp_path / "logs"), *common), capture_output=True, text=True, env=cli_env(),
                         cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    summaries = [json.loads((tmp_path / "out" / v.relative_to(videos) / "summary.json").read_text()) for v in made]
    report = subprocess.run(cli("report", "--by", "hour", "--json", *common), capture_output=True, text=True,
                            env=cli_env(), cwd=REPO, timeout=60)
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    assert {(r["camera"], r["period"]) for r in rows} == {
        ("counter", "2025-11-14T12:00"), ("counter", "2025-11-14T13:00"), ("door", "2025-11-14T13:00")}
    for s in summaries:
        mine = [r for r in rows if r["camera"] == s["camera"]]
        assert sum(r["person_seconds"] for r in mine) == pytest.approx(s["regions"]["frame"]["person_seconds"])
        assert sum(r["occupied_seconds"] for r in mine) == pytest.approx(s["regions"]["frame"]["occupied_seconds"])
        assert sum(r["covered_seconds"] for r in mine) == pytest.approx(s["processed_seconds"], abs=0.01)
        assert max(r["peak"] for r in mine) == s["regions"]["frame"]["peak_count"]
    as_csv = subprocess.run(cli("report", "--by", "hour", "--csv", *common), capture_output=True, text=True,
                            env=cli_env(), cwd=REPO, timeout=60)
    assert as_csv.stdout.splitlines()[0] == ",".join(people.COLUMNS) and len(as_csv.stdout.splitlines()) == 4
    table = subprocess.run(cli("report", *common, "--cameras", "counter"), capture_output=True, text=True,
                           env=cli_env(), cwd=REPO, timeout=60)
    assert table.returncode == 0 and "people" in table.stdout
    [line] = [ln for ln in table.stdout.splitlines() if ln.startswith("counter ")][-1:]
    assert "frame" in line and (" 12:00 " in line or " 13:00 " in line)  # the busiest hour of the day

    # The page a manager opens, in a real browser with no network: charts drawn, no console error, and its
    # numbers those of the store and of the recordings' own summaries.
    page_file = tmp_path / "people.html"
    made_page = subprocess.run(cli("report", "--html", str(page_file), *common), capture_output=True, text=True,
                               env=cli_env(), cwd=REPO, timeout=60)
    assert made_page.returncode == 0 and str(page_file) in made_page.stdout, made_page.stderr
    assert "http://" not in page_file.read_text() and "https://" not in page_file.read_text()
    page = browser.open_page(page_file.as_uri(), tmp_path / "people.png", offline=True)
    assert page.errors == [] and browser.chart_pixels(page.screenshot) > 2000
    found = browser.tables(page.dom)
    for s in summaries:
        [summary_row] = [r for r in found[("", "", "summary")] if r[0] == s["camera"]]
        totals = s["regions"]["frame"]
        assert float(summary_row[3]) == pytest.approx(totals["person_seconds"] / 3600, abs=1e-3)
        assert float(summary_row[2]) == pytest.approx(totals["occupied_seconds"] / 3600, abs=1e-3)
        assert int(summary_row[4]) == totals["peak_count"]
        days = found[(s["camera"], "frame", "days")]
        assert sum(float(r[1]) for r in days) == pytest.approx(totals["person_seconds"] / 3600, abs=1e-3)
        by_hour = found[(s["camera"], "frame", "hod")]
        assert sum(float(r[2]) for r in by_hour) == pytest.approx(totals["person_seconds"] / 3600, abs=1e-3)
    assert [int(r[1]) for r in found[("", "", "health")] if r[0] == "done"] == [2]

    # A store kept before people were: the rows go, the jobs stay done; the next start fills them in again.
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        conn.execute("DELETE FROM people")
        conn.execute("UPDATE jobs SET people_recorded = 0")
    for folder in (tmp_path / "out").rglob("summary.json"):  # and their summaries from before hours were kept
        s = json.loads(folder.read_text())
        del s["hours"]
        folder.write_text(json.dumps(s))
    again = subprocess.run(cli("--videos-dir", str(videos), "--output-dir", str(tmp_path / "out"), "--log-dir",
                               str(tmp_path / "logs"), *common), capture_output=True, text=True, env=cli_env(),
                           cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stderr
    logged = [json.loads(ln) for f in (tmp_path / "logs").glob("processing_*.log") for ln in f.read_text().splitlines()]
    assert [e["jobs"] for e in logged if e["event"] == "people_filled"] == [2]
    store = JobStore.open(tmp_path / "jobs.db", readonly=True)
    try:
        refilled = store.people(PeopleQuery())
    finally:
        store.close()
    assert {(r["camera"], r["period"]) for r in refilled} == {(r["camera"], r["period"]) for r in rows}
    for s in summaries:
        mine = [r for r in refilled if r["camera"] == s["camera"]]
        assert sum(r["person_seconds"] for r in mine) == pytest.approx(
            s["regions"]["frame"]["person_seconds"], abs=0.5)  # rebuilt at one sample period a sample
