"""Result files that exist whole or not at all: temporary names, renamed once complete.

Everything happens through one descriptor of the result folder, opened without following
symlinks: a symlink planted in the output tree after the job started cannot send the files
elsewhere, and a folder whose path already runs through a symlink is refused.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TextIO

from supervisor.protocol.paths import UnsafeOutput, open_result_dir

__all__ = ["AtomicOutputs", "UnsafeOutput", "open_result_dir"]

TMP_SUFFIX = ".tmp"
class AtomicOutputs:
    """Opens `.NAME.<pid>.tmp` files in `out`; `commit()` renames them, `abort()` removes them.

    Files are renamed in the order they were opened, so the last one (the summary)
    appearing means every other one is complete.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self._dir = open_result_dir(out)
        self._files: list[tuple[str, str, TextIO]] = []
        self.remove_stale()

    def remove_stale(self) -> list[str]:
        """Temporary files of an earlier attempt that was killed (kill -9 leaves them behind)."""
        gone = []
        for name in os.listdir(self._dir):
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=self._dir)
                    gone.append(name)
        return gone

    def open(self, name: str) -> TextIO:
        tmp = f".{name}.{os.getpid()}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640,
                     dir_fd=self._dir)
        f = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._files.append((tmp, name, f))
        return f

    def commit(self) -> list[Path]:
        for _, _, f in self._files:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        done = []
        for tmp, final, _ in self._files:
            os.rename(tmp, final, src_dir_fd=self._dir, dst_dir_fd=self._dir)
            done.append(self.out / final)
        with contextlib.suppress(OSError):
            os.fsync(self._dir)
        self._files.clear()
        self.close()
        return done

    def abort(self) -> None:
        for tmp, _, f in self._files:
            with contextlib.suppress(OSError):
                f.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self._dir)
        self._files.clear()
        self.close()

    def close(self) -> None:
        if self._dir >= 0:
            with contextlib.suppress(OSError):
                os.close(self._dir)
            self._dir = -1
