"""Where a job's results go: a folder named by the recording's whole path under the videos folder.

The name is the job's identity, not a coincidence of names (a unique result_key in the store stands
behind it); the scheduler decides it when it claims a job, and recovery finds a lost attempt's results
by it.
"""

from __future__ import annotations

import functools
from pathlib import Path


def result_key(videos_dir: Path, video: Path) -> str:
    """A recording's result folder, relative to output_dir: its whole path under videos_dir, extension
    included (`camera_50/2025-11-14/14-30-00.mp4/`), so no two recordings can share one."""
    try:
        rel = video.relative_to(videos_dir)
    except ValueError:
        raise ValueError(f"{video} is not under the videos directory {videos_dir}") from None
    if rel.is_absolute() or not rel.parts or any(part in ("", ".", "..") for part in rel.parts):
        raise ValueError(f"{video}: no usable result folder name")
    return rel.as_posix()


@functools.lru_cache(maxsize=8)
def real_root(output_root: Path) -> Path:
    """The output folder with its symlinks resolved (once: it is asked for every job)."""
    return output_root.resolve()


def job_output_dir(output_root: Path, key: str) -> Path:
    """`output_root/<key>/`, refusing anything that would land outside output_root. Lexical: the folders
    are then made and opened one component at a time without following symlinks (protocol/paths.py)."""
    root = real_root(output_root)
    parts = key.split("/")
    if key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"result folder {key!r} escapes {root}")
    return root.joinpath(*parts)
