"""When a recording began: from the supervisor's reading of its path, its name, or estimated.

A name may hold a start and an end (`14-30-00_14-45-00.mp4`): the start is used
and the end is kept as a check on the duration, a disagreement being a warning.
A name without a time leaves only the file's mtime, which a recorder sets when it
closes the file, at the recording's end: the start is then the mtime minus the
duration read, and every time derived from it is marked estimated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from supervisor.protocol.names import PathParser, parse_recorded

# A named end that disagrees with the video by more than this (and this share of it) is worth a warning.
END_TOLERANCE_SECONDS = 2.0
END_TOLERANCE_SHARE = 0.05


@dataclass(slots=True)
class RecordingTime:
    start: datetime | None
    named_end: datetime | None
    source: str
    mtime: float | None = None  # for an estimate, made once the duration is known
    warning: str | None = None

    @property
    def estimated(self) -> bool:
        return self.mtime is not None

    @classmethod
    def resolve(cls, given: str, video: Path, camera: str) -> RecordingTime:
        start, end = parse_recorded(given)
        if start is not None:
            return cls(start, end, "the supervisor's reading of the path")
        named = PathParser().read(Path(camera) / video.name)
        if named.start is not None:
            return cls(named.start, named.end, f"the file name ({named.style})")
        try:
            mtime = video.stat().st_mtime
        except OSError:
            return cls(None, None, "none: no time in the name and no mtime")
        return cls(None, None, "the file's mtime minus its duration (estimated)", mtime)

    def settle(self, duration: float) -> None:
        """Once the video's duration is known: the estimate, or the named end's check."""
        if self.mtime is not None:
            self.start = (datetime.fromtimestamp(self.mtime) - timedelta(seconds=duration)).replace(microsecond=0)
            return
        if self.start is None or self.named_end is None:
            return
        named = (self.named_end - self.start).total_seconds()
        if abs(named - duration) > max(END_TOLERANCE_SECONDS, END_TOLERANCE_SHARE * named):
            self.warning = (f"the name says {named:g} s ({self.start:%H:%M:%S} to {self.named_end:%H:%M:%S}) but "
                            f"the video runs {duration:.1f} s; times count from the name's start")

    def at(self, seconds: float) -> str:
        """The wall-clock time `seconds` into the recording, or "" when unknown."""
        if self.start is None:
            return ""
        return (self.start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat() if self.start else None,
                "named_end": self.named_end.isoformat() if self.named_end else None,
                "source": self.source, "estimated": self.estimated, "warning": self.warning}
