"""Turn a videos directory tree into `VideoFile` records.

Camera id and recording time come from the path; files a recorder may still
be writing (too recent, empty, temporary names) are left for a later scan.
Symlinks are never followed, so nothing outside the tree is ever picked up.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from supervisor.protocol.names import PathParser

_TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".writing")


@dataclass(frozen=True, slots=True)
class VideoFile:
    camera: str
    recorded_at: datetime
    path: Path
    size: int
    mtime: float
    time_from_mtime: bool = False

    @property
    def sort_key(self) -> tuple[datetime, str, str]:
        return (self.recorded_at, self.camera, str(self.path))


@dataclass(slots=True)
class ScanResult:
    videos: list[VideoFile] = field(default_factory=list)
    unsettled: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)


def _walk(root: Path) -> Iterator[tuple[os.DirEntry[str], Path]]:
    """Every regular file under `root`, without following symlinks; hidden entries skipped."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        yield entry, Path(entry.path)
        except OSError:
            if folder == root:
                raise
            continue


def scan(
    root: Path,
    *,
    extensions: Iterable[str],
    settle_seconds: float,
    now: float,
    parser: PathParser,
    cameras: Iterable[str] = (),
) -> ScanResult:
    """Walk `root` (blocking: call it off the event loop) and classify what is there."""
    exts = {"." + e.lower() for e in extensions}
    wanted = set(cameras)
    result = ScanResult()
    for entry, path in _walk(root):
        name = entry.name
        suffix = os.path.splitext(name)[1].lower()
        if suffix not in exts or name.lower().endswith(_TEMP_SUFFIXES):
            continue
        rel = path.relative_to(root)
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            result.errors.append((path, f"cannot stat: {exc.strerror or exc}"))
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        camera, recorded = parser.parse(rel)
        if camera is None:
            result.skipped.append((path, "no camera id in its path"))
            continue
        if wanted and camera not in wanted:
            continue
        if st.st_size == 0:
            result.unsettled.append(path)
            continue
        if now - st.st_mtime < settle_seconds:
            result.unsettled.append(path)
            continue
        from_mtime = recorded is None
        if recorded is None:
            recorded = datetime.fromtimestamp(st.st_mtime).replace(microsecond=0)
        result.videos.append(VideoFile(camera, recorded, path, st.st_size, st.st_mtime, from_mtime))
    result.videos.sort(key=lambda v: v.sort_key)
    return result
