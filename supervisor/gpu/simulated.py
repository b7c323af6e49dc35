"""A first-order thermal model of GPUs, for tests and benchmarks.

Each GPU's temperature moves toward `ambient + heat_per_job * running_jobs`
with time constant `tau`; steps are exact exponentials, so the result does not
depend on how often it is read. `noise` adds sensor jitter (a seeded Gaussian,
in C) to what is read, as a real card's readings wobble with its load.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from supervisor.gpu.probe import GpuReading, LoadSource


class SimulatedProbe:
    name = "simulated"

    def __init__(self, count: int = 1, *, ambient: float = 45.0, heat_per_job: float = 13.0, tau: float = 60.0,
                 memory_total_mb: float = 24576.0, memory_per_job_mb: float = 2048.0, noise: float = 0.0,
                 seed: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ambient, self.heat_per_job, self.tau = ambient, heat_per_job, tau
        self.memory_total_mb, self.memory_per_job_mb = memory_total_mb, memory_per_job_mb
        self._clock = clock
        self.noise = noise
        self._rng = random.Random(seed)
        self._temps = {i: ambient for i in range(count)}
        self._last = clock()
        self._load: LoadSource = lambda: {}
        self._loads: dict[int, int] = {}

    def watch_load(self, load: LoadSource) -> None:
        self._load = load

    def indices(self) -> list[int]:
        return list(self._temps)

    def advance(self) -> None:
        """Bring every temperature up to now, assuming the load held since the last step."""
        now = self._clock()
        dt = max(0.0, now - self._last)
        self._last = now
        decay = math.exp(-dt / self.tau)
        for gpu, temp in self._temps.items():
            target = self.ambient + self.heat_per_job * self._loads.get(gpu, 0)
            self._temps[gpu] = target + (temp - target) * decay
        self._loads = {gpu: int(n) for gpu, n in self._load().items() if gpu is not None}

    def read(self) -> list[GpuReading]:
        self.advance()
        return [
            GpuReading(
                index=gpu, temperature=round(temp + (self._rng.gauss(0.0, self.noise) if self.noise else 0.0), 3),
                utilization=min(100.0, 35.0 * self._loads.get(gpu, 0)),
                memory_used_mb=min(self.memory_total_mb, 500.0 + self.memory_per_job_mb * self._loads.get(gpu, 0)),
                memory_total_mb=self.memory_total_mb,
            )
            for gpu, temp in self._temps.items()
        ]

    def close(self) -> None:
        pass
