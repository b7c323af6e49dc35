"""One file per job of what its worker said: `log_dir/jobs/<job id>.log`, read by `video-supervisor log`.

Each attempt appends a line when it starts (its command), every line the worker printed (stdout's
non-JSON lines and its events, stderr's lines), and a line with what the attempt came to. Progress
events come every half second; one in PROGRESS_EVERY_SECONDS is kept, so a four-hour job's file stays
small. A file that cannot be written (a full disk) is given up for that attempt with one warning: the
job itself never waits on it or fails for it. Files go with the other logs after `retention_days`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import structlog

log = structlog.get_logger()

FOLDER = "jobs"
PROGRESS_EVERY_SECONDS = 5.0


def job_log_path(log_dir: Path, job_id: int) -> Path:
    return log_dir / FOLDER / f"{job_id}.log"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class JobLog:
    """The open file of one attempt."""

    def __init__(self, path: Path, job_id: int) -> None:
        self.path = path
        self.job_id = job_id
        self._file: TextIO | None = None
        self._last_progress = float("-inf")

    def open(self, attempt: int, argv: Sequence[str]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o640)
            self._file = os.fdopen(fd, "a", encoding="utf-8")
        except OSError as exc:
            self._give_up(exc)
            return
        self._write(f"{_stamp()} attempt {attempt} started: {' '.join(argv)}")

    def line(self, stream: str, text: str) -> None:
        self._write(f"{_stamp()} {stream}: {text}")

    def event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "progress":
            now = time.monotonic()
            if now - self._last_progress < PROGRESS_EVERY_SECONDS:
                return
            self._last_progress = now
        self._write(f"{_stamp()} event: {json.dumps(event, default=str)}")

    def close(self, what: str) -> None:
        self._write(f"{_stamp()} attempt ended: {what}")
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _write(self, line: str) -> None:
        if self._file is None:
            return
        try:
            self._file.write(line[:4000] + "\n")
            self._file.flush()
        except (OSError, ValueError) as exc:
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError, ValueError):  # its unwritten buffer is lost with it
                self._file.close()
            self._file = None
        log.warning("job_log_not_written", job_id=self.job_id, path=str(self.path),
                    error=getattr(exc, "strerror", None) or str(exc))
