"""The naming table reads every example it documents, in the order it is tried; the worker gets both
times as one ISO 8601 interval, read again from the path."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.config import ConfigError, Settings, validate
from supervisor.jobs.model import Job, JobState
from supervisor.process.command import worker_argv
from supervisor.protocol.name_styles import STYLES, Example, NameStyle
from supervisor.protocol.names import PathParser, format_recorded, parse_recorded, read_style

EXAMPLES = [pytest.param(i, ex, id=f"{style.name}:{ex.path}")
            for i, style in enumerate(STYLES) for ex in style.examples]


def test_every_row_has_a_unique_name():
    names = [style.name for style in STYLES]
    assert len(names) == len(set(names)) and "" not in names and "custom" not in names


@pytest.mark.parametrize(("index", "example"), EXAMPLES)
def test_every_example_reads_as_its_row_says(index, example):
    style = STYLES[index]
    got = PathParser().read(Path(example.path))
    assert (got.camera, got.start, got.end) == (example.camera, example.start, example.end)
    assert got.style == style.name  # read by its own row: the first-match order is right
    assert PathParser().parse(Path(example.path)) == (example.camera, example.start)


@pytest.mark.parametrize(("index", "example"), EXAMPLES)
def test_no_earlier_row_claims_an_example(index, example):
    claimed = {s.name: read_style(s, Path(example.path)) for s in STYLES[:index]}
    assert {name: found for name, found in claimed.items() if found is not None} == {}


@pytest.mark.parametrize(("rel", "camera", "start", "end"), [
    ("camera_37/2025-11-14/14-30-00_14-45-00.mp4", "camera_37",
     datetime(2025, 11, 14, 14, 30), datetime(2025, 11, 14, 14, 45)),
    ("camera_37/20251114/143000-144500.mp4", "camera_37",
     datetime(2025, 11, 14, 14, 30), datetime(2025, 11, 14, 14, 45)),
    ("cam/2025-11-14/001/dav/14/14.27.00-14.42.00[M][0@0][0].mp4", "cam",
     datetime(2025, 11, 14, 14, 27), datetime(2025, 11, 14, 14, 42)),
    ("cam/RecM01_20251114_143000_144500_6E2B1C_1A2B3C.mp4", "cam",
     datetime(2025, 11, 14, 14, 30), datetime(2025, 11, 14, 14, 45)),
    ("2025-11-14/14/front_door/30.05.mp4", "front_door", datetime(2025, 11, 14, 14, 30, 5), None),
    ("camera_9/clip.mov", "camera_9", None, None),
])
def test_start_and_end_of_the_named_layouts(rel, camera, start, end):
    got = PathParser().read(Path(rel))
    assert (got.camera, got.start, got.end) == (camera, start, end)


def test_an_end_before_the_start_crossed_midnight():
    got = PathParser().read(Path("camera_37/2025-11-14/23-50-00_00-05-00.mp4"))
    assert got.start == datetime(2025, 11, 14, 23, 50) and got.end == datetime(2025, 11, 15, 0, 5)
    # With its own date, an end before the start is not a crossing: the start alone is kept.
    got = PathParser().read(Path("cam/ch01_20251114143000_20251113144500.mp4"))
    assert got.start == datetime(2025, 11, 14, 14, 30) and got.end is None


@pytest.mark.parametrize("rel", ["cam/cam_20250230_143000.mp4", "2025-02-30/14/front_door/30.05.mp4",
                                 "cam/ch01_20250230143000_20251114144500.mp4"])
def test_an_impossible_date_gives_no_time(rel):
    got = PathParser().read(Path(rel))
    assert (got.start, got.end, got.style) == (None, None, "")


def test_an_impossible_end_date_gives_no_end():
    got = PathParser().read(Path("cam/cam_20251114_143000-20250231_144500.mp4"))
    assert (got.start, got.end, got.style) == (datetime(2025, 11, 14, 14, 30), None, "name-span")


def test_nothing_matched_keeps_the_folder_as_camera():
    got = PathParser().read(Path("camera_9/clip.mov"))
    assert (got.camera, got.start, got.end, got.style) == ("camera_9", None, None, "")


def test_a_row_with_an_unknown_group_or_no_example_is_refused():
    example = (Example("x/20251114.mp4", "x", datetime(2025, 11, 14)),)
    with pytest.raises(ValueError, match="unknown groups"):
        NameStyle("bad", re.compile(r"(?P<yaer>\d{4})"), example, "nobody")
    with pytest.raises(ValueError, match="at least one example"):
        NameStyle("bad", re.compile(r"(?P<year>\d{4})"), (), "nobody")


def test_a_custom_pattern_with_end_groups():
    parser = PathParser(r"(?P<camera>[^/]+)/(?P<year>\d{4})(?P<month>\d\d)(?P<day>\d\d)/"
                        r"(?P<hour>\d\d)(?P<minute>\d\d)(?P<second>\d\d)\+(?P<end_hour>\d\d)(?P<end_minute>\d\d)"
                        r"(?P<end_second>\d\d)")
    got = parser.read(Path("gate/20251114/233000+001500.mp4"))
    assert got == replace(got, camera="gate", start=datetime(2025, 11, 14, 23, 30),
                          end=datetime(2025, 11, 15, 0, 15), style="custom")
    assert parser.parse(Path("gate/20251114/233000+001500.mp4")) == ("gate", datetime(2025, 11, 14, 23, 30))
    assert parser.read(Path("gate/clip.mp4")).style == ""


def test_a_custom_pattern_with_timestamp_groups():
    parser = PathParser(r"(?P<camera>cam\d+)-(?P<timestamp>\d{14})-(?P<end_timestamp>\d{14}|\d{6})")
    got = parser.read(Path("site/cam7-20251114080910-081500.mp4"))
    assert (got.camera, got.start, got.end) == ("cam7", datetime(2025, 11, 14, 8, 9, 10), datetime(2025, 11, 14, 8, 15))
    got = parser.read(Path("site/cam7-20251114235910-20251115001500.mp4"))
    assert got.end == datetime(2025, 11, 15, 0, 15)


def test_a_custom_pattern_needs_a_whole_end_time():
    s = replace(Settings(), discovery=replace(Settings().discovery, pattern=r"(?P<camera>\w+)/(?P<timestamp>\d{14})"
                                              r"_(?P<end_hour>\d\d)"))
    with pytest.raises(ConfigError, match="end_hour, end_minute, end_second"):
        validate(s)


@pytest.mark.parametrize("rel", ["../x.mp4", "../../etc/20251114100000.mp4"])
def test_odd_camera_ids_are_refused(rel):
    assert PathParser(r"(?P<camera>.*)/").read(Path(rel)).camera is None
    assert PathParser(r"(?P<camera>.+)/(?P<timestamp>\d{14})").read(Path(rel)).camera is None
    assert PathParser().read(Path("../2025-11-14/14/../30.05.mp4")).camera is None  # Frigate's camera group
    assert PathParser().read(Path("./x_20251114_143000.mp4")).camera == "x"


@pytest.mark.parametrize(("start", "end", "text"), [
    (datetime(2025, 11, 14, 14, 30), datetime(2025, 11, 14, 14, 45), "2025-11-14T14:30:00/2025-11-14T14:45:00"),
    (datetime(2025, 11, 14, 23, 50), datetime(2025, 11, 15, 0, 5), "2025-11-14T23:50:00/2025-11-15T00:05:00"),
    (datetime(2025, 11, 14, 14, 30), None, "2025-11-14T14:30:00"),
    (None, None, ""),
    (datetime(2025, 11, 14, 14, 30, tzinfo=UTC), datetime(2025, 11, 14, 15, tzinfo=UTC),
     "2025-11-14T14:30:00+00:00/2025-11-14T15:00:00+00:00"),
])
def test_recorded_text_round_trips(start, end, text):
    assert format_recorded(start, end) == text
    assert parse_recorded(text) == (start, end)


def test_every_example_round_trips_through_the_recorded_text():
    for style in STYLES:
        for ex in style.examples:
            assert parse_recorded(format_recorded(ex.start, ex.end)) == (ex.start, ex.end)


@pytest.mark.parametrize(("text", "message"), [
    ("yesterday", "'yesterday' is not a date and time"),
    ("2025-11-14T14:30:00/", "'' is not a date and time"),
    ("2025-11-14T14:30:00/later", "'later' is not a date and time"),
    ("2025-11-14T14:30:00/2025-11-14T14:45:00/2025-11-14T15:00:00", "more than one '/'"),
    ("2025-11-14T14:30:00/2025-11-14T14:00:00", "the end is before the start"),
    ("2025-11-14T14:30:00+00:00/2025-11-14T15:00:00", "both have a UTC offset or neither"),
])
def test_malformed_recorded_text_is_refused_clearly(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_recorded(text)


def test_an_end_before_the_start_cannot_be_written():
    with pytest.raises(ValueError, match="before it starts"):
        format_recorded(datetime(2025, 11, 14, 14, 30), datetime(2025, 11, 14, 14))


def _job(path: Path, recorded_at: datetime) -> Job:
    return Job(id=1, camera="cam", path=path, recorded_at=recorded_at, size=1, mtime=0.0, state=JobState.RUNNING,
               attempts=1, last_error=None, last_exit_code=None, discovered_at=0.0, not_before=None,
               started_at=None, finished_at=None, duration_seconds=None, output=None, video_seconds=None)


def _recorded_arg(settings: Settings, job: Job) -> str:
    [arg] = [a for a in worker_argv(settings, job, Path("/out")) if a.startswith("--recorded-at=")]
    return arg.removeprefix("--recorded-at=")


@pytest.mark.parametrize(("rel", "expected"), [
    ("camera_37/2025-11-14/14-30-00_14-45-00.mp4", "2025-11-14T14:30:00/2025-11-14T14:45:00"),
    ("camera_35/camera_35_20251114_143000.mp4", "2025-11-14T14:30:00"),
    ("camera_9/clip.mov", ""),  # the job's time is the file's mtime: the worker works the start out itself
])
def test_the_worker_gets_both_times_read_from_the_path(tmp_path, rel, expected):
    settings = replace(Settings(), videos_dir=tmp_path / "videos")
    job = _job(settings.videos_dir / rel, datetime(2025, 11, 14, 15, 0))
    assert _recorded_arg(settings, job) == expected


def test_the_worker_gets_times_by_the_custom_pattern(tmp_path):
    pattern = (r"(?P<camera>[^/]+)/(?P<timestamp>\d{14})-(?P<end_hour>\d\d)(?P<end_minute>\d\d)"
               r"(?P<end_second>\d\d)")
    settings = replace(Settings(), videos_dir=tmp_path / "videos",
                       discovery=replace(Settings().discovery, pattern=pattern))
    job = _job(settings.videos_dir / "gate" / "20251114233000-000500.mp4", datetime(2025, 11, 14, 23, 30))
    assert _recorded_arg(settings, job) == "2025-11-14T23:30:00/2025-11-15T00:05:00"


def test_a_path_outside_the_videos_directory_gets_no_time(tmp_path):
    settings = replace(Settings(), videos_dir=tmp_path / "videos")
    job = _job(tmp_path / "elsewhere" / "cam_20251114_143000.mp4", datetime(2025, 11, 14, 14, 30))
    assert _recorded_arg(settings, job) == ""


def test_midnight_examples_are_in_the_table():
    # The crossing is documented by examples, not only by this file.
    crossings = [ex for style in STYLES for ex in style.examples
                 if ex.start and ex.end and ex.end.date() > ex.start.date()]
    assert len(crossings) >= 3
    assert all(timedelta(0) < ex.end - ex.start < timedelta(days=1) for ex in crossings if ex.end and ex.start)
