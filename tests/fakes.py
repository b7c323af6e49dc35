"""Hand-written fakes and builders shared by the tests."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from supervisor.config import (
    DiscoverySettings,
    GpuSettings,
    LoggingSettings,
    SchedulerSettings,
    Settings,
    WorkerSettings,
)

REPO = Path(__file__).resolve().parent.parent


def fake_worker_command(*extra: str, seconds: float = 0.05, record: Path | None = None,
                        plan: Path | None = None) -> tuple[str, ...]:
    cmd = ["{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
           "--duration", "{duration}",
           "--seconds", f"{seconds:g}", "--progress", "2"]
    if record is not None:
        cmd += ["--record", str(record)]
    if plan is not None:
        cmd += ["--plan", str(plan)]
    return (*cmd, *extra)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    """Settings for a run inside `tmp` with the fake worker and fast timings."""
    worker = overrides.pop("worker", None) or WorkerSettings(
        command=fake_worker_command(record=tmp / "runs.jsonl"), timeout_seconds=30,
        retry_backoff_seconds=0.05, retry_backoff_max_seconds=0.2, stop_grace_seconds=1.0,
    )
    base = Settings(
        videos_dir=tmp / "videos", output_dir=tmp / "results", state_db=tmp / "state" / "jobs.sqlite3",
        log_dir=tmp / "logs", source="test",
        scheduler=SchedulerSettings(max_parallel=2, rescan_seconds=0.2, drain_seconds=5),
        discovery=DiscoverySettings(settle_seconds=0),
        gpu=GpuSettings(probe="none", poll_seconds=0.05, snapshot_seconds=60),
        worker=worker, logging=LoggingSettings(level="DEBUG"),
    )
    return replace(base, **overrides)


def make_video(path: Path, *, size: int = 2048, age: float = 3600.0) -> Path:
    """A stand-in recording: bytes with a video extension, finished `age` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def write_bad_video(folder: Path, stem: str, kind: str, *, good: Path | None = None) -> Path:
    """What sites produce: "empty", "random" bytes named .mp4, "text" renamed .mkv, a "truncated" copy of
    `good` (the recorder died before the index), a "directory" named like a video, or a "missing" file."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = folder / f"{stem}.mp4"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "random":
        bad.write_bytes(os.urandom(50_000))
    elif kind == "text":
        bad = folder / f"{stem}.mkv"
        bad.write_text("this is not a video\n" * 100)
    elif kind == "truncated":
        assert good is not None
        data = good.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "directory":
        bad.mkdir()
    elif kind != "missing":
        raise ValueError(kind)
    return bad


def make_tree(videos: Path, names: list[str]) -> list[Path]:
    return [make_video(videos / name) for name in names]


def read_runs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def max_overlap(runs: list[dict[str, Any]]) -> int:
    """Most runs alive at one instant, from the start/end stamps the fake worker records."""
    edges = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    best = cur = 0
    for _, step in edges:
        cur += step
        best = max(best, cur)
    return best


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "supervisor", *args]


def write_settings(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class FaultyStore:
    """A real JobStore whose chosen methods fail on their next calls, then work again.

    `faults={"mark_running": [exc, exc]}` raises those exceptions on the first two calls of mark_running;
    `raised` lists what was raised. Everything else goes straight to the real store.
    """

    def __init__(self, store: Any, faults: dict[str, list[BaseException]]) -> None:
        self._store = store
        self._faults = {name: list(excs) for name, excs in faults.items()}
        self.raised: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        plan = self._faults.get(name)
        if plan is None or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if plan:
                self.raised.append(name)
                raise plan.pop(0)
            return attr(*args, **kwargs)

        return call


def disk_full() -> BaseException:
    import sqlite3

    return sqlite3.OperationalError("database or disk is full")
