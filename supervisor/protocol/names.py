"""Recording names: the camera id and the recording's start and end read from a path under the videos folder.

Shared by the supervisor (discovery, the worker's arguments) and the worker (wall-clock times in its
results). The naming styles themselves are data (name_styles.py); this module applies them, reads a
user's own pattern, and writes the two times as one ISO 8601 interval so that they travel to the worker
as a single argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from supervisor.protocol.name_styles import CLOCK_TEXT, STAMP_TEXT, START_GROUPS, STYLES, NameStyle

CUSTOM = "custom"  # NamedTimes.style of a user's pattern

_Groups = Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class NamedTimes:
    """What a path says: its camera, when the recording started and ended, and the style that read it
    (a row of the table, "custom" for the settings' pattern, "" when none matched)."""

    camera: str | None
    start: datetime | None
    end: datetime | None
    style: str


def safe_camera_id(name: str) -> str | None:
    """A camera id usable as one path component, or None when it is not."""
    name = name.strip()
    if not name or name in (".", "..") or "/" in name or "\0" in name or "\n" in name:
        return None
    return name


def _day(groups: _Groups, prefix: str) -> date | None:
    year, yy = groups.get(prefix + "year"), groups.get(prefix + "yy")
    if year is None and yy is None:
        return None
    try:
        return date(int(year) if year is not None else 2000 + int(yy or ""),
                    int(groups.get(prefix + "month") or ""), int(groups.get(prefix + "day") or ""))
    except ValueError:
        return None


def _clock(groups: _Groups, prefix: str) -> time | None:
    hour = groups.get(prefix + "hour")
    if hour is None:
        return None
    try:
        return time(int(hour), int(groups.get(prefix + "minute") or 0), int(groups.get(prefix + "second") or 0))
    except ValueError:
        return None


def times_from_groups(groups: _Groups) -> tuple[datetime | None, datetime | None]:
    """Start and end from named groups (see name_styles.py); (None, None) without a valid start."""
    day, clock = _day(groups, ""), _clock(groups, "")
    if day is None or clock is None:
        return None, None
    start = datetime.combine(day, clock)
    end_clock = _clock(groups, "end_")
    if end_clock is None:
        return start, None
    if groups.get("end_year") is not None or groups.get("end_yy") is not None:
        end_day = _day(groups, "end_")
        end = datetime.combine(end_day, end_clock) if end_day is not None else None
        # An impossible end date, or one before the start, is a name that contradicts itself: keep the start.
        return start, (end if end is not None and end >= start else None)
    end = datetime.combine(day, end_clock)
    if end < start:  # the recording crossed midnight
        end += timedelta(days=1)
    return start, end


def _plain_camera(rel: Path) -> str | None:
    """The camera of a path whose name says nothing of it: its first folder, or a bare name's first word."""
    if len(rel.parts) > 1:
        return rel.parts[0]
    return rel.stem.split("_")[0] if "_" in rel.stem else None


def _name_camera(m: re.Match[str], rel: Path) -> str | None:
    """The camera of a match whose style names none: the first folder, or the text before the time."""
    starts = [m.start(g) for g in START_GROUPS if g in m.re.groupindex and m.start(g) >= 0]
    if len(rel.parts) == 1 and starts:
        prefix = m.string[: min(starts)].rstrip("_-. ")
        if prefix:
            return prefix
    return _plain_camera(rel)


def read_style(style: NameStyle, rel: Path) -> NamedTimes | None:
    """What one row of the table reads from `rel`, or None when it does not apply."""
    m = style.regex.fullmatch(rel.as_posix())
    if m is None:
        return None
    start, end = times_from_groups(m.groupdict())
    if start is None:  # matched the shape, not a real date: let a later row try
        return None
    camera = m.group("camera") if "camera" in m.re.groupindex else _name_camera(m, rel)
    return NamedTimes(safe_camera_id(camera) if camera else None, start, end, style.name)


def _stamp_groups(text: str, prefix: str) -> dict[str, str | None]:
    m = STAMP_TEXT.fullmatch(text) or STAMP_TEXT.search(text)
    if m is None and prefix:
        m = CLOCK_TEXT.search(text)  # an end written as a time of day only
    return {prefix + k: v for k, v in m.groupdict().items()} if m else {}


@dataclass(frozen=True, slots=True)
class PathParser:
    """Reads camera id and recording times from a path relative to the videos directory: by the settings'
    `discovery.pattern` when there is one, else by the first row of the naming table that matches."""

    pattern: str = ""

    def read(self, rel: Path) -> NamedTimes:
        if self.pattern:
            return self._read_custom(rel)
        for style in STYLES:
            found = read_style(style, rel)
            if found is not None:
                return found
        camera = _plain_camera(rel)  # no time anywhere, yet the path may still name its camera
        return NamedTimes(safe_camera_id(camera) if camera else None, None, None, "")

    def parse(self, rel: Path) -> tuple[str | None, datetime | None]:
        """(camera, start): the part of read() that discovery needs."""
        named = self.read(rel)
        return named.camera, named.start

    def _read_custom(self, rel: Path) -> NamedTimes:
        m = re.search(self.pattern, rel.as_posix())
        if not m:
            return NamedTimes(None, None, None, "")
        groups: dict[str, str | None] = m.groupdict()
        if groups.get("timestamp"):
            groups.update(_stamp_groups(groups["timestamp"] or "", ""))
        if groups.get("end_timestamp"):
            groups.update(_stamp_groups(groups["end_timestamp"] or "", "end_"))
        start, end = times_from_groups(groups)
        return NamedTimes(safe_camera_id(groups.get("camera") or ""), start, end, CUSTOM)


_INTERVAL_HINT = "expected START or START/END in ISO 8601, e.g. 2025-11-14T14:30:00/2025-11-14T14:45:00"


def format_recorded(start: datetime | None, end: datetime | None) -> str:
    """A recording's times as one ISO 8601 interval (`START/END`), `START` without an end, "" without a
    start. The inverse of parse_recorded."""
    if start is None:
        return ""
    if end is None:
        return start.isoformat()
    if end < start:
        raise ValueError(f"recording ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    return f"{start.isoformat()}/{end.isoformat()}"


def _iso(text: str, whole: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"recorded time {whole!r}: {text!r} is not a date and time; {_INTERVAL_HINT}") from None


def parse_recorded(text: str) -> tuple[datetime | None, datetime | None]:
    """(start, end) from format_recorded's text; (None, None) for ""; ValueError for anything else."""
    if not text.strip():
        return None, None
    first, slash, second = text.strip().partition("/")
    start = _iso(first, text)
    if not slash:
        return start, None
    if "/" in second:
        raise ValueError(f"recorded time {text!r}: more than one '/'; {_INTERVAL_HINT}")
    end = _iso(second, text)
    try:
        backwards = end < start
    except TypeError:  # one with a UTC offset, one without
        raise ValueError(f"recorded time {text!r}: start and end must both have a UTC offset or neither") from None
    if backwards:
        raise ValueError(f"recorded time {text!r}: the end is before the start")
    return start, end
