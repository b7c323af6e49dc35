"""What is it doing: the live snapshot the daemon keeps, and `video-supervisor status`.

The daemon rewrites `<state_db>.status.json` atomically every couple of
seconds (GPU readings, limits, running jobs with their progress). `status`
reads it together with the job store, so it works beside a running daemon and
without one, and needs no network port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiofiles

from supervisor.observe.estimate import Rates, format_duration, queue_eta, running_remaining
from supervisor.observe.observers import Observer

if TYPE_CHECKING:
    from supervisor.jobs.contract import JobReader
    from supervisor.observe.notify import Notifier
    from supervisor.observe.snapshot import Snapshot

STALE_AFTER_SECONDS = 15.0


class SpeedModel:
    """Per-camera processing speed: learnt from the store's history (which the scheduler re-reads now and
    then, off the loop), and kept up to date job by job in between: O(1) a finished job."""

    def __init__(self) -> None:
        self.rates = Rates({}, None)
        self._work: dict[str, tuple[float, float]] = {}  # camera -> (processing seconds, bytes) of done jobs
        self._history: Mapping[str, tuple[float, float, float]] | None = None

    def learn(self, history: Mapping[str, tuple[float, float, float]]) -> Rates:
        if history is not self._history:  # a fresh reading of the store
            self._history = history
            self._work = {cam: (v[0], v[1]) for cam, v in history.items()}
            self.rates = Rates.learn(self._work)
        return self.rates

    def job_done(self, camera: str, seconds: float, size: float) -> None:
        if seconds <= 0 or size <= 0:
            return
        secs, total = self._work.get(camera, (0.0, 0.0))
        self._work[camera] = (secs + seconds, total + size)
        self.rates = Rates.learn(self._work)


def running_jobs(snap: Snapshot, rates: Rates) -> list[dict[str, Any]]:
    out = []
    for rj in snap.running:
        p = rj.progress
        elapsed = snap.at - rj.started_at
        expected = rates.seconds_for(rj.job.camera, rj.job.size)
        remaining = running_remaining(p.get("frame"), p.get("frames"), p.get("fps"), expected, elapsed)
        percent = rj.percent()
        out.append({
            "job_id": rj.job.id, "camera": rj.job.camera, "video": str(rj.job.path), "gpu": rj.gpu,
            "attempt": rj.job.attempts, "started_at": rj.started_at, "elapsed_seconds": round(elapsed, 1),
            "percent": None if percent is None else round(percent, 1),
            "fps": p.get("fps"), "eta_seconds": None if remaining is None else round(remaining, 1),
        })
    return out


def build_snapshot(snap: Snapshot, speed: SpeedModel) -> dict[str, Any]:
    """The status file's content: what `video-supervisor status` reads beside the store."""
    rates = speed.learn(snap.history)
    running = running_jobs(snap, rates)
    # Queued and waiting-to-retry bytes; running jobs are counted by their own ETA.
    eta = queue_eta(dict(snap.pending_bytes), rates, [r["eta_seconds"] for r in running], snap.limit)
    return {
        "pid": os.getpid(), "mode": "daemon" if snap.daemon else "once", "updated_at": snap.at,
        "started_at": snap.started_at, "limit": snap.limit, "monitored": snap.monitored,
        "gpus": list(snap.gpus), "running": running, "queue": snap.queue_status(),
        "scans": snap.scans, "last_scan_at": snap.last_scan_at, "reloads": snap.reloads,
        "eta_seconds": eta, "store_trouble": snap.store_trouble, "io": dict(snap.io),
    }


def status_line(counts: Mapping[str, int], snapshot: dict[str, Any]) -> str:
    """One line for `systemctl status`: "3 running, 41 queued, 2 dead · gpu0 74 C warm, limit 2 · ETA 2h10m", in
    the words `status` uses (dead: given up on; a failed attempt waiting to retry is queued)."""
    queued = counts.get("queued", 0) + counts.get("failed", 0)
    parts = [f"{len(snapshot['running'])} running, {queued} queued, {counts.get('dead', 0)} dead"]
    gpus = []
    for g in snapshot["gpus"]:
        temp = f"{g['temperature']:.0f} C " if g["temperature"] is not None else ""
        gpus.append(f"gpu{g['gpu']} {temp}{g['health']}, limit {g['limit']}")
    parts.append(" · ".join(gpus) if gpus else f"no GPU monitoring, limit {snapshot['limit']}")
    if snapshot["eta_seconds"] is not None and (queued or snapshot["running"]):
        parts.append(f"ETA {format_duration(snapshot['eta_seconds'])}")
    if snapshot.get("store_trouble"):
        parts.insert(0, f"PAUSED: job store unavailable ({snapshot['store_trouble']})")
    return " · ".join(parts)


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o640)


class StatusFile(Observer):
    """Keeps the snapshot file and systemd's STATUS line current."""

    def __init__(self, path: Path, notifier: Notifier | None = None) -> None:
        self.path = path
        self._notifier = notifier
        self._writing: asyncio.Task[None] | None = None
        self._speed = SpeedModel()
        self.last: dict[str, Any] | None = None

    def tick(self, snap: Snapshot) -> None:
        snapshot = build_snapshot(snap, self._speed)
        self.last = snapshot
        if self._notifier is not None:
            self._notifier.status(status_line(snap.job_counts, snapshot))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write(snapshot))

    def job_finished(self, rj: Any, outcome: Any, state: Any) -> None:
        if str(state) == "done":
            self._speed.job_done(rj.job.camera, outcome.duration, rj.job.size)

    async def _write(self, snapshot: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            async with aiofiles.open(tmp, "w", opener=_private_opener) as f:
                await f.write(json.dumps(snapshot, default=str))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a full disk must not stop the scheduler; the store still has the truth

    async def stop(self) -> None:
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        with contextlib.suppress(OSError):
            self.path.unlink()


# --- the `status` command ---------------------------------------------------------------------


def gpu_details(g: Mapping[str, Any]) -> list[str]:
    """What else `status` says of a GPU: its bands and where they came from, a fault, memory admission, the
    last hour."""
    out = []
    if g.get("fault"):
        out.append(f"FAILED: {g['fault']}: takes no job until the daemon restarts")
    if g.get("temp_limit") is not None:
        card = ""
        if g.get("slowdown_temp") is not None:
            card = f"; the card slows down at {g['slowdown_temp']:g} C"
            if g.get("shutdown_temp") is not None:
                card += f", shuts down at {g['shutdown_temp']:g} C"
        out.append(f"bands: warm from {g['temp_warm']:g} C, critical above {g['temp_limit']:g} C "
                   f"({g.get('thresholds_from', 'settings')}){card}")
    if g.get("memory_cap") is not None:
        out.append(f"at most {g['memory_cap']} job(s) for a while: a job ran out of GPU memory")
    if g.get("memory_waiting"):
        out.append(f"waiting for GPU memory: {g['memory_waiting']}")
    hour = g.get("last_hour") or {}
    if hour.get("temperature_max") is not None:
        util = f", {hour['utilization_mean']:.0f}% busy on average" if hour.get("utilization_mean") is not None else ""
        out.append(f"last {hour['minutes']} min: {hour['temperature_min']:.0f}-{hour['temperature_max']:.0f} C"
                   f"{util}, limit as low as {hour['limit_min']}")
    return out


def gpu_trend_lines(gpus: Sequence[Mapping[str, Any]]) -> list[str]:
    """`report`'s lines of each GPU's last hour (from the running daemon's snapshot)."""
    out = []
    for g in gpus:
        if g.get("temperature_max") is None:
            continue
        util = f", {g['utilization_mean']:.0f}% busy on average" if g.get("utilization_mean") is not None else ""
        out.append(f"  gpu {g['gpu']}: {g['temperature_min']:.0f}-{g['temperature_max']:.0f} C over {g['minutes']} "
                   f"min{util}, limit as low as {g['limit_min']}")
    return out


def io_lines(io: Mapping[str, Any]) -> list[str]:
    """The videos share and the job store, as `status` says them."""
    share = io.get("share") or {}
    if not share:
        return []
    parts = [f"videos share: {share.get('state', 'ok')}"]
    if share.get("detail"):
        parts[0] += f" ({share['detail']})"
    if share.get("throughput_mb_s") is not None:
        parts.append(f"{share['jobs']} worker(s) read {share['throughput_mb_s']:g} MB/s in all, waiting "
                     f"{share['read_wait_share'] * 100:.0f} % on reads")
    if share.get("scan_seconds") is not None:
        parts.append(f"last scan {share['scan_seconds']:.1f} s")
    lines = ["; ".join(parts)]
    if share.get("pacing"):
        lines.append(f"  limit not raised: {share['pacing']}")
    if io.get("store_round_trip_ms") is not None:
        lines.append(f"job store: {io['store_round_trip_ms']:g} ms a query")
    return lines


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_snapshot(path: Path, now: float | None = None) -> dict[str, Any] | None:
    """The daemon's snapshot, or None when there is none or it is stale (the daemon is gone)."""
    now = time.time() if now is None else now
    try:
        snap = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(snap, dict) or now - float(snap.get("updated_at", 0)) > STALE_AFTER_SECONDS:
        return None
    if not _pid_alive(int(snap.get("pid", 0))):
        return None
    return snap


def collect_status(store: JobReader, snapshot: dict[str, Any] | None) -> dict[str, Any]:
    """What `status` shows: the store's figures, this host's daemon (its snapshot file), and with a shared
    store every daemon that beat in the last minute (host, pid, running jobs, GPUs)."""
    work = store.done_work_by_camera()
    rates = Rates.learn(work)
    counts = store.counts()
    damaged_videos, damaged_seconds, partial_videos = store.damage_totals()
    queued_by_camera = store.ready_count_by_camera()
    running = snapshot["running"] if snapshot else []
    limit = snapshot["limit"] if snapshot else None
    pending = store.pending_bytes_by_camera()
    eta = queue_eta(pending, rates, [r["eta_seconds"] for r in running], limit or 1) if snapshot else None
    # Each camera's waiting work as if it had the whole limit: how long its backlog alone would take.
    eta_by_camera = {camera: round(secs / max(1, limit or 1), 1) for camera, size in pending.items()
                     if (secs := rates.seconds_for(camera, size)) is not None}
    speed = {}
    for camera, (secs, _, video) in work.items():
        speed[camera] = {"processing_seconds": round(secs, 1), "video_seconds": round(video, 1),
                         "video_seconds_per_second": round(video / secs, 3) if secs and video else None}
    return {
        "daemon": {"running": snapshot is not None, "pid": snapshot["pid"] if snapshot else None,
                   "mode": snapshot["mode"] if snapshot else None,
                   "started_at": snapshot["started_at"] if snapshot else None},
        "gpus": snapshot["gpus"] if snapshot else [],
        "limit": limit, "running": running, "jobs": counts, "queued_by_camera": queued_by_camera,
        "eta_seconds_by_camera": eta_by_camera,
        "damaged": {"videos": damaged_videos, "seconds": round(damaged_seconds, 1)},
        "partial_videos": partial_videos,
        "recent_failures": [
            {"job_id": j.id, "camera": j.camera, "video": str(j.path), "state": str(j.state), "attempts": j.attempts,
             "error": (j.last_error or "").splitlines()[0][:300] if j.last_error else "",
             "finished_at": j.finished_at}
            for j in store.recent_failures()
        ],
        "speed": speed, "eta_seconds": None if eta is None else round(eta, 1),
        "store_trouble": snapshot.get("store_trouble") if snapshot else None,
        "io": snapshot.get("io", {}) if snapshot else {},
        "hosts": [{"host": h["host"], "pid": h["pid"], "running_jobs": int(h["running_jobs"]),
                   "heartbeat_at": h["heartbeat_at"], "gpus": (h.get("status") or {}).get("gpus", []),
                   "limit": (h.get("status") or {}).get("limit")}
                  for h in store.daemons()],
    }


def render_status(st: dict[str, Any]) -> str:
    lines = []
    d = st["daemon"]
    if d["running"]:
        up = format_duration(time.time() - d["started_at"]) if d["started_at"] else "?"
        lines.append(f"supervisor: running ({d['mode']}, pid {d['pid']}, up {up}), limit {st['limit']}")
    else:
        lines.append("supervisor: not running")
    if st.get("store_trouble"):
        lines.append(f"PAUSED: the job store refuses writes ({st['store_trouble']}); work resumes by itself")
    for h in st.get("hosts", []):
        gpus = ", ".join(f"gpu {g['gpu']} {g['temperature']:.0f} C {g['health']}" if g.get("temperature") is not None
                         else f"gpu {g['gpu']} {g['health']}" for g in h["gpus"]) or "no GPU monitoring"
        lines.append(f"host {h['host']} (pid {h['pid']}): {h['running_jobs']} running, limit {h['limit']}, {gpus}")
    for g in st["gpus"]:
        mem = ""
        if g.get("memory_used_mb") is not None and g.get("memory_total_mb"):
            mem = f", {g['memory_used_mb'] / 1024:.1f}/{g['memory_total_mb'] / 1024:.1f} GB"
        util = f", {g['utilization']:.0f}% busy" if g.get("utilization") is not None else ""
        temp = f"{g['temperature']:.0f} C" if g.get("temperature") is not None else "no reading"
        lines.append(f"gpu {g['gpu']}: {temp}{util}{mem}, {g['health']}, limit {g['limit']}, running {g['running']}")
        lines.extend(f"  {line}" for line in gpu_details(g))
    lines.extend(io_lines(st.get("io") or {}))
    j = st["jobs"]
    done = f"{j['done']} done"
    notes = []
    if st["damaged"]["videos"]:
        notes.append(f"{st['damaged']['videos']} damaged, {st['damaged']['seconds']:.1f} s unreadable")
    if st["partial_videos"]:
        notes.append(f"{st['partial_videos']} for their first seconds only")
    if notes:
        done += f" ({'; '.join(notes)})"
    lines.append(f"jobs: {done}, {j['running']} running, {j['queued'] + j['failed']} queued "
                 f"({j['failed']} waiting to retry), {j['dead']} dead")
    if st["running"]:
        lines.append("running:")
        for r in st["running"]:
            pct = f"{r['percent']:5.1f}%" if r["percent"] is not None else "    ?%"
            fps = f"{r['fps']:6.1f} fps" if r.get("fps") else "     ? fps"
            eta = format_duration(r["eta_seconds"]) if r["eta_seconds"] is not None else "?"
            lines.append(f"  {r['camera']:<14} {Path(r['video']).name:<36} {pct} {fps}  ETA {eta}")
    if st["queued_by_camera"]:
        per = ", ".join(f"{c} {n}" for c, n in sorted(st["queued_by_camera"].items()))
        lines.append(f"queue: {sum(st['queued_by_camera'].values())} ({per})")
    if st["eta_seconds"] is not None:
        lines.append(f"queue ETA: {format_duration(st['eta_seconds'])} (from each camera's measured speed)")
    if st["recent_failures"]:
        lines.append("recent failures:")
        for f in st["recent_failures"]:
            when = datetime.fromtimestamp(f["finished_at"]).strftime("%m-%d %H:%M") if f["finished_at"] else "?"
            lines.append(f"  {when} {f['camera']:<14} {Path(f['video']).name}: {f['state']} after "
                         f"{f['attempts']} attempt(s): {f['error']}")
    return "\n".join(lines)
