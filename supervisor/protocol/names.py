"""Recording names: the camera id and the recording time read from a path under the videos folder.

Shared by the supervisor (discovery) and the worker (wall-clock times in its results).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# camera_35_20251114_143000.mp4, cam-2_2025-11-14_14-30-00.mkv, front door 20251114143000.ts
_NAME_STAMP = re.compile(
    r"(?P<prefix>.*?)[_\- ]?"
    r"(?P<year>(?:19|20)\d\d)[-_.]?(?P<month>[01]\d)[-_.]?(?P<day>[0-3]\d)"
    r"(?:[ T_\-.]?)(?P<hour>[0-2]\d)[-_.:]?(?P<minute>[0-5]\d)[-_.:]?(?P<second>[0-5]\d)"
)
_DIR_DATE = re.compile(r"(?P<year>(?:19|20)\d\d)[-_.]?(?P<month>[01]\d)[-_.]?(?P<day>[0-3]\d)")
_FILE_TIME = re.compile(r"^(?:.*?[_\- ])?(?P<hour>[0-2]\d)[-_.:]?(?P<minute>[0-5]\d)[-_.:]?(?P<second>[0-5]\d)")


def _stamp(groups: dict[str, str | None]) -> datetime | None:
    try:
        return datetime(
            int(groups["year"] or 0), int(groups["month"] or 0), int(groups["day"] or 0),
            int(groups["hour"] or 0), int(groups["minute"] or 0), int(groups["second"] or 0),
        )
    except (ValueError, TypeError, KeyError):
        return None


def _parse_timestamp_group(text: str) -> datetime | None:
    m = _NAME_STAMP.fullmatch(text) or _NAME_STAMP.search(text)
    return _stamp(m.groupdict()) if m else None


def safe_camera_id(name: str) -> str | None:
    """A camera id usable as one path component, or None when it is not."""
    name = name.strip()
    if not name or name in (".", "..") or "/" in name or "\0" in name or "\n" in name:
        return None
    return name


@dataclass(frozen=True, slots=True)
class PathParser:
    """Reads camera id and recording time from a path relative to the videos directory."""

    pattern: str = ""

    def parse(self, rel: Path) -> tuple[str | None, datetime | None]:
        if self.pattern:
            return self._parse_custom(rel)
        parts = rel.parts
        stem = rel.stem
        camera: str | None = parts[0] if len(parts) > 1 else None
        recorded: datetime | None = None
        m = _NAME_STAMP.search(stem)
        if m:
            recorded = _stamp(m.groupdict())
            if camera is None:
                camera = m.group("prefix").rstrip("_- ") or None
        if recorded is None:
            # Nested date folders: camera/2025-11-14/14-30-00.mp4 or camera/20251114/143000.mkv
            for folder in reversed(parts[:-1]):
                d = _DIR_DATE.fullmatch(folder)
                t = _FILE_TIME.match(stem)
                if d and t:
                    recorded = _stamp({**d.groupdict(), **t.groupdict()})
                    break
        if camera is None:
            camera = stem.split("_")[0] if "_" in stem else None
        return (safe_camera_id(camera) if camera else None), recorded

    def _parse_custom(self, rel: Path) -> tuple[str | None, datetime | None]:
        m = re.search(self.pattern, rel.as_posix())
        if not m:
            return None, None
        groups = m.groupdict()
        camera = safe_camera_id(groups.get("camera") or "")
        if groups.get("timestamp"):
            recorded = _parse_timestamp_group(groups["timestamp"] or "")
        elif "year" in groups:
            recorded = _stamp(groups)
        else:
            recorded = None
        return camera, recorded
