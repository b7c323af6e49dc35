"""From GPU readings to a health state and a parallel limit: pure, no I/O.

- healthy below temp_warm: max_parallel; warm from temp_warm to temp_limit:
  warm_parallel; critical above temp_limit: critical_parallel.
- A card that reports its slowdown temperature (NVML) ends the bands below it:
  the critical band starts at the lower of temp_limit and slowdown minus
  slowdown_margin, so a card that slows down at 78 C is never run at 79.
- A lost or failing GPU (fallen off the bus, an Xid critical error, new
  uncorrectable ECC errors) takes no job for the rest of the run.
- Hotter states are entered at once; a cooler one only once the temperature
  is `hysteresis` degrees below the threshold it crossed.
- An active thermal or hardware slowdown makes the state critical.
- Too little free memory: no new job on that GPU (running ones go on).
- No reading: hold the last limit for a grace period, then max_parallel.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from supervisor.config import GpuSettings
from supervisor.gpu.probe import GpuReading, throttle_names


class Health(enum.StrEnum):
    HEALTHY = "healthy"
    WARM = "warm"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    LOST = "lost"


_RANK = {Health.HEALTHY: 0, Health.WARM: 1, Health.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    max_parallel: int = 4
    warm_parallel: int = 2
    critical_parallel: int = 1
    temp_warm: float = 70.0
    temp_limit: float = 80.0
    hysteresis: float = 3.0
    min_free_memory_mb: float = 1500.0
    unknown_grace_seconds: float = 30.0
    slowdown_margin: float = 3.0

    @classmethod
    def from_settings(cls, gpu: GpuSettings, max_parallel: int) -> PolicyConfig:
        return cls(
            max_parallel=max_parallel,
            warm_parallel=min(gpu.warm_parallel, max_parallel),
            critical_parallel=min(gpu.critical_parallel, max_parallel),
            temp_warm=gpu.temp_warm, temp_limit=gpu.temp_limit, hysteresis=gpu.hysteresis,
            min_free_memory_mb=gpu.min_free_memory_mb, unknown_grace_seconds=gpu.unknown_grace_seconds,
            slowdown_margin=gpu.slowdown_margin,
        )

    def thresholds(self, slowdown_temp: float | None) -> Thresholds:
        """The bands in use for a card: the settings', ended below the card's own slowdown point."""
        if slowdown_temp is not None and slowdown_temp - self.slowdown_margin < self.temp_limit:
            limit = slowdown_temp - self.slowdown_margin
            return Thresholds(min(self.temp_warm, limit), limit,
                              f"card slowdown {slowdown_temp:g} C - {self.slowdown_margin:g} C")
        return Thresholds(self.temp_warm, self.temp_limit, "settings")

    def limit_for(self, health: Health) -> int:
        return {
            Health.HEALTHY: self.max_parallel,
            Health.WARM: min(self.warm_parallel, self.max_parallel),
            Health.CRITICAL: min(self.critical_parallel, self.max_parallel),
            Health.UNKNOWN: self.max_parallel,
            Health.LOST: 0,
        }[health]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The temperatures that start the warm and the critical band, and where they came from."""

    warm: float
    limit: float
    source: str = "settings"


@dataclass(frozen=True, slots=True)
class HealthDecision:
    health: Health
    limit: int
    accepting: bool
    reason: str
    monitored: bool = True  # False once readings have been missing past the grace period
    thresholds: Thresholds | None = None  # None until a reading said what the card is


def classify_temperature(temperature: float, warm: float, limit: float) -> Health:
    if temperature > limit:
        return Health.CRITICAL
    if temperature >= warm:
        return Health.WARM
    return Health.HEALTHY


class HealthPolicy:
    """One GPU's policy; remembers the previous state (hysteresis) and the last good reading time."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self._state = Health.HEALTHY
        self._last_known_at: float | None = None
        self._last: HealthDecision | None = None
        self._fault: str | None = None  # once a GPU is lost or failing, it stays so for the run

    @property
    def state(self) -> Health:
        return self._state

    @property
    def fault(self) -> str | None:
        return self._fault

    def decide(self, reading: GpuReading | None, now: float) -> HealthDecision:
        c = self.config
        if reading is not None and reading.fault and self._fault is None:
            self._fault = reading.fault
        if self._fault is not None:
            self._state = Health.LOST
            decision = HealthDecision(Health.LOST, 0, False, f"{self._fault}: no new job until the daemon restarts")
            self._last = decision
            return decision
        if reading is None or not reading.known:
            decision = self._decide_unknown(reading, now)
            self._last = decision
            return decision
        self._last_known_at = now
        temp = reading.temperature
        assert temp is not None
        bands = c.thresholds(reading.slowdown_temp)
        if reading.thermal_throttle:
            health = Health.CRITICAL
            reason = "throttled: " + ",".join(throttle_names(reading.throttle_mask))
        else:
            health = classify_temperature(temp, bands.warm, bands.limit)
            if _RANK[health] < _RANK.get(self._state, 0):
                # Cooling down: only leave a state once clearly below its threshold.
                health = classify_temperature(temp, bands.warm - c.hysteresis, bands.limit - c.hysteresis)
            reason = f"{temp:.0f} C"
            if bands.source != "settings":
                reason += f" (limit {bands.limit:g} C: {bands.source})"
        self._state = health
        accepting = True
        free = reading.memory_free_mb
        if free is not None and free < c.min_free_memory_mb:
            accepting = False
            reason += f", {free:.0f} MB free < {c.min_free_memory_mb:.0f} MB"
        decision = HealthDecision(health, c.limit_for(health), accepting, reason, thresholds=bands)
        self._last = decision
        return decision

    def _decide_unknown(self, reading: GpuReading | None, now: float) -> HealthDecision:
        c = self.config
        why = reading.error if reading is not None and reading.error else "no reading"
        if self._last_known_at is None:
            # Never had a reading: the grace period runs from the first failed poll.
            self._last_known_at = now
        held = self._last
        if now - self._last_known_at < c.unknown_grace_seconds and held is not None and held.monitored:
            return HealthDecision(Health.UNKNOWN, held.limit, held.accepting, f"{why}; holding limit {held.limit}")
        if now - self._last_known_at < c.unknown_grace_seconds and held is None:
            return HealthDecision(Health.UNKNOWN, c.limit_for(Health.CRITICAL) or 1, True,
                                  f"{why}; waiting for a reading")
        self._state = Health.HEALTHY
        return HealthDecision(Health.UNKNOWN, c.max_parallel, True, f"{why}; running without monitoring",
                              monitored=False)
