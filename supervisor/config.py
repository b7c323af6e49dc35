"""Typed settings: embedded defaults, a TOML file, then command-line flags.

One frozen `Settings` object is built and validated at the edge; a reload
builds a new one and swaps it in whole, or keeps the old one.

Longer than the other modules on purpose: a key's type, its default and its check live here
together, so adding or changing a setting touches one file, and the reading of the types (about
60 lines; see README, "Architecture", for why not msgspec) sits beside the types it reads.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from supervisor.protocol import ENGINES, EX_CONFIG

__all__ = ["EX_CONFIG", "ConfigError", "Settings", "load_settings", "validate"]
DEFAULT_MODEL = Path("models/person.pt")
# Settings whose values may hold a secret (a token in a webhook URL): never echoed in an error.
SECRET_KEYS = ("alerts.webhooks", "alerts.smtp")

DEFAULT_WORKER_COMMAND: tuple[str, ...] = (
    "{python}", "-m", "workers.detect",
    "--video", "{video}", "--camera", "{camera}", "--rois", "{rois}",
    "--out", "{out}", "--duration", "{duration}", "--model", "{model}", "--engine", "{engine}",
    "--recorded-at", "{recorded_at}", "--motion-gate", "{motion_gate}", "--motion-threshold", "{motion_threshold}",
    "--motion-max-reuse", "{motion_max_reuse}",
)
PLACEHOLDERS = frozenset({"python", "video", "camera", "out", "rois", "duration", "model", "engine", "recorded_at",
                           "attempt", "job_id", "motion_gate", "motion_threshold", "motion_max_reuse"})
PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


class ConfigError(Exception):
    """A settings or ROI file that cannot be used: names the file, the field and why."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source, self.key, self.reason = source, key, reason


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    max_parallel: int = 4
    rescan_seconds: float = 60.0
    drain_seconds: float = 30.0
    # A shared (PostgreSQL) store: a daemon's claim on a job lasts this long unless its heartbeat renews
    # it; a daemon that dies leaves its jobs to the others after at most this long.
    lease_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    extensions: tuple[str, ...] = ("mp4", "mkv", "avi", "mov", "ts")
    pattern: str = ""
    settle_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class SimulatedGpuSettings:
    count: int = 1
    ambient: float = 45.0
    heat_per_job: float = 13.0
    tau: float = 60.0
    noise: float = 0.0


@dataclass(frozen=True, slots=True)
class GpuSettings:
    probe: str = "auto"
    gpus: tuple[int, ...] = ()
    temp_warm: float = 70.0
    temp_limit: float = 80.0
    warm_parallel: int = 2
    critical_parallel: int = 1
    hysteresis: float = 3.0
    poll_seconds: float = 5.0
    snapshot_seconds: float = 30.0
    min_free_memory_mb: int = 1500
    unknown_grace_seconds: float = 30.0
    # The critical band starts at least this far below a card's own slowdown temperature (NVML).
    slowdown_margin: float = 3.0
    # Admission by memory: a job's expected peak GPU memory before any job of this model was measured,
    # and how long after its start a job is still growing into it.
    job_memory_mb: int = 1500
    memory_ramp_seconds: float = 30.0
    # After a job ran out of GPU memory (exit 75), that GPU runs one job fewer for this long.
    oom_cooldown_seconds: float = 600.0
    # Above the critical band this long (or at a hardware slowdown), workers beyond critical_parallel are
    # paused (SIGSTOP) until it cools, oldest resumed first. Off: the seed's behaviour, they run on.
    pause_when_critical: bool = False
    critical_pause_seconds: float = 30.0
    simulated: SimulatedGpuSettings = field(default_factory=SimulatedGpuSettings)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    command: tuple[str, ...] = DEFAULT_WORKER_COMMAND
    model: Path = DEFAULT_MODEL
    engine: str = "auto"  # auto: torch on a CUDA GPU, else the fastest exported CPU engine
    motion_gate: bool = True  # infer only samples where the picture changed; the others reuse detections
    motion_threshold: float = 6.0  # grey levels (0-255), mean over one cell of the small grey picture
    motion_max_reuse_seconds: float = 10.0  # a sample is inferred at least this often
    timeout_seconds: float = 4 * 3600.0
    max_attempts: int = 3
    max_transient_attempts: int = 10  # exit 75 (CUDA out of memory, disk full): its own cap
    retry_backoff_seconds: float = 30.0
    retry_backoff_max_seconds: float = 1800.0
    stop_grace_seconds: float = 10.0
    done_grace_seconds: float = 10.0  # a worker still running this long after its done event is stopped


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    listen: str = "127.0.0.1:9808"  # "" turns the Prometheus endpoint off


@dataclass(frozen=True, slots=True)
class AlertSettings:
    webhooks: tuple[str, ...] = ()
    # Email: smtp://[user:password@]host[:587] (STARTTLS when the server offers it) or smtps://host[:465].
    smtp: str = ""
    email_to: tuple[str, ...] = ()
    email_from: str = ""
    smtp_ca_file: str = ""  # a CA bundle to trust the mail server's certificate by ("": the system's)
    min_interval_seconds: float = 300.0
    timeout_seconds: float = 5.0
    max_retries: int = 3
    retry_backoff_seconds: float = 2.0


@dataclass(frozen=True, slots=True)
class IoSettings:
    """The videos share's health (supervisor/scheduling/share.py)."""

    probe_seconds: float = 30.0  # how often a 64 KiB read of a recording is timed
    slow_ms: float = 500.0  # a probe read slower than this: the share is slow
    stall_seconds: float = 60.0  # no answer this long (or an I/O error): stalled, alerted
    max_read_wait_share: float = 0.5  # workers waiting on reads more than this: the limit is not raised


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str = "INFO"
    retention_days: int = 14


@dataclass(frozen=True, slots=True)
class Settings:
    videos_dir: Path = Path("videos")
    output_dir: Path = Path("results")
    state_db: Path = Path("state/jobs.sqlite3")
    log_dir: Path = Path("logs")
    rois_file: Path | None = None
    cameras: tuple[str, ...] = ()
    duration: float = 0.0
    reprocess: bool = False
    allow_root: bool = False
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    gpu: GpuSettings = field(default_factory=GpuSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    io: IoSettings = field(default_factory=IoSettings)
    source: str = "defaults"
    # A PostgreSQL job store shared by several daemons: `state_db = "postgresql://..."` sets it; state_db's
    # path is then unused.
    store_url: str = ""

    @property
    def status_file(self) -> Path:
        """Where this daemon's live snapshot goes (read by `status` on this host)."""
        if self.store_url:
            return self.log_dir / "status.json"
        return self.state_db.with_name(self.state_db.name + ".status.json")


def is_store_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def load_with_store(path: Path | None, state_db: str | None) -> Settings:
    """A command's settings (`--settings`, else the defaults) with the store its `--state-db` names."""
    return with_store(load_settings(path), state_db)


def with_store(s: Settings, state_db: str | None) -> Settings:
    """The settings with the job store a command's `--state-db` names (a SQLite file or a URL), else the
    settings' own, the file's path made absolute."""
    url = state_db if state_db and is_store_url(state_db) else s.store_url
    db = Path(state_db).absolute() if state_db and not url else s.state_db.absolute()
    return dataclasses.replace(s, state_db=db, store_url=url)


_NOT_IN_FILE = frozenset({"source", "store_url"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    return {int: "integer", float: "number", str: "string", bool: "boolean", Path: "path"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, key: str, source: str, base: Path) -> Any:
    def wrong() -> ConfigError:
        shown = "(value not shown: it may hold a secret)" if key.startswith(SECRET_KEYS) else repr(value)
        return ConfigError(source, key, f"expected {_type_name(tp)}, got {type(value).__name__} {shown}")

    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        if value == "" and inner is Path:
            return None
        return _convert(value, inner, key, source, base)
    if origin is tuple:
        if not isinstance(value, list):
            raise wrong()
        item_tp = typing.get_args(tp)[0]
        return tuple(_convert(v, item_tp, f"{key}[{i}]", source, base) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong()
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise wrong()
        path = Path(value).expanduser()
        return Path(os.path.normpath(path if path.is_absolute() else base / path))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"expected a table, got {type(value).__name__}")
        return _build(tp, value, f"{key}.", source, base)
    raise TypeError(f"unsupported settings type {tp!r}")  # a bug in this module, not user input


def _build(cls: Any, table: dict[str, Any], prefix: str, source: str, base: Path) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - _NOT_IN_FILE
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(source, f"{prefix}{key}", f"unknown key (known here: {known})")
        kwargs[key] = _convert(value, hints[key], f"{prefix}{key}", source, base)
    return cls(**kwargs)


def parse_settings(data: dict[str, Any], source: str, base: Path) -> Settings:
    """Paths in the file are relative to its folder; so is the default model, a file too."""
    url = data.get("state_db")
    if isinstance(url, str) and is_store_url(url):
        data = {k: v for k, v in data.items() if k != "state_db"}
    else:
        url = ""
    settings: Settings = _build(Settings, data, "", source, base)
    settings = dataclasses.replace(settings, store_url=url)
    settings = dataclasses.replace(settings, source=source)
    worker = data.get("worker")
    if not (isinstance(worker, dict) and "model" in worker):
        settings = dataclasses.replace(settings, worker=dataclasses.replace(settings.worker,
                                                                            model=base / DEFAULT_MODEL))
    validate(settings)
    return settings


def load_settings(path: Path | None) -> Settings:
    """Read a TOML settings file (or the embedded defaults when `path` is None)."""
    if path is None:
        settings = Settings()
        validate(settings)
        return settings
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(source, "-", f"cannot read: {exc.strerror or exc}") from exc
    if not raw.strip():
        # An empty file is far more often a half-written or truncated one than a wish for the defaults.
        raise ConfigError(source, "-", "the file is empty (to run on the embedded defaults, leave --settings out)")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "-", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "-", f"invalid TOML: {exc}") from exc
    return parse_settings(data, source, path.resolve().parent)


def _check(ok: bool, settings: Settings, key: str, reason: str) -> None:
    if not ok:
        raise ConfigError(settings.source, key, reason)


def validate(s: Settings) -> None:
    """Check values that types alone cannot; raise ConfigError naming the key."""
    _check(s.duration >= 0, s, "duration", "must be >= 0 (0 means the whole video)")
    _check(s.scheduler.max_parallel >= 1, s, "scheduler.max_parallel", "must be >= 1")
    _check(s.scheduler.rescan_seconds > 0, s, "scheduler.rescan_seconds", "must be > 0")
    _check(s.scheduler.lease_seconds >= 2, s, "scheduler.lease_seconds",
           "must be >= 2 (heartbeats renew a lease several times within it)")
    _check(s.scheduler.drain_seconds >= 0, s, "scheduler.drain_seconds", "must be >= 0")
    _check(bool(s.discovery.extensions), s, "discovery.extensions", "must name at least one extension")
    for i, ext in enumerate(s.discovery.extensions):
        _check(bool(re.fullmatch(r"[A-Za-z0-9]+", ext)), s, f"discovery.extensions[{i}]",
               f"{ext!r} is not a bare extension such as 'mp4'")
    _check(s.discovery.settle_seconds >= 0, s, "discovery.settle_seconds", "must be >= 0")
    if s.discovery.pattern:
        try:
            rx = re.compile(s.discovery.pattern)
        except re.error as exc:
            raise ConfigError(s.source, "discovery.pattern", f"invalid regular expression: {exc}") from exc
        groups = set(rx.groupindex)
        _check("camera" in groups, s, "discovery.pattern", "needs a named group (?P<camera>...)")
        time_groups = {"year", "month", "day", "hour", "minute", "second"}
        _check("timestamp" in groups or time_groups <= groups or not groups & (time_groups | {"timestamp"}),
               s, "discovery.pattern", "needs (?P<timestamp>...) or all of year, month, day, hour, minute, second")
        end_groups = {"end_hour", "end_minute", "end_second"}
        _check("end_timestamp" in groups or end_groups <= groups or not groups & end_groups,
               s, "discovery.pattern", "an end time needs all of end_hour, end_minute, end_second")
    g = s.gpu
    _check(g.probe in ("auto", "nvml", "none", "simulated") or g.probe.startswith("scripted:"), s, "gpu.probe",
           f"{g.probe!r} is not one of auto, nvml, none, simulated, scripted:PATH")
    _check(g.temp_warm < g.temp_limit, s, "gpu.temp_warm", f"must be below gpu.temp_limit ({g.temp_limit})")
    _check(g.warm_parallel >= 1, s, "gpu.warm_parallel", "must be >= 1")
    _check(g.critical_parallel >= 0, s, "gpu.critical_parallel", "must be >= 0")
    _check(g.hysteresis >= 0, s, "gpu.hysteresis", "must be >= 0")
    _check(g.poll_seconds > 0, s, "gpu.poll_seconds", "must be > 0")
    _check(g.snapshot_seconds > 0, s, "gpu.snapshot_seconds", "must be > 0")
    _check(g.min_free_memory_mb >= 0, s, "gpu.min_free_memory_mb", "must be >= 0")
    _check(g.unknown_grace_seconds >= 0, s, "gpu.unknown_grace_seconds", "must be >= 0")
    _check(g.slowdown_margin >= 0, s, "gpu.slowdown_margin", "must be >= 0")
    _check(s.io.probe_seconds > 0, s, "io.probe_seconds", "must be > 0")
    _check(s.io.slow_ms > 0, s, "io.slow_ms", "must be > 0")
    _check(s.io.stall_seconds > 0, s, "io.stall_seconds", "must be > 0")
    _check(0 < s.io.max_read_wait_share <= 1, s, "io.max_read_wait_share", "must be in (0, 1]")
    _check(g.job_memory_mb >= 0, s, "gpu.job_memory_mb", "must be >= 0")
    _check(g.memory_ramp_seconds >= 0, s, "gpu.memory_ramp_seconds", "must be >= 0")
    _check(g.oom_cooldown_seconds >= 0, s, "gpu.oom_cooldown_seconds", "must be >= 0")
    _check(g.critical_pause_seconds >= 0, s, "gpu.critical_pause_seconds", "must be >= 0")
    _check(all(i >= 0 for i in g.gpus), s, "gpu.gpus", "GPU indices must be >= 0")
    _check(len(set(g.gpus)) == len(g.gpus), s, "gpu.gpus", "GPU indices must not repeat")
    _check(g.simulated.count >= 1, s, "gpu.simulated.count", "must be >= 1")
    _check(g.simulated.tau > 0, s, "gpu.simulated.tau", "must be > 0")
    _check(g.simulated.noise >= 0, s, "gpu.simulated.noise", "must be >= 0")
    w = s.worker
    _check(bool(w.command), s, "worker.command", "must not be empty")
    for i, arg in enumerate(w.command):
        for name in PLACEHOLDER_RE.findall(arg):
            _check(name in PLACEHOLDERS, s, f"worker.command[{i}]",
                   f"unknown placeholder {{{name}}} (known: {', '.join(sorted(PLACEHOLDERS))})")
    _check(w.engine in ENGINES, s, "worker.engine", f"{w.engine!r} is not one of {', '.join(ENGINES)}")
    _check(0 < w.motion_threshold <= 255, s, "worker.motion_threshold", "must be > 0 and <= 255")
    _check(w.motion_max_reuse_seconds > 0, s, "worker.motion_max_reuse_seconds", "must be > 0")
    _check(w.timeout_seconds > 0, s, "worker.timeout_seconds", "must be > 0")
    _check(w.max_attempts >= 1, s, "worker.max_attempts", "must be >= 1")
    _check(w.max_transient_attempts >= 1, s, "worker.max_transient_attempts", "must be >= 1")
    _check(w.retry_backoff_seconds >= 0, s, "worker.retry_backoff_seconds", "must be >= 0")
    _check(w.retry_backoff_max_seconds >= w.retry_backoff_seconds, s, "worker.retry_backoff_max_seconds",
           "must be >= worker.retry_backoff_seconds")
    _check(w.stop_grace_seconds >= 0, s, "worker.stop_grace_seconds", "must be >= 0")
    _check(w.done_grace_seconds >= 0, s, "worker.done_grace_seconds", "must be >= 0")
    _check(s.logging.level.upper() in LOG_LEVELS, s, "logging.level", f"must be one of {', '.join(LOG_LEVELS)}")
    _check(s.logging.retention_days >= 1, s, "logging.retention_days", "must be >= 1")
    if s.metrics.listen:
        host, sep, port = s.metrics.listen.rpartition(":")
        _check(bool(sep) and bool(host) and port.isdigit() and 0 <= int(port) < 65536, s, "metrics.listen",
               f"{s.metrics.listen!r} is not HOST:PORT (or \"\" for off)")
    for i, url in enumerate(s.alerts.webhooks):
        _check(url.startswith(("http://", "https://")) and _port_ok(url), s, f"alerts.webhooks[{i}]",
               "must be an http(s) URL (with a port number, if any, from 1 to 65535)")
    _check(not s.alerts.smtp or s.alerts.smtp.startswith(("smtp://", "smtps://")), s, "alerts.smtp",
           "must be smtp://[user:password@]host[:port] or smtps://...")
    _check(bool(s.alerts.smtp) == bool(s.alerts.email_to), s, "alerts.email_to" if s.alerts.smtp else "alerts.smtp",
           "email alerts need both a server (alerts.smtp) and recipients (alerts.email_to)")
    for i, address in enumerate(s.alerts.email_to):
        _check("@" in address and not any(c in address for c in " \r\n,<>"), s, f"alerts.email_to[{i}]",
               f"{address!r} is not one email address")
    _check(s.alerts.min_interval_seconds >= 0, s, "alerts.min_interval_seconds", "must be >= 0")
    _check(s.alerts.timeout_seconds > 0, s, "alerts.timeout_seconds", "must be > 0")
    _check(s.alerts.max_retries >= 0, s, "alerts.max_retries", "must be >= 0")
    _check(s.alerts.retry_backoff_seconds >= 0, s, "alerts.retry_backoff_seconds", "must be >= 0")
    for i, cam in enumerate(s.cameras):
        _check(bool(cam) and "/" not in cam and cam not in (".", ".."), s, f"cameras[{i}]",
               f"{cam!r} is not a camera id")


def _port_ok(url: str) -> bool:
    try:
        return urlsplit(url).port != 0
    except ValueError:
        return False


def uses_model(s: Settings) -> bool:
    return any("{model}" in arg for arg in s.worker.command)




def python_executable() -> str:
    return sys.executable


def merge_reload(old: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """Settings read again on SIGHUP, less what only a restart can change (open files, the store lock,
    the probe); returns them and the keys that changed but wait for a restart."""
    bound = {
        "state_db": (old.state_db, new.state_db), "log_dir": (old.log_dir, new.log_dir),
        "gpu.probe": (old.gpu.probe, new.gpu.probe), "gpu.gpus": (old.gpu.gpus, new.gpu.gpus),
        "logging.level": (old.logging.level, new.logging.level), "metrics.listen": (old.metrics, new.metrics),
    }
    needs_restart = sorted(k for k, (a, b) in bound.items() if a != b)
    merged = dataclasses.replace(
        new, state_db=old.state_db, log_dir=old.log_dir, logging=old.logging, metrics=old.metrics,
        gpu=dataclasses.replace(new.gpu, probe=old.gpu.probe, gpus=old.gpu.gpus), reprocess=False,
    )
    return merged, needs_restart
