"""Result folders created and opened without ever following a symlink (shared with the worker)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeOutput(OSError):
    """The result folder's path runs through a symlink."""


def open_result_dir(out: Path, mode: int = 0o750) -> int:
    """Create `out` (with its missing parents; `mode` under the process umask) and return a descriptor of
    it. No component may be a symlink: each is opened relative to the one before, without following."""
    path = Path(os.path.abspath(out))
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in path.parts[1:]:
            try:
                child = _open_or_make(part, fd, mode)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                    raise UnsafeOutput(errno.ELOOP, f"{path}: a part of the path ({part}) is a symlink") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_or_make(name: str, parent: int, mode: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):  # made meanwhile by another worker: fine
            os.mkdir(name, mode, dir_fd=parent)
        return os.open(name, _DIR_FLAGS, dir_fd=parent)


def make_result_dir(out: Path) -> None:
    """Create `out` as `open_result_dir` does, and let go of it."""
    os.close(open_result_dir(out))
