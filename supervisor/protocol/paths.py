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


class ResultRoot:
    """The output folder, opened once (safely, as above); result folders are then made under it one
    component at a time from its descriptor: a few system calls a job instead of a walk from /."""

    def __init__(self, root: Path, mode: int = 0o750) -> None:
        self.path = Path(os.path.abspath(root))
        self._mode = mode
        self._fd: int | None = None

    def make(self, key: str) -> Path:
        """Create `root/key` (folders separated by /) and return its path; UnsafeOutput through a symlink."""
        if self._fd is None:
            self._fd = open_result_dir(self.path, self._mode)
        fd = os.dup(self._fd)
        try:
            for part in key.split("/"):
                try:
                    child = _open_or_make(part, fd, self._mode)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and stat.S_ISLNK(
                            os.lstat(part, dir_fd=fd).st_mode):
                        raise UnsafeOutput(errno.ELOOP, f"{self.path / key}: a part of the path ({part}) is a "
                                                        "symlink") from None
                    raise
                os.close(fd)
                fd = child
        finally:
            os.close(fd)
        return self.path / key

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
