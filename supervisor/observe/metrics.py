"""Prometheus metrics on `[metrics] listen` (127.0.0.1:9808 by default), from the supervisor's hooks."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from supervisor import __version__
from supervisor.observe.observers import Observer
from supervisor.observe.web import GpuTrend, Pages, Sources, serve

if TYPE_CHECKING:
    from collections.abc import Sequence

    from supervisor.jobs.model import JobState
    from supervisor.observe.snapshot import RunningView, Snapshot
    from supervisor.process.runner import Outcome
    from supervisor.protocol.hours import HourRow

log = structlog.get_logger("supervisor.observe.metrics")
NS = "video_supervisor"
DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
HEALTH_STATES = ("healthy", "warm", "critical", "unknown", "lost")


def _close_server(server: Any) -> None:
    server.shutdown()
    server.server_close()


class Metrics(Observer):
    """Owns one registry (no global state) and, when listening, the HTTP endpoint that serves it, with the
    daemon's page and its JSON when `sources` says where to read them (observe/web.py)."""

    def __init__(self, listen: str = "", sources: Sources | None = None) -> None:
        self.listen = listen
        self.sources = sources
        self.trend = GpuTrend()
        r = self.registry = CollectorRegistry()
        self.jobs = Gauge(f"{NS}_jobs", "Jobs in the store, by state", ["state"], registry=r)
        self.queue_depth = Gauge(f"{NS}_queue_depth", "Jobs waiting to start, including those waiting to retry",
                                 registry=r)
        self.running = Gauge(f"{NS}_running_jobs", "Workers running now", registry=r)
        self.limit = Gauge(f"{NS}_parallel_limit", "Parallel job limit in force, per GPU", ["gpu"], registry=r)
        self.gpu_temp = Gauge(f"{NS}_gpu_temperature_celsius", "GPU temperature", ["gpu"], registry=r)
        self.gpu_util = Gauge(f"{NS}_gpu_utilization_ratio", "GPU utilization (0-1)", ["gpu"], registry=r)
        self.gpu_mem_used = Gauge(f"{NS}_gpu_memory_used_bytes", "GPU memory in use", ["gpu"], registry=r)
        self.gpu_mem_total = Gauge(f"{NS}_gpu_memory_total_bytes", "GPU memory in all", ["gpu"], registry=r)
        self.gpu_health = Gauge(f"{NS}_gpu_health", "1 for the GPU's current health state, 0 for the others",
                                ["gpu", "state"], registry=r)
        self.gpu_band = Gauge(f"{NS}_gpu_band_start_celsius", "Where the warm and the critical band start; source: "
                              "the card's own slowdown point or the settings", ["gpu", "band", "source"], registry=r)
        self.gpu_job_memory = Gauge(f"{NS}_gpu_expected_job_memory_bytes", "A job's expected peak GPU memory, "
                                    "as admission by memory uses it", registry=r)
        self.duration = Histogram(f"{NS}_job_duration_seconds", "Wall time of finished job attempts",
                                  ["camera"], buckets=DURATION_BUCKETS, registry=r)
        self.video_seconds = Counter(f"{NS}_video_processed_seconds", "Seconds of video processed", ["camera"],
                                     registry=r)
        self.damaged_videos = Counter(f"{NS}_damaged_videos", "Videos done with part of the recording undecodable",
                                      ["camera"], registry=r)
        self.damaged_seconds = Counter(f"{NS}_damaged_video_seconds", "Seconds of recordings found undecodable",
                                       ["camera"], registry=r)
        self.fps = Gauge(f"{NS}_worker_frames_per_second", "Frames per second last reported by a running worker",
                         ["camera"], registry=r)
        self.finished = Counter(f"{NS}_job_attempts", "Finished job attempts, by outcome", ["camera", "outcome"],
                                registry=r)
        self.retries = Counter(f"{NS}_job_retries", "Failed attempts that will be tried again", registry=r)
        self.rescans = Counter(f"{NS}_rescans", "Scans of the videos directory", registry=r)
        self.last_scan = Gauge(f"{NS}_last_successful_scan_timestamp_seconds", "When the last scan finished",
                               registry=r)
        self.person_seconds = Counter(f"{NS}_person_seconds", "People x seconds seen in each region",
                                      ["camera", "region"], registry=r)
        self.occupied_seconds = Counter(f"{NS}_occupied_seconds", "Seconds each region had somebody in it",
                                        ["camera", "region"], registry=r)
        self.store_paused = Gauge(f"{NS}_store_paused", "1 while the job store refuses writes (the run waits)",
                                  registry=r)
        self.share_state = Gauge(f"{NS}_share_state", "1 for the videos share's state (ok, slow, stalled)",
                                 ["state"], registry=r)
        self.share_latency = Gauge(f"{NS}_share_read_latency_seconds", "The last timed 64 KiB read of a recording",
                                   registry=r)
        self.share_throughput = Gauge(f"{NS}_share_read_bytes_per_second", "What the running workers read from "
                                      "the videos share, all together", registry=r)
        self.share_read_wait = Gauge(f"{NS}_share_read_wait_ratio", "The share of their time running workers wait "
                                     "on reads (0-1)", registry=r)
        self.store_round_trip = Gauge(f"{NS}_store_round_trip_seconds", "The job store's last count query",
                                      registry=r)
        self.heartbeat = Gauge(f"{NS}_heartbeat_timestamp_seconds", "When the scheduler last looked at itself "
                               "(every couple of seconds while its loop runs)", registry=r)
        self.build = Gauge(f"{NS}_build_info", "The running version (always 1)", ["version"], registry=r)
        self.build.labels(__version__).set(1)
        self._server: Any = None
        self.port: int | None = None

    async def start(self, snapshot: Snapshot) -> None:
        if not self.listen:
            return
        host, _, port = self.listen.rpartition(":")
        try:
            self._server = serve(host.strip("[]"), int(port), Pages(self.sources, self.registry, self.trend))
        except OSError as exc:
            log.warning("metrics_unavailable", listen=self.listen, error=exc.strerror or str(exc))
            return
        self.port = self._server.server_address[1]
        log.info("metrics_listening", listen=f"{host}:{self.port}")

    async def stop(self) -> None:
        if self._server is not None:
            # shutdown() waits for the server thread's next poll (up to half a second): not on the way out.
            server, self._server = self._server, None
            threading.Thread(target=_close_server, args=(server,), name="metrics-close", daemon=True).start()

    def job_finished(self, rj: RunningView, outcome: Outcome, state: JobState) -> None:
        camera = rj.job.camera
        self.duration.labels(camera).observe(outcome.duration)
        self.finished.labels(camera, str(outcome.kind)).inc()
        if str(state) == "failed":
            self.retries.inc()
        done = outcome.done
        if str(state) == "done" and done is not None:
            if done.video_seconds is not None and done.video_seconds > 0:
                self.video_seconds.labels(camera).inc(done.video_seconds)
            if done.damaged_seconds > 0:
                self.damaged_videos.labels(camera).inc()
                self.damaged_seconds.labels(camera).inc(done.damaged_seconds)
        with contextlib.suppress(KeyError):
            self.fps.remove(camera)  # no worker of this camera runs now

    def people_counted(self, camera: str, hours: Sequence[HourRow]) -> None:
        for row in hours:
            if row.person_seconds > 0:
                self.person_seconds.labels(camera, row.region).inc(row.person_seconds)
            if row.occupied_seconds > 0:
                self.occupied_seconds.labels(camera, row.region).inc(row.occupied_seconds)

    def scan_completed(self, found: int, new: int) -> None:
        self.rescans.inc()
        self.last_scan.set(time.time())

    def tick(self, snap: Snapshot) -> None:
        self.heartbeat.set(snap.at)
        self.trend.set(snap.gpu_trends)
        self.store_paused.set(1 if snap.store_trouble else 0)
        share = snap.io.get("share") or {}
        for state in ("ok", "slow", "stalled"):
            self.share_state.labels(state).set(1 if share.get("state", "ok") == state else 0)
        # Each in base units: seconds, bytes per second, a ratio.
        for gauge, value, scale in ((self.share_latency, share.get("read_latency_ms"), 1e-3),
                                    (self.share_throughput, share.get("throughput_mb_s"), 2**20),
                                    (self.share_read_wait, share.get("read_wait_share"), 1.0),
                                    (self.store_round_trip, snap.io.get("store_round_trip_ms"), 1e-3)):
            if isinstance(value, (int, float)):
                gauge.set(value * scale)
        for state, n in snap.job_counts.items():
            self.jobs.labels(state).set(n)
        q = snap.queue_status()
        self.queue_depth.set(q["queued"] + q["waiting_retry"])
        self.running.set(q["running"])
        for gpu, limit in snap.limits.items():
            self.limit.labels("none" if gpu is None else str(gpu)).set(limit)
        for g in snap.gpus:
            label = str(g["gpu"])
            if g["temperature"] is not None:
                self.gpu_temp.labels(label).set(g["temperature"])
            if g["utilization"] is not None:
                self.gpu_util.labels(label).set(g["utilization"] / 100.0)
            if g["memory_used_mb"] is not None:
                self.gpu_mem_used.labels(label).set(g["memory_used_mb"] * 2**20)
            if g["memory_total_mb"] is not None:
                self.gpu_mem_total.labels(label).set(g["memory_total_mb"] * 2**20)
            for state in HEALTH_STATES:
                self.gpu_health.labels(label, state).set(1 if g["health"] == state else 0)
            if g.get("temp_limit") is not None:
                source = "card" if str(g.get("thresholds_from", "settings")).startswith("card") else "settings"
                other = "settings" if source == "card" else "card"
                for band, key in (("warm", "temp_warm"), ("critical", "temp_limit")):
                    self.gpu_band.labels(label, band, source).set(g[key])
                    with contextlib.suppress(KeyError):
                        self.gpu_band.remove(label, band, other)
            if g.get("expected_job_mb") is not None:
                self.gpu_job_memory.set(g["expected_job_mb"] * 2**20)
        for rj in snap.running:
            fps = rj.progress.get("fps")
            if isinstance(fps, (int, float)):
                self.fps.labels(rj.job.camera).set(fps)
