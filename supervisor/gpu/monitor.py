"""The GPU-health coroutine: poll the probe, decide per GPU, hand the targets to whoever sizes the slots.

It returns targets (a limit, whether to accept new jobs) and never touches the slots itself: the
scheduler applies them (scheduling/slots.py), so the GPU package depends on nothing above it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from supervisor.config import GpuSettings
from supervisor.gpu.nvml import NvmlProbe
from supervisor.gpu.policy import Health, HealthDecision, HealthPolicy, PolicyConfig
from supervisor.gpu.probe import GpuId, GpuProbe, GpuReading, NoProbe, ProbeUnavailable, throttle_names
from supervisor.gpu.scripted import ScriptedProbe
from supervisor.gpu.simulated import SimulatedProbe
from supervisor.gpu.trends import GpuTrends

log = structlog.get_logger("supervisor.gpu")

NO_DRIVER_WARNING = "NVIDIA driver not available: running at --max-parallel without GPU monitoring"


def open_probe(settings: GpuSettings, clock: Callable[[], float] = time.monotonic) -> tuple[GpuProbe, str | None]:
    """The probe the settings ask for; NVML that cannot start falls back to none, with a reason."""
    kind = settings.probe
    if kind == "none":
        return NoProbe(), None
    if kind == "simulated":
        sim = settings.simulated
        return SimulatedProbe(sim.count, ambient=sim.ambient, heat_per_job=sim.heat_per_job, tau=sim.tau,
                              noise=sim.noise, clock=clock), None
    if kind.startswith("scripted:"):
        return ScriptedProbe(Path(kind.removeprefix("scripted:")), clock=clock), None
    try:
        return NvmlProbe(settings.gpus), None
    except ProbeUnavailable as exc:
        return NoProbe(), str(exc)


@dataclass(frozen=True, slots=True)
class SlotTarget:
    """What one GPU's slots should be now: the scheduler brings its semaphore to `limit` and admits new jobs
    there only while `accepting`; `temperature` breaks ties between GPUs; `reason` is for the log."""

    gpu: GpuId
    limit: int
    accepting: bool = True
    temperature: float | None = None
    reason: str = ""
    memory_free_mb: float | None = None  # what the card has free now (admission by memory)
    process_memory_mb: tuple[tuple[int, float], ...] = ()  # GPU memory by pid, where the probe sees it
    health: str = ""


# What the scheduler's slots hold now, per GPU: (limit, running, accepting). Read for snapshots only.
SlotFigures = Callable[[], Mapping[GpuId, tuple[int, int, bool]]]


class GpuMonitor:
    """Owns the per-GPU policies and the latest readings; turns each poll into slot targets. `gpus`: the slot
    groups (None for a run without GPUs); `slots`: what the slots hold now, for the snapshot only."""

    def __init__(self, probe: GpuProbe, gpus: Sequence[GpuId], config: PolicyConfig, *, poll_seconds: float,
                 snapshot_seconds: float, slots: SlotFigures | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 on_health_change: Callable[[int, str, str, str], None] | None = None) -> None:
        self.probe = probe
        self.gpus = list(gpus)
        self.config = config
        self.poll_seconds = poll_seconds
        self.snapshot_seconds = snapshot_seconds
        self._slots: SlotFigures = slots if slots is not None else dict
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self.trends = GpuTrends()
        self._on_health_change = on_health_change
        self.policies = {gpu: HealthPolicy(config) for gpu in self.gpus if gpu is not None}
        self.readings: dict[int, GpuReading] = {}
        self.decisions: dict[int, HealthDecision] = {}
        self._errors_seen: dict[int, str] = {}
        self._last_snapshot = float("-inf")

    @property
    def monitored(self) -> bool:
        return bool(self.policies)

    @property
    def all_lost(self) -> bool:
        """Every monitored GPU is lost or failing: nothing here can run a job until the driver recovers."""
        return bool(self.policies) and all(p.fault is not None for p in self.policies.values())

    def lost(self, gpu: GpuId) -> bool:
        policy = self.policies.get(gpu) if gpu is not None else None
        return policy is not None and policy.fault is not None

    def reconfigure(self, config: PolicyConfig, *, poll_seconds: float, snapshot_seconds: float
                    ) -> list[SlotTarget]:
        """New settings (a reload): keep each GPU's state, judge the next reading by the new table; the targets
        the new settings give now (a fresh poll when monitored, else every group at max_parallel)."""
        self.config = config
        self.poll_seconds = poll_seconds
        self.snapshot_seconds = snapshot_seconds
        for policy in self.policies.values():
            policy.config = config
        if self.policies:
            return self.poll_once()
        return [SlotTarget(gpu, config.max_parallel, reason="no GPU monitoring") for gpu in self.gpus]

    def poll_once(self) -> list[SlotTarget]:
        """Read the probe once and decide every monitored GPU's target."""
        now = self._clock()
        try:
            readings = {r.index: r for r in self.probe.read()}
        except Exception as exc:  # a probe must never take the daemon down
            log.error("gpu_probe_failed", error=f"{type(exc).__name__}: {exc}")
            readings = {}
        changed = False
        targets: list[SlotTarget] = []
        for gpu, policy in self.policies.items():
            reading = readings.get(gpu)
            self._note_errors(gpu, reading)
            if reading is not None:
                self.readings[gpu] = reading
            decision = policy.decide(reading, now)
            previous = self.decisions.get(gpu)
            self.decisions[gpu] = decision
            if (previous.accepting if previous is not None else True) != decision.accepting:
                log.info("gpu_admission_changed", gpu=gpu, accepting=decision.accepting, reason=decision.reason)
            targets.append(SlotTarget(gpu, decision.limit, decision.accepting,
                                      reading.temperature if reading is not None else None,
                                      f"gpu {gpu}: {decision.reason}, {decision.health}",
                                      reading.memory_free_mb if reading is not None else None,
                                      reading.process_memory_mb if reading is not None else (),
                                      str(decision.health)))
            if reading is not None and reading.known:
                self.trends.add(gpu, reading, decision.limit, self._wall())
            before = previous.health if previous is not None else Health.UNKNOWN
            if (previous is not None or decision.health is Health.LOST) and before != decision.health:
                changed = True
                if decision.health is Health.LOST:
                    log.critical("gpu_lost", gpu=gpu, reason=decision.reason,
                                 action="no new job on it; its running jobs' failures are not charged")
                else:
                    log.info("gpu_health_changed", gpu=gpu, old=str(before), new=str(decision.health),
                             reason=decision.reason)
                if self._on_health_change is not None:
                    self._on_health_change(gpu, str(before), str(decision.health), decision.reason)
            if previous is not None and previous.monitored and not decision.monitored:
                log.warning("gpu_monitoring_lost", gpu=gpu, reason=decision.reason)
        # The seed's snapshot every 30 s, and one at every change of state.
        if changed or now - self._last_snapshot >= self.snapshot_seconds:
            self._last_snapshot = now
            self.log_snapshot()
        return targets

    def _note_errors(self, gpu: int, reading: GpuReading | None) -> None:
        error = reading.error if reading is not None else "no reading"
        if error:
            kind = error.split(":")[0]
            if self._errors_seen.get(gpu) != kind:
                self._errors_seen[gpu] = kind
                log.error("gpu_read_error", gpu=gpu, error=error)
        elif gpu in self._errors_seen:
            del self._errors_seen[gpu]
            log.info("gpu_read_recovered", gpu=gpu)

    def snapshot(self) -> list[dict[str, Any]]:
        out = []
        slots = self._slots()
        for gpu in self.policies:
            r = self.readings.get(gpu)
            d = self.decisions.get(gpu)
            limit, running, accepting = slots.get(gpu, (d.limit if d else self.config.max_parallel, 0,
                                                         d.accepting if d else True))
            out.append({
                "gpu": gpu,
                "temperature": r.temperature if r else None,
                "utilization": r.utilization if r else None,
                "memory_used_mb": round(r.memory_used_mb) if r and r.memory_used_mb is not None else None,
                "memory_total_mb": round(r.memory_total_mb) if r and r.memory_total_mb is not None else None,
                "power_w": r.power_w if r else None,
                "throttle": throttle_names(r.throttle_mask) if r else [],
                "health": str(d.health) if d else str(Health.UNKNOWN),
                "temp_warm": d.thresholds.warm if d and d.thresholds else self.config.temp_warm,
                "temp_limit": d.thresholds.limit if d and d.thresholds else self.config.temp_limit,
                "thresholds_from": d.thresholds.source if d and d.thresholds else "settings",
                "slowdown_temp": r.slowdown_temp if r else None,
                "shutdown_temp": r.shutdown_temp if r else None,
                "fault": self.policies[gpu].fault,
                "last_hour": self.trends.summary(gpu),
                "limit": limit,
                "running": running,
                "accepting": accepting,
            })
        return out

    def log_snapshot(self) -> None:
        if self.policies:
            log.info("gpu_snapshot", gpus=self.snapshot())

    async def run(self, apply: Callable[[list[SlotTarget]], None]) -> None:
        """Poll every poll_seconds and hand each poll's targets to `apply` (the scheduler's slots)."""
        if not self.policies:
            return
        while True:
            await self._sleep(self.poll_seconds)
            apply(self.poll_once())
