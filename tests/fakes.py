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

    `faults={"claim": [exc, exc]}` raises those exceptions on the first two calls of claim;
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


def engine(store: Any) -> Any:
    """The scheduler's view of a store the test opened (and closes): its calls on a thread of their own."""
    from supervisor.jobs.sqlite_engine import SqliteEngine

    return SqliteEngine(store, owned=False)


async def until(condition: Any, *, cap: float = 60.0) -> None:
    """Wait until `condition()` holds, for what real processes or threads bring about; fail after `cap`
    seconds, a bound only a hang reaches, never one a busy machine does (nothing is asserted on time)."""
    import asyncio

    deadline = time.monotonic() + cap
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {cap:g} s"
        await asyncio.sleep(0.01)


class ManualClock:
    """The scheduler's clock, moved by hand: `await clock.advance(5)` fires what falls due, in time order,
    and lets the loop run everything those wake-ups start before moving on."""

    def __init__(self, start: float | None = None) -> None:
        import asyncio

        self._asyncio = asyncio
        self.now = 0.0
        self._epoch = time.time() if start is None else start  # files made by the test are in the past
        self._due: list[tuple[float, int, Any]] = []
        self._seq = 0

    def time(self) -> float:
        return self._epoch + self.now

    def monotonic(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any) -> Any:
        import heapq

        self._seq += 1
        entry = [self.now + max(0.0, delay), self._seq, callback, False]
        heapq.heappush(self._due, (entry[0], entry[1], entry))

        class _Timer:
            def cancel(self) -> None:
                entry[3] = True

        return _Timer()

    async def sleep(self, seconds: float) -> None:
        fut = self._asyncio.get_running_loop().create_future()
        self.call_later(seconds, lambda: fut.done() or fut.set_result(None))
        await fut

    def busy(self) -> bool:
        """Whether work off the loop (a store thread, a scan) is still under way; a test points it there."""
        return False

    async def settle(self) -> None:
        """Let every ready coroutine run, and every store call or scan in a thread come back, until nothing
        moves. The only real waiting is for those threads; no outcome depends on how long they take."""
        import time as real_time

        quiet = 0
        deadline = real_time.monotonic() + 60
        while quiet < 2:
            for _ in range(20):
                await self._asyncio.sleep(0)
            if self.busy():
                quiet = 0
                assert real_time.monotonic() < deadline, "a store call or scan never came back"
                await self._asyncio.sleep(0.0005)
            else:
                quiet += 1

    async def advance(self, seconds: float) -> None:
        import heapq

        end = self.now + seconds
        await self.settle()
        while self._due and self._due[0][0] <= end:
            when, _, entry = heapq.heappop(self._due)
            if entry[3]:
                continue
            self.now = max(self.now, when)
            entry[2]()
            await self.settle()
        self.now = end
        await self.settle()

    async def run_until(self, done: Any, *, step: float = 0.05, limit: float = 3600.0) -> None:
        """Advance in small steps until `done()` is true (or `limit` seconds of clock time pass)."""
        start = self.now
        while not done():
            assert self.now - start < limit, "the scenario never finished on the manual clock"
            await self.advance(step)


class FakeLauncher:
    """Runs a job's "worker" in-process on the manual clock. `script(video, attempt) -> (seconds, exit_code)`,
    (seconds, exit_code, result) or (seconds, exit_code, result, stderr); a script with a third parameter is
    given the attempt's environment too (its GPU). Every attempt is logged in `events` as (clock time,
    "start"/"end", video name, exit code)."""

    def __init__(self, clock: ManualClock, script: Any = None) -> None:
        self.clock = clock
        self.script = script or (lambda video, attempt: (1.0, 0))
        self.events: list[tuple[float, str, str, int | None]] = []
        self.running = 0
        self.peak = 0
        self.gpu_of: dict[str, str | None] = {}  # video: the GPU its last attempt was given

    def launch(self, spec: Any, *, on_event: Any, on_line: Any) -> Any:
        return _FakeRun(self, spec)

    def spans(self) -> list[tuple[float, float]]:
        """(start, end) of every finished attempt."""
        open_: dict[str, float] = {}
        out = []
        for at, kind, video, _ in self.events:
            if kind == "start":
                open_[video] = at
            else:
                out.append((open_.pop(video), at))
        return out

    def overlap_between(self, start: float, end: float) -> int:
        """The most attempts at once among those that began at or after `start` and ended by `end`."""
        edges = sorted(e for s, f in self.spans() if s >= start and f <= end for e in ((s, 1), (f, -1)))
        level = most = 0
        for _, d in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
            level += d
            most = max(most, level)
        return most


class _FakeRun:
    def __init__(self, launcher: FakeLauncher, spec: Any) -> None:
        self._launcher = launcher
        self.argv = list(spec.argv)
        self.env = dict(spec.env)
        self._stopped: Any = None

    async def run(self) -> Any:
        import asyncio

        from supervisor.process.runner import Outcome, OutcomeKind, classify
        from supervisor.protocol.events import DoneEvent

        launcher, clock = self._launcher, self._launcher.clock
        video = Path(self.env["VIDEO_SUPERVISOR_VIDEO"]).name
        import inspect

        attempt = int(self.env["VIDEO_SUPERVISOR_ATTEMPT"])
        if len(inspect.signature(launcher.script).parameters) >= 3:
            planned = launcher.script(video, attempt, self.env)
        else:
            planned = launcher.script(video, attempt)
        seconds, code = planned[0], planned[1]
        result = planned[2] if len(planned) > 2 and planned[2] is not None else {"event": "done", "video_seconds": 60}
        stderr = planned[3] if len(planned) > 3 else ""
        launcher.running += 1
        launcher.peak = max(launcher.peak, launcher.running)
        launcher.gpu_of[video] = self.env.get("VIDEO_SUPERVISOR_GPU")
        launcher.events.append((clock.now, "start", video, None))
        started = clock.now
        self._stopped = asyncio.get_running_loop().create_future()
        finished = asyncio.ensure_future(clock.sleep(seconds))
        try:
            await asyncio.wait({finished, self._stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            finished.cancel()
            launcher.running -= 1
        interrupted = self._stopped.done()
        timed_out = code == "timeout"  # the script says the attempt ran past its timeout
        code = 143 if interrupted or timed_out else code
        launcher.events.append((clock.now, "end", video, code))
        kind = classify(code, interrupted=interrupted, timed_out=timed_out)
        return Outcome(kind, code, "" if kind is OutcomeKind.SUCCEEDED else f"exit {code}", stderr_tail=stderr,
                       done=DoneEvent.from_event(result) if code == 0 else None, duration=clock.now - started)

    def request_stop(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    paused = False

    def pause(self) -> None:
        self.paused = True
        self._launcher.events.append((self._launcher.clock.now, "pause", Path(self.env["VIDEO_SUPERVISOR_VIDEO"]).name,
                                      None))

    def resume(self) -> None:
        self.paused = False
        self._launcher.events.append((self._launcher.clock.now, "resume", Path(self.env["VIDEO_SUPERVISOR_VIDEO"]).name,
                                      None))

    def kill_now(self) -> None:
        self.request_stop()
