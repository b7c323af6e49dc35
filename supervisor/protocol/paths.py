"""Result folders created and opened without ever following a symlink (shared with the worker).

One writer per result folder: each attempt of a job writes into a staging folder of its own beside
the result folder (`.<name>.attempt-<claim token>`), and only the attempt that still holds its
claim publishes it, by renaming it into place as its last step. Two attempts (a paused daemon's
and the one that took its job over) can never interleave their files, and a reader sees one whole
result set or the one before it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Any

_ATTEMPT = ".attempt-"
_REPLACED = ".replaced-"


def staging_key(key: str, token: int) -> str:
    """Where the attempt of claim `token` writes the results that belong at `key` (relative to the root)."""
    parent, _, name = key.rpartition("/")
    return f"{parent}/" * bool(parent) + f".{name}{_ATTEMPT}{token}"

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
        os.close(self._open(key))
        return self.path / key

    def _open(self, key: str) -> int:
        """A descriptor of `root/key`, made where missing, one component at a time (never through a symlink)."""
        if self._fd is None:
            self._fd = open_result_dir(self.path, self._mode)
        fd = os.dup(self._fd)
        try:
            for part in key.split("/") if key else ():
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
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _parent(self, key: str) -> tuple[int, str]:
        """A descriptor of `key`'s parent folder (made if missing) and the last part of `key`."""
        parent, _, name = key.rpartition("/")
        if not name or name in (".", ".."):
            raise ValueError(f"result folder {key!r}: no usable name")
        return self._open(parent), name

    def publish(self, key: str, token: int) -> bool:
        """Put the attempt's staging folder in place of `key`'s result folder, in one step (the one before, if
        any, is swapped out and removed after). False, with nothing changed, when the attempt left nothing to
        publish, or when its staging folder is gone (published already by whoever took the job over)."""
        fd, name = self._parent(key)
        try:
            staged = f".{name}{_ATTEMPT}{token}"
            try:
                if not _listing(staged, fd):
                    _remove(staged, fd)
                    return False
            except FileNotFoundError:
                return False
            try:
                swapped = _exchange(staged, name, f".{name}{_REPLACED}{token}", fd)
            except FileNotFoundError:  # taken and published meanwhile: nothing moved
                return False
            with contextlib.suppress(OSError):
                os.fsync(fd)
            if swapped:  # the set before now sits under the staging name; removed at the job's next claim if not now
                with contextlib.suppress(OSError):
                    _remove(staged, fd)
            return True
        finally:
            os.close(fd)

    def discard(self, key: str, token: int) -> None:
        """Remove what the attempt of claim `token` wrote (it will not be published)."""
        fd, name = self._parent(key)
        try:
            _remove(f".{name}{_ATTEMPT}{token}", fd)
        finally:
            os.close(fd)

    def clear_stale(self, key: str, below: int) -> list[str]:
        """Staging folders of attempts older than claim `below` (cut off by a crash or a lost claim), and
        result sets left replaced half-way: removed. Their names."""
        fd, name = self._parent(key)
        gone = []
        try:
            for entry in os.listdir(fd):
                for marker in (_ATTEMPT, _REPLACED):
                    prefix = f".{name}{marker}"
                    if entry.startswith(prefix) and entry[len(prefix):].isdigit() and (
                            marker == _REPLACED or int(entry[len(prefix):]) < below):
                        _remove(entry, fd)
                        gone.append(entry)
        finally:
            os.close(fd)
        return gone

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP)
_libc: Any = None


def _renameat2(src: str, dst: str, parent: int, flags: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.renameat2(parent, os.fsencode(src), parent, os.fsencode(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), src)


def _exchange(staged: str, name: str, aside: str, parent: int) -> bool:
    """Move `staged` to `name` in one step: swapped with the folder there (True), or into the free name
    (False). FileNotFoundError, with nothing moved, when `staged` is gone. Where the file system can do
    neither (EINVAL, ENOSYS), the folder there is first renamed to `aside`."""
    try:
        _renameat2(staged, name, parent, _RENAME_EXCHANGE)
        return True
    except FileNotFoundError:
        pass  # nothing at `name` yet, or `staged` gone: the next call tells which
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
        return _exchange_in_two(staged, name, aside, parent)
    try:
        _renameat2(staged, name, parent, _RENAME_NOREPLACE)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
        return _exchange_in_two(staged, name, aside, parent)
    return False


def _exchange_in_two(staged: str, name: str, aside: str, parent: int) -> bool:
    os.stat(staged, dir_fd=parent, follow_symlinks=False)  # FileNotFoundError before anything moves
    try:
        os.rename(name, aside, src_dir_fd=parent, dst_dir_fd=parent)
    except FileNotFoundError:
        os.rename(staged, name, src_dir_fd=parent, dst_dir_fd=parent)
        return False
    os.rename(staged, name, src_dir_fd=parent, dst_dir_fd=parent)
    os.rename(aside, staged, src_dir_fd=parent, dst_dir_fd=parent)
    return True


def _listing(name: str, parent: int) -> list[str]:
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _remove(name: str, parent: int) -> None:
    """Remove the folder `name` under `parent` and everything in it, never following a symlink."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(name, dir_fd=parent)
