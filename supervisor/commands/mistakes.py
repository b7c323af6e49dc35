"""Mistakes that would give plausible output and exit 0: caught before the run, each said in one line.

A videos folder one level too high (every camera named "videos") or too low
(cameras named like dates), a camera in the ROI file that nothing recorded
(its regions never apply: the whole frame is counted instead), a camera asked
for on the command line that is not there, an output or log folder this user
cannot write: each is named with its fix. The ones that cannot be what the user
meant stop the run; the ones that might be (a camera not installed yet) warn.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from supervisor.config import ConfigError, Settings, load_with_store
from supervisor.protocol import EX_CONFIG

_DATE = re.compile(r"(?:19|20)\d\d[-_.]?[01]\d[-_.]?[0-3]\d")
# Names people give the folder that holds the camera folders.
_VIDEOS_NAMES = frozenset({"videos", "video", "recordings", "recording", "record", "records", "media", "cameras",
                           "nvr", "dvr", "footage"})


class CamerasNotFound(ConfigError):
    """`--cameras` on the command line names a camera that is not there: a usage error (exit 2)."""


def typo_of(name: str, present: Iterable[str]) -> str | None:
    """The camera `name` was most likely meant to be: a close name that differs in its letters, or holds the
    same digits in another order (camera_53 for camera_35). None when it differs only by its number
    (cam13 beside cam1, entrance_2 beside entrance_1): that is another camera, perhaps not installed yet."""
    for near in difflib.get_close_matches(name, sorted(present), n=3, cutoff=0.8):
        letters = re.sub(r"\d", "", name) != re.sub(r"\d", "", near)
        shuffled = sorted(re.findall(r"\d", name)) == sorted(re.findall(r"\d", near))
        if letters or shuffled:
            return near
    return None


def camera_folders(videos_dir: Path) -> set[str]:
    try:
        return {p.name for p in videos_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    except OSError:
        return set()


def check_asked_cameras(s: Settings, present: set[str], *, flag: bool) -> list[str]:
    """Cameras asked for that have no folder here. With --cameras (`flag`) that is a usage error naming the
    nearest and the ones here; in the settings file, a typo stops the run and another camera (not
    recording yet) is a warning."""
    warnings = []
    for i, cam in enumerate(s.cameras):
        if cam in present:
            continue
        typo = typo_of(cam, present)
        near = typo or next(iter(difflib.get_close_matches(cam, sorted(present), n=1)), None)
        hint = f"did you mean {near!r}? " if near else ""
        known = ", ".join(sorted(present)[:12]) + (" ..." if len(present) > 12 else "")
        reason = f"no camera {cam!r} under {s.videos_dir}; {hint}cameras here: {known}"
        if flag:
            raise CamerasNotFound("command line", "cameras", reason)
        if typo:
            raise ConfigError(s.source, f"cameras[{i}]", reason)
        warnings.append(f"{s.source}: cameras[{i}]: {reason} (nothing of it runs until it records)")
    return warnings


def layout_warnings(videos_dir: Path, cameras: Iterable[str]) -> list[str]:
    """The videos folder is probably one level off when every camera is named like a date (too low) or like
    a folder of videos (too high)."""
    found = sorted(set(cameras))
    if not found:
        return []
    if all(_DATE.fullmatch(c) for c in found):
        return [f"the camera ids under {videos_dir} look like dates ({', '.join(found[:3])}): videos_dir is probably "
                f"one level too low; the camera folders are likely in {videos_dir.parent}"]
    if len(found) == 1 and found[0].lower() in _VIDEOS_NAMES | {videos_dir.name.lower()}:
        return [f"every recording is under one camera named {found[0]!r}: videos_dir is probably one level too "
                f"high; try videos_dir = {videos_dir / found[0]}"]
    return []


def roi_warnings(rois_file: Path, roi_cameras: Iterable[str], present: set[str]) -> list[str]:
    """Cameras of the ROI file that recorded nothing here: their regions never apply."""
    out = []
    for cam in sorted(set(roi_cameras) - present):
        near = difflib.get_close_matches(cam, sorted(present), n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]!r}?" if near else " (a camera not installed yet is fine)"
        out.append(f"{rois_file}: camera {cam!r} has regions but no recordings under its name{hint}; "
                   "until it has, its regions count nothing")
    return out


def check_roi_typos(rois_file: Path, roi_cameras: Iterable[str], present: set[str]) -> None:
    """An ROI camera one letter or two from a camera that records here is a typo: its regions would never
    apply and the camera it meant would be counted whole-frame. Stops the run (a warning says the rest)."""
    for cam in sorted(set(roi_cameras) - present):
        near = typo_of(cam, present)
        if near:
            raise ConfigError(str(rois_file), f"camera {cam!r}",
                              f"no such camera under its videos folder; did you mean {near!r}?")


def check_writable(s: Settings, *, daemon: bool) -> list[str]:
    """The output and log folders must be writable by this user now, not found out job by job. A daemon
    whose output folder is not writable yet (a share not mounted at boot) warns and treats each job's
    failure to write as transient, trying again as it does for a full disk; without a log folder nothing
    can be said later, so that one stops every run."""
    warnings = []
    for key, folder in (("output_dir", s.output_dir), ("log_dir", s.log_dir)):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                pass
        except OSError as exc:
            reason = (f"{folder}: cannot write there as uid {os.getuid()} ({exc.strerror or exc}); make it writable "
                      "by this user, or choose another")
            if daemon and key == "output_dir":
                warnings.append(f"{key}: {reason}; jobs wait and try again until it is")
                continue
            raise ConfigError(s.source, key, reason) from None
    return warnings


def reader_settings(command: str, settings: Path | None, state_db: str | None) -> Settings | int:
    """The settings of a command that reads the job store (`status`, `report`, `log`); when they are bad or
    there is no store where they point, the line is said and its exit status returned instead."""
    try:
        s = load_with_store(settings, state_db)
    except ConfigError as exc:
        print(f"video-supervisor {command}: {exc}", file=sys.stderr)
        return EX_CONFIG
    if not s.store_url and not s.state_db.exists():
        print(f"video-supervisor {command}: no job store at {s.state_db}: run it where the supervisor ran (relative "
              "paths are from there), or pass --settings or --state-db", file=sys.stderr)
        return 1
    return s
