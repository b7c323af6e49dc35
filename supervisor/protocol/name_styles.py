"""The recorder naming styles the supervisor recognises, as data: one row per style, each with examples.

Recorders write the recording time into the path in many ways: in the file name, split between a date
folder and the file name, as a start and an end, with the camera in a folder of its own. Written as
code, every new style risked changing the answer for the styles before it. As rows of a table, a style
is one regular expression plus the paths it is meant to read and the answers it must give; the tests
read every example of every row, so a row cannot drift from what it documents, and the order of the
rows (the first that matches wins) is checked against every example.

A row's expression is matched against the whole path relative to the videos directory, with `/`
between components. Its named groups:

- `year` (or a two-digit `yy`), `month`, `day`, `hour`: the start; `minute` and `second` when named;
- `end_hour` (with `end_minute`, `end_second`, and optionally `end_year`/`end_yy`, `end_month`,
  `end_day`): the end. An end without a date that is earlier than the start crossed midnight;
- `camera`: the camera id. Without it the camera is the first path component, or for a bare file
  name the text before its time.

Times are read as written: local wall-clock time for every style here except Frigate, whose folders
are in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

# Digit classes tight enough that a camera number or a serial is not taken for a month or an hour.
_DIGITS = {
    "year": r"(?:19|20)\d\d", "yy": r"\d\d", "month": r"0[1-9]|1[0-2]", "day": r"0[1-9]|[12]\d|3[01]",
    "hour": r"[01]\d|2[0-3]", "minute": r"[0-5]\d", "second": r"[0-5]\d",
}
GROUPS = frozenset({"camera", *_DIGITS, *(f"end_{name}" for name in _DIGITS)})
START_GROUPS = ("year", "yy", "month", "day", "hour", "minute", "second")

_DIRS = r"(?:[^/]+/)*"  # any folders above
_NAME_PREFIX = r"(?:[^/]*?[_\- .])?"  # text before a time in a name, ending at a separator
_DATE_SEP = r"[-_.]?"
_TIME_SEP = r"[-_.:]?"
_STAMP_SEP = r"[ T_.-]?"  # between a date and its time
_SPAN_SEP = r"(?:[_~ ]|--?)"  # between a start and an end


def _g(name: str) -> str:
    return f"(?P<{name}>{_DIGITS[name.removeprefix('end_')]})"


def _date(sep: str = "", end: str = "") -> str:
    return sep.join(_g(end + part) for part in ("year", "month", "day"))


def _time(sep: str = "", end: str = "") -> str:
    return sep.join(_g(end + part) for part in ("hour", "minute", "second"))


# A date and time written as one text, for a custom pattern's `timestamp` group.
STAMP_TEXT = re.compile(rf"(?<![0-9]){_date(_DATE_SEP)}{_STAMP_SEP}{_time(_TIME_SEP)}")
CLOCK_TEXT = re.compile(rf"(?<![0-9]){_time(_TIME_SEP)}(?![0-9])")


@dataclass(frozen=True, slots=True)
class Example:
    """A path relative to the videos directory and what the table must read from it."""

    path: str
    camera: str | None
    start: datetime | None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class NameStyle:
    name: str
    regex: re.Pattern[str]
    examples: tuple[Example, ...]
    source: str  # who writes paths like these

    def __post_init__(self) -> None:
        # A misspelt group would silently read nothing: refuse the row instead.
        unknown = set(self.regex.groupindex) - GROUPS
        if unknown:
            raise ValueError(f"name style {self.name!r}: unknown groups {sorted(unknown)}")
        if not self.examples:
            raise ValueError(f"name style {self.name!r}: at least one example is required")


# In order: the first row whose expression matches, with a valid start, wins. Vendor layouts first
# (they are specific), then the generic styles: a date and time in the file name (start and end before
# start only), then a date folder with the time in the file name.
STYLES: tuple[NameStyle, ...] = (
    NameStyle(
        "frigate",
        re.compile(rf"{_DIRS}{_date('-')}/{_g('hour')}/(?P<camera>[^/]+)/{_g('minute')}\.{_g('second')}\.\w+"),
        (Example("2025-11-14/14/front_door/30.05.mp4", "front_door", datetime(2025, 11, 14, 14, 30, 5)),
         Example("recordings/2025-11-14/23/driveway/59.58.mp4", "driveway", datetime(2025, 11, 14, 23, 59, 58))),
        "Frigate NVR: recordings/<date>/<hour>/<camera>/<MM.SS>.mp4, folder times in UTC",
    ),
    NameStyle(
        "dahua",
        re.compile(rf"{_DIRS}{_date('-')}/\d{{3}}/dav/\d\d/{_time('[.]')}-{_time('[.]', 'end_')}"
                   r"(?:\[[^/\]]*\])*\.\w+"),
        (Example("cam/2025-11-14/001/dav/14/14.27.00-14.42.00[M][0@0][0].mp4", "cam",
                 datetime(2025, 11, 14, 14, 27, 0), datetime(2025, 11, 14, 14, 42, 0)),
         Example("gate/2025-11-14/001/dav/23/23.55.00-00.10.00[R][0@0][0].dav", "gate",
                 datetime(2025, 11, 14, 23, 55, 0), datetime(2025, 11, 15, 0, 10, 0))),
        "Dahua and Amcrest cameras and NVRs (SD card, FTP, NAS): <date>/001/dav/<hour>/<start>-<end>[type]...",
    ),
    NameStyle(
        "reolink",
        re.compile(rf"{_DIRS}Rec[A-Z]\d\d_(?:DST)?{_date()}_{_time()}_{_time(end='end_')}"
                   r"(?:_[0-9A-Fa-f]+)*\.\w+"),
        (Example("cam/RecM01_20251114_143000_144500_6E2B1C_1A2B3C.mp4", "cam",
                 datetime(2025, 11, 14, 14, 30, 0), datetime(2025, 11, 14, 14, 45, 0)),
         Example("driveway/Mp4Record/2025-11-14/RecS03_20251114_235800_000300_6E2B1C_1A2B3C.mp4", "driveway",
                 datetime(2025, 11, 14, 23, 58, 0), datetime(2025, 11, 15, 0, 3, 0))),
        "Reolink cameras (SD card and FTP): Rec<stream><channel>_<date>_<start>_<end>_<ids>.mp4",
    ),
    NameStyle(
        "hikvision",
        re.compile(rf"{_DIRS}{_NAME_PREFIX}{_date()}{_time()}[_-]{_date(end='end_')}{_time(end='end_')}"
                   r"(?![0-9])[^/]*"),
        (Example("cam/ch01_20251114143000_20251114144500.mp4", "cam",
                 datetime(2025, 11, 14, 14, 30, 0), datetime(2025, 11, 14, 14, 45, 0)),
         Example("ch02_20251114235500_20251115001000.mp4", "ch02",
                 datetime(2025, 11, 14, 23, 55, 0), datetime(2025, 11, 15, 0, 10, 0)),
         Example("lobby/Lobby_ch1_main_20251114080000_20251114090000.mp4", "lobby",
                 datetime(2025, 11, 14, 8, 0, 0), datetime(2025, 11, 14, 9, 0, 0))),
        "Hikvision and HiLook NVR exports: <channel>_<start date+time>_<end date+time>.mp4",
    ),
    NameStyle(
        "synology",
        re.compile(rf"{_DIRS}[^/]+?-{_date()}-{_time()}-\d{{9,10}}\.\w+"),
        (Example("cam/Camera1-20251114-143000-1763127000.mp4", "cam", datetime(2025, 11, 14, 14, 30, 0)),
         Example("Camera1-20251114-143000-1763127000.mp4", "Camera1", datetime(2025, 11, 14, 14, 30, 0)),
         Example("Camera1/20251114PM/Camera1-20251114-143000-1763127000.mp4", "Camera1",
                 datetime(2025, 11, 14, 14, 30, 0))),
        "Synology Surveillance Station: <camera>-<date>-<time>-<unix time>.mp4",
    ),
    NameStyle(
        "blue-iris",
        re.compile(rf"{_DIRS}[^/]+?\.{_date()}_{_time()}(?:_\d+)?\.\w+"),
        (Example("cam/Cam1.20251114_143000.mp4", "cam", datetime(2025, 11, 14, 14, 30, 0)),
         Example("Cam1.20251114_143000.bvr", "Cam1", datetime(2025, 11, 14, 14, 30, 0))),
        "Blue Iris: <camera short name>.<date>_<time>.mp4 (its default &CAM.%Y%m%d_%H%M%S)",
    ),
    NameStyle(
        "axis",
        re.compile(rf"{_DIRS}{_date()}_{_time()}_[0-9A-Fa-f]{{4}}\.\w+"),
        (Example("cam/20251114/14/20251114_143000_1A2B.mkv", "cam", datetime(2025, 11, 14, 14, 30, 0)),
         Example("lobby/20251114/14/20251114_143000_1A2B_ACCC8E123456/20251114_14/20251114_143000_1A2B.mkv",
                 "lobby", datetime(2025, 11, 14, 14, 30, 0))),
        "Axis cameras (SD card, network share): <date>/<hour>/.../<date>_<time>_<id>.mkv",
    ),
    NameStyle(
        "xiaomi",
        re.compile(rf"{_DIRS}{_date()}{_g('hour')}/{_g('minute')}M{_g('second')}S(?:_\d+)?\.\w+"),
        (Example("cam/2025111414/30M05S_1763130605.mp4", "cam", datetime(2025, 11, 14, 14, 30, 5)),),
        "Xiaomi / Mi Home cameras (SD card): <date><hour>/<MM>M<SS>S_<unix time>.mp4",
    ),
    NameStyle(
        "wyze",
        re.compile(rf"{_DIRS}{_date()}/{_g('hour')}/{_g('minute')}\.\w+"),
        (Example("garage/record/20251114/14/30.mp4", "garage", datetime(2025, 11, 14, 14, 30, 0)),),
        "Wyze cameras (SD card): record/<date>/<hour>/<minute>.mp4, one file a minute",
    ),
    NameStyle(
        "name-span",
        re.compile(rf"{_DIRS}[^/]*?(?<![0-9]){_date(_DATE_SEP)}{_STAMP_SEP}{_time(_TIME_SEP)}{_SPAN_SEP}"
                   rf"(?:{_date(_DATE_SEP, 'end_')}{_STAMP_SEP})?{_time(_TIME_SEP, 'end_')}(?![0-9])[^/]*"),
        (Example("cam/cam_2025-11-14_14-30-00_14-45-00.mp4", "cam",
                 datetime(2025, 11, 14, 14, 30, 0), datetime(2025, 11, 14, 14, 45, 0)),
         Example("cam/20251114_143000-20251114_144500.mkv", "cam",
                 datetime(2025, 11, 14, 14, 30, 0), datetime(2025, 11, 14, 14, 45, 0)),
         Example("cam_7_20251114_235000_000500.mp4", "cam_7",
                 datetime(2025, 11, 14, 23, 50, 0), datetime(2025, 11, 15, 0, 5, 0))),
        "recorders and scripts that name a file by its date, start and end",
    ),
    NameStyle(
        "name-stamp",
        re.compile(rf"{_DIRS}[^/]*?(?<![0-9]){_date(_DATE_SEP)}{_STAMP_SEP}{_time(_TIME_SEP)}[^/]*"),
        (Example("camera_35/camera_35_20251114_143000.mp4", "camera_35", datetime(2025, 11, 14, 14, 30, 0)),
         Example("camera_35/20251114143000.mkv", "camera_35", datetime(2025, 11, 14, 14, 30, 0)),
         Example("camera_35_20251114_143000.mp4", "camera_35", datetime(2025, 11, 14, 14, 30, 0)),
         Example("front door/2025-11-14_14-30-05.ts", "front door", datetime(2025, 11, 14, 14, 30, 5)),
         Example("cam-2_2025-11-14_14-30-00.mkv", "cam-2", datetime(2025, 11, 14, 14, 30, 0)),
         Example("yard/2025-11-14T14-30-00.mp4", "yard", datetime(2025, 11, 14, 14, 30, 0)),
         Example("door/1_2025-11-14_14-30-00_586.mp4", "door", datetime(2025, 11, 14, 14, 30, 0))),
        "most recorders and scripts (ffmpeg -strftime, Shinobi, Agent DVR, Foscam): the date and time in the name",
    ),
    NameStyle(
        "date-folder-span",
        re.compile(rf"{_DIRS}{_date(_DATE_SEP)}/{_DIRS}{_NAME_PREFIX}{_time(_TIME_SEP)}{_SPAN_SEP}"
                   rf"{_time(_TIME_SEP, 'end_')}(?![0-9])[^/]*"),
        (Example("camera_37/2025-11-14/14-30-00_14-45-00.mp4", "camera_37",
                 datetime(2025, 11, 14, 14, 30, 0), datetime(2025, 11, 14, 14, 45, 0)),
         Example("camera_37/20251114/143000-144500.mp4", "camera_37",
                 datetime(2025, 11, 14, 14, 30, 0), datetime(2025, 11, 14, 14, 45, 0)),
         Example("camera_37/2025-11-14/23-50-00_00-05-00.mp4", "camera_37",
                 datetime(2025, 11, 14, 23, 50, 0), datetime(2025, 11, 15, 0, 5, 0))),
        "a folder a day, one file per recording named by its start and end",
    ),
    NameStyle(
        "date-folder",
        re.compile(rf"{_DIRS}{_date(_DATE_SEP)}/{_DIRS}{_NAME_PREFIX}{_time(_TIME_SEP)}[^/]*"),
        (Example("camera_22/2025-11-14/14-30-00.mp4", "camera_22", datetime(2025, 11, 14, 14, 30, 0)),
         Example("camera_22/20251114/143000.avi", "camera_22", datetime(2025, 11, 14, 14, 30, 0)),
         Example("camera_22/2025-11-14/cam_14-30-00.mp4", "camera_22", datetime(2025, 11, 14, 14, 30, 0))),
        "a folder a day, files named by their start (motionEye's default %Y-%m-%d/%H-%M-%S)",
    ),
)
