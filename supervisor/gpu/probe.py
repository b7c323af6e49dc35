"""The probe seam: one reading per GPU, from NVML, a script, a model, or nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# NVML clock event ("throttle") reason bits.
THROTTLE_SW_POWER_CAP = 0x4
THROTTLE_HW_SLOWDOWN = 0x8
THROTTLE_SW_THERMAL = 0x20
THROTTLE_HW_THERMAL = 0x40
THROTTLE_HW_POWER_BRAKE = 0x80
THERMAL_THROTTLE_MASK = THROTTLE_HW_SLOWDOWN | THROTTLE_SW_THERMAL | THROTTLE_HW_THERMAL | THROTTLE_HW_POWER_BRAKE
THROTTLE_NAMES = {
    THROTTLE_SW_POWER_CAP: "sw_power_cap",
    THROTTLE_HW_SLOWDOWN: "hw_slowdown",
    THROTTLE_SW_THERMAL: "sw_thermal_slowdown",
    THROTTLE_HW_THERMAL: "hw_thermal_slowdown",
    THROTTLE_HW_POWER_BRAKE: "hw_power_brake_slowdown",
}


def throttle_names(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_NAMES.items() if mask & bit]


@dataclass(frozen=True, slots=True)
class GpuReading:
    """What one poll saw of one GPU. Every value is optional: cards differ in what they report."""

    index: int
    temperature: float | None = None
    utilization: float | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    throttle_mask: int = 0
    slowdown_temp: float | None = None
    shutdown_temp: float | None = None
    error: str | None = None
    # A GPU that cannot be trusted with work: lost ("fallen off the bus"), an Xid critical error, or new
    # uncorrectable ECC errors. Says what happened; the GPU takes no new job for the rest of the run.
    fault: str | None = None
    # GPU memory each process uses on it (MB by pid), where the probe can see processes.
    process_memory_mb: tuple[tuple[int, float], ...] = ()

    @property
    def known(self) -> bool:
        return self.error is None and self.temperature is not None and self.fault is None

    @property
    def memory_free_mb(self) -> float | None:
        if self.memory_used_mb is None or self.memory_total_mb is None:
            return None
        return self.memory_total_mb - self.memory_used_mb

    @property
    def thermal_throttle(self) -> bool:
        return bool(self.throttle_mask & THERMAL_THROTTLE_MASK)


class GpuProbe(Protocol):
    """Reads every monitored GPU once. `read()` is quick (NVML: about 0.1 ms a GPU)."""

    name: str

    def indices(self) -> list[int]: ...

    def read(self) -> list[GpuReading]: ...

    def watch_load(self, load: LoadSource) -> None:
        """Told once how many jobs run on each GPU; a real card measures its own load and ignores it."""
        ...

    def close(self) -> None: ...


GpuId = int | None  # None: no GPU pinning (no monitoring, or a CPU-only host)
LoadSource = Callable[[], dict[int, int]]


class ProbeUnavailable(Exception):
    """The probe cannot run here (no driver, no library); the caller falls back to no monitoring."""


class NoProbe:
    """No GPU monitoring: the supervisor runs at max_parallel."""

    name = "none"

    def indices(self) -> list[int]:
        return []

    def read(self) -> list[GpuReading]:
        return []

    def watch_load(self, load: LoadSource) -> None:
        pass

    def close(self) -> None:
        pass
