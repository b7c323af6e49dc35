"""Result files that exist whole or not at all: temporary names, renamed once complete."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TextIO

TMP_SUFFIX = ".tmp"


class AtomicOutputs:
    """Opens `.NAME.<pid>.tmp` files under `out`; `commit()` renames them, `abort()` removes them.

    Files are renamed in the order they were opened, so the last one (the summary)
    appearing means every other one is complete.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self._files: list[tuple[Path, Path, TextIO]] = []
        self.remove_stale()

    def remove_stale(self) -> list[Path]:
        """Temporary files of an earlier attempt that was killed (kill -9 leaves them behind)."""
        gone = []
        for p in self.out.glob(f".*{TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                p.unlink()
                gone.append(p)
        return gone

    def open(self, name: str) -> TextIO:
        final = self.out / name
        tmp = self.out / f".{name}.{os.getpid()}{TMP_SUFFIX}"
        f = open(tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in commit/abort
        self._files.append((tmp, final, f))
        return f

    def commit(self) -> list[Path]:
        for _, _, f in self._files:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        done = []
        for tmp, final, _ in self._files:
            os.replace(tmp, final)
            done.append(final)
        with contextlib.suppress(OSError):
            fd = os.open(self.out, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._files.clear()
        return done

    def abort(self) -> None:
        for tmp, _, f in self._files:
            with contextlib.suppress(OSError):
                f.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._files.clear()
