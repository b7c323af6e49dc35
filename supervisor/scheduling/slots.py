"""Worker slots per GPU: one resizable semaphore each, a job goes where most slots are free."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

import structlog

from supervisor.gpu.monitor import SlotTarget
from supervisor.gpu.probe import GpuId
from supervisor.scheduling.semaphore import ResizableSemaphore

__all__ = ["GpuId", "SlotPool"]

log = structlog.get_logger("supervisor.gpu")


class SlotPool:
    """Owns the per-GPU limits. The health loop sets targets; the dispatcher acquires.

    A GPU that is not accepting (too little free memory) gets no new job but
    keeps the ones it runs. Ties between GPUs go to the coolest.
    """

    def __init__(self, gpus: Sequence[GpuId], limit: int, admit: Callable[[GpuId], bool] | None = None) -> None:
        """`admit(gpu)`: whether a job may start there now beyond its free slot (admission by GPU memory)."""
        if not gpus:
            raise ValueError("at least one GPU slot group is needed")
        self._admit = admit
        self._sems: dict[GpuId, ResizableSemaphore] = {g: ResizableSemaphore(limit) for g in gpus}
        self._accepting: dict[GpuId, bool] = {g: True for g in gpus}
        self._temperature: dict[GpuId, float | None] = {g: None for g in gpus}
        self._changed = asyncio.Event()
        self.changes = 0  # limit changes applied so far

    @property
    def gpus(self) -> list[GpuId]:
        return list(self._sems)

    def limit(self, gpu: GpuId) -> int:
        return self._sems[gpu].limit

    def held(self, gpu: GpuId) -> int:
        return self._sems[gpu].held

    def accepting(self, gpu: GpuId) -> bool:
        return self._accepting[gpu]

    @property
    def total_limit(self) -> int:
        return sum(s.limit for s in self._sems.values())

    @property
    def total_held(self) -> int:
        return sum(s.held for s in self._sems.values())

    def held_by_gpu(self) -> dict[GpuId, int]:
        return {g: s.held for g, s in self._sems.items()}

    def set_limit(self, gpu: GpuId, limit: int) -> None:
        self._sems[gpu].resize(limit)
        self._changed.set()

    def set_accepting(self, gpu: GpuId, accepting: bool) -> None:
        self._accepting[gpu] = accepting
        self._changed.set()

    def set_temperature(self, gpu: GpuId, temperature: float | None) -> None:
        self._temperature[gpu] = temperature

    def apply(self, targets: Iterable[SlotTarget]) -> None:
        """Bring each GPU's slots to what the health monitor decided; every change of limit is logged."""
        if self._admit is not None:
            self._changed.set()  # free memory changed with the poll: a waiting job may fit now
        for target in targets:
            gpu = target.gpu
            self._temperature[gpu] = target.temperature
            if self._accepting[gpu] != target.accepting:
                self.set_accepting(gpu, target.accepting)
            old = self.limit(gpu)
            if old != target.limit:
                self.set_limit(gpu, target.limit)
                self.changes += 1
                log.info("parallelism_changed", gpu=gpu, old=old, new=target.limit, reason=target.reason,
                         message=f"parallelism {old} -> {target.limit} ({target.reason})")

    def _pick(self) -> tuple[bool, GpuId]:
        """The accepting GPU with the most free slots (ties: the coolest); (False, None) when there is none."""
        best: GpuId = None
        best_key: tuple[int, float] | None = None
        for gpu, sem in self._sems.items():
            if not self._accepting[gpu] or sem.free <= 0 or (self._admit is not None and not self._admit(gpu)):
                continue
            temp = self._temperature[gpu]
            key = (sem.free, -(temp if temp is not None else 0.0))
            if best_key is None or key > best_key:
                best, best_key = gpu, key
        return best_key is not None, best

    def try_acquire(self) -> tuple[bool, GpuId]:
        found, gpu = self._pick()
        if not found or not self._sems[gpu].try_acquire():
            return False, None
        return True, gpu

    async def acquire(self) -> GpuId:
        """Wait for a free slot on any accepting GPU; no polling: woken by release or resize."""
        while True:
            ok, gpu = self.try_acquire()
            if ok:
                return gpu
            self._changed.clear()
            await self._changed.wait()

    def release(self, gpu: GpuId) -> None:
        self._sems[gpu].release()
        self._changed.set()
