"""The GPU-health coroutine: poll the probe, decide per GPU, set the slot targets.

It only writes targets (limits, accepting); the dispatcher acts on them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from supervisor.config import GpuSettings
from supervisor.gpu.nvml import NvmlProbe
from supervisor.gpu.policy import Decision, Health, HealthPolicy, PolicyConfig
from supervisor.gpu.probe import GpuProbe, GpuReading, NoProbe, ProbeUnavailable, throttle_names
from supervisor.gpu.scripted import ScriptedProbe
from supervisor.gpu.simulated import SimulatedProbe
from supervisor.scheduling.slots import SlotPool

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


class GpuMonitor:
    """Owns the per-GPU policies and the latest readings; sets the SlotPool's targets."""

    def __init__(self, probe: GpuProbe, slots: SlotPool, config: PolicyConfig, *, poll_seconds: float,
                 snapshot_seconds: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 on_health_change: Callable[[int, str, str, str], None] | None = None) -> None:
        self.probe = probe
        self.slots = slots
        self.config = config
        self.poll_seconds = poll_seconds
        self.snapshot_seconds = snapshot_seconds
        self._clock = clock
        self._sleep = sleep
        self._on_health_change = on_health_change
        self.policies = {gpu: HealthPolicy(config) for gpu in slots.gpus if gpu is not None}
        self.readings: dict[int, GpuReading] = {}
        self.decisions: dict[int, Decision] = {}
        self._errors_seen: dict[int, str] = {}
        self._last_snapshot = float("-inf")
        self.changes = 0

    @property
    def monitored(self) -> bool:
        return bool(self.policies)

    def reconfigure(self, config: PolicyConfig) -> None:
        """New thresholds (a reload): keep each GPU's state, judge the next reading by the new table."""
        self.config = config
        for policy in self.policies.values():
            policy.config = config
        if not self.policies:
            for gpu in self.slots.gpus:
                self._apply(gpu, config.max_parallel, "no GPU monitoring")

    def _apply(self, gpu: int | None, limit: int, why: str) -> None:
        old = self.slots.limit(gpu)
        if old != limit:
            self.slots.set_limit(gpu, limit)
            self.changes += 1
            log.info("parallelism_changed", gpu=gpu, old=old, new=limit, reason=why,
                     message=f"parallelism {old} -> {limit} ({why})")

    def poll_once(self) -> None:
        now = self._clock()
        try:
            readings = {r.index: r for r in self.probe.read()}
        except Exception as exc:  # a probe must never take the daemon down
            log.error("gpu_probe_failed", error=f"{type(exc).__name__}: {exc}")
            readings = {}
        changed = False
        for gpu, policy in self.policies.items():
            reading = readings.get(gpu)
            self._note_errors(gpu, reading)
            if reading is not None:
                self.readings[gpu] = reading
            decision = policy.decide(reading, now)
            previous = self.decisions.get(gpu)
            self.decisions[gpu] = decision
            self.slots.set_temperature(gpu, reading.temperature if reading is not None else None)
            if self.slots.accepting(gpu) != decision.accepting:
                self.slots.set_accepting(gpu, decision.accepting)
                log.info("gpu_admission_changed", gpu=gpu, accepting=decision.accepting, reason=decision.reason)
            self._apply(gpu, decision.limit, f"gpu {gpu}: {decision.reason}, {decision.health}")
            if previous is not None and previous.health != decision.health:
                changed = True
                log.info("gpu_health_changed", gpu=gpu, old=str(previous.health), new=str(decision.health),
                         reason=decision.reason)
                if self._on_health_change is not None:
                    self._on_health_change(gpu, str(previous.health), str(decision.health), decision.reason)
            if previous is not None and previous.monitored and not decision.monitored:
                log.warning("gpu_monitoring_lost", gpu=gpu, reason=decision.reason)
        # The seed's snapshot every 30 s, and one at every change of state.
        if changed or now - self._last_snapshot >= self.snapshot_seconds:
            self._last_snapshot = now
            self.log_snapshot()

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
        for gpu in self.policies:
            r = self.readings.get(gpu)
            d = self.decisions.get(gpu)
            out.append({
                "gpu": gpu,
                "temperature": r.temperature if r else None,
                "utilization": r.utilization if r else None,
                "memory_used_mb": round(r.memory_used_mb) if r and r.memory_used_mb is not None else None,
                "memory_total_mb": round(r.memory_total_mb) if r and r.memory_total_mb is not None else None,
                "power_w": r.power_w if r else None,
                "throttle": throttle_names(r.throttle_mask) if r else [],
                "health": str(d.health) if d else str(Health.UNKNOWN),
                "limit": self.slots.limit(gpu),
                "running": self.slots.held(gpu),
                "accepting": self.slots.accepting(gpu),
            })
        return out

    def log_snapshot(self) -> None:
        if self.policies:
            log.info("gpu_snapshot", gpus=self.snapshot())

    async def run(self) -> None:
        if not self.policies:
            return
        while True:
            await self._sleep(self.poll_seconds)
            self.poll_once()
