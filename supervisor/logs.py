"""structlog logging to stdout (journald, or a person at a terminal) and to the seed's log files.

- stdout: one JSON object per line for machines (journald, pipes, CI); on a
  terminal, one readable line per event instead (time, level in colour, the
  event, its fields), or JSON when VIDEO_SUPERVISOR_LOG_FORMAT=json. In a once
  run it is minimal (start, parallelism changes, failures, the summary); in
  daemon mode it carries everything at the chosen level, each line prefixed with
  its syslog priority when journald reads it (`<3>` for errors ...).
- `log_dir/processing_YYYYMMDD_HHMMSS.log`: every event of this run.
- `log_dir/errors_YYYYMMDD.log`: errors only, shared by all runs of the day.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import structlog

# Events shown on the console of a once run; warnings and errors always are.
CONSOLE_EVENTS = frozenset({
    "supervisor_started", "parallelism_changed", "gpu_monitoring_unavailable", "run_summary",
    "camera_summary", "shutdown_requested", "shutdown_complete", "videos_unsettled", "nothing_to_do",
})
# A log file that cannot be written (a full or read-only disk) is dropped, and tried again this much later.
FILE_RETRY_SECONDS = 60.0
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
_LEVEL_RANK = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_COLOUR = {"debug": "\x1b[2m", "warning": "\x1b[33m", "error": "\x1b[31m", "critical": "\x1b[1;31m"}
FORMAT_ENV = "VIDEO_SUPERVISOR_LOG_FORMAT"  # "json" or "console"; unset: console on a terminal, else JSON


def human_line(line: str, *, colour: bool) -> str:
    """A JSON log line as a person reads it: `14:30:05 warning engine_fallback  reason="..." engine=torch`."""
    try:
        fields: dict[str, Any] = json.loads(line)
    except ValueError:
        return line
    level = str(fields.pop("level", "info"))
    event = str(fields.pop("event", ""))
    stamp = str(fields.pop("timestamp", ""))
    when = stamp[11:19] if len(stamp) >= 19 else time.strftime("%H:%M:%S")
    rest = " ".join(f"{k}={_shown(v)}" for k, v in fields.items())
    head = f"{when} {level:<7} {event}"
    if colour:
        head = f"{when} {_COLOUR.get(level, '')}{level:<7}\x1b[0m \x1b[1m{event}\x1b[0m"
    return f"{head}  {rest}" if rest else head


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=_json_default, ensure_ascii=False)
    return f'"{text}"' if isinstance(value, str) and (not text or any(c in text for c in " =\"")) else text


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default: stdout as it is now) is a terminal a person reads."""
    try:
        return bool((stream or sys.stdout).isatty())
    except (AttributeError, ValueError):
        return False


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (Path, datetime)):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return repr(obj)


class LogSinks:
    """The structlog "logger": writes each rendered line to the outputs that want it."""

    def __init__(self, console: TextIO | None, *, console_full: bool, journald: bool,
                 log_dir: Path | None, started: datetime, human: bool = False) -> None:
        # None: whatever sys.stdout is at the time of writing (a progress display may stand in for it).
        self._console = console
        self.human = human  # readable lines on the console (files stay JSON)
        self._colour = human and not os.environ.get("NO_COLOR")
        self._console_closed = False
        self.console_full = console_full
        self.journald = journald
        self.log_dir = log_dir
        self._processing: TextIO | None = None
        self._errors: TextIO | None = None
        self._errors_day = ""
        self.processing_path: Path | None = None
        self._files_down_until = 0.0  # while > now, the log files are not written (they failed)
        self.files_failed = 0
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
            self.processing_path = log_dir / f"processing_{started:%Y%m%d_%H%M%S}.log"
            self._processing = _open_private(self.processing_path)

    def write(self, level: str, line: str, event: str) -> None:
        """Never raises: a log file that fails is dropped (one line to stderr) and tried again later."""
        if self.log_dir is not None and time.monotonic() >= self._files_down_until:
            try:
                self._write_files(level, line)
            except (OSError, ValueError) as exc:
                self._files_failed(exc)
        if not self._console_closed and (
            self.console_full or event in CONSOLE_EVENTS or _LEVEL_RANK.get(level, 20) >= _LEVEL_RANK["warning"]
        ):
            prefix = f"<{_PRIORITY.get(level, 6)}>" if self.journald else ""
            console = self._console if self._console is not None else sys.stdout
            shown = human_line(line, colour=self._colour) if self.human else line
            try:
                console.write(prefix + shown + "\n")
                console.flush()
            except (OSError, ValueError):
                self._console_closed = True

    def _write_files(self, level: str, line: str) -> None:
        if self._processing is None and self.processing_path is not None:
            self._processing = _open_private(self.processing_path)
        if self._processing is not None:
            self._processing.write(line + "\n")
            self._processing.flush()
        if _LEVEL_RANK.get(level, 20) >= _LEVEL_RANK["error"]:
            errors = self._error_file()
            errors.write(line + "\n")
            errors.flush()

    def _files_failed(self, exc: BaseException) -> None:
        self.files_failed += 1
        for f in (self._processing, self._errors):
            if f is not None:
                with contextlib.suppress(OSError, ValueError):  # its unwritten buffer is lost with it
                    f.close()
        self._processing = self._errors = None
        self._files_down_until = time.monotonic() + FILE_RETRY_SECONDS
        reason = getattr(exc, "strerror", None) or str(exc)
        try:
            sys.stderr.write(f"video-supervisor: cannot write the log files in {self.log_dir} ({reason}); "
                             f"logging to the journal/console only, trying the files again in "
                             f"{FILE_RETRY_SECONDS:g} s\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def _error_file(self) -> TextIO:
        day = datetime.now().strftime("%Y%m%d")
        if self._errors is None or day != self._errors_day:
            if self._errors is not None:
                self._errors.close()
            assert self.log_dir is not None
            self._errors = _open_private(self.log_dir / f"errors_{day}.log")
            self._errors_day = day
        return self._errors

    def close(self) -> None:
        for f in (self._processing, self._errors):
            if f is not None:
                with contextlib.suppress(OSError, ValueError):
                    f.close()
        self._processing = self._errors = None


def _open_private(path: Path) -> TextIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    return os.fdopen(fd, "a", encoding="utf-8")


class _SinkLogger:
    """structlog calls `logger.<level>(line, event=...)`; forward to the sinks."""

    def __init__(self, sinks: LogSinks) -> None:
        self._sinks = sinks

    def __getattr__(self, level: str) -> Any:
        def emit(line: str, event: str = "") -> None:
            self._sinks.write("error" if level == "exception" else level, line, event)
        return emit


def _render(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> tuple[tuple[str], dict[str, str]]:
    event = str(event_dict.get("event", ""))
    return (json.dumps(event_dict, default=_json_default, ensure_ascii=False),), {"event": event}


def configure_logging(
    *,
    level: str = "INFO",
    log_dir: Path | None = None,
    console: TextIO | None = None,
    console_full: bool = False,
    journald: bool | None = None,
    cache: bool = False,
) -> LogSinks:
    """Set up structlog for this process; returns the sinks so the caller can close them.

    `cache`: loggers keep what they were first bound to (much cheaper a call). For a program that
    configures logging once; tests that capture logs in-process need it off."""
    if journald is None:
        journald = bool(os.environ.get("JOURNAL_STREAM"))
    wanted = os.environ.get(FORMAT_ENV, "")
    human = wanted == "console" or (wanted != "json" and not journald and is_terminal(console))
    sinks = LogSinks(console, console_full=console_full,
                     journald=journald, log_dir=log_dir, started=datetime.now(), human=human)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=lambda *_: _SinkLogger(sinks),
        cache_logger_on_first_use=cache,
    )
    return sinks


def cleanup_old_logs(log_dir: Path, retention_days: int, now: float | None = None) -> list[Path]:
    """Delete this program's log files older than `retention_days`; returns what went."""
    now = time.time() if now is None else now
    cutoff = now - retention_days * 86400
    removed: list[Path] = []
    if not log_dir.is_dir():
        return removed
    for pattern in ("processing_*.log", "errors_*.log", "jobs/*.log"):
        for path in log_dir.glob(pattern):
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except OSError:
                continue
    return removed
