"""The GPU monitor's slot targets, applied: capped by admission by GPU memory, held where they are while
workers wait on the videos share, then handed to the slots and to pausing on a critical GPU. With every
GPU lost or failing, the run gives up (exit 70: systemd restarts it once the driver recovers).

The monitor only proposes limits; this is the one place they become the slots' limits, so a poll, a
reload and the startup's first reading are capped and paced alike. It owns which GPUs the share holds
down now, so that is said once while it lasts, not at every poll.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import structlog

from supervisor.clock import Clock
from supervisor.gpu.monitor import SlotTarget
from supervisor.scheduling.gpu_memory import MemoryAdmission
from supervisor.scheduling.pausing import CriticalPause, Worker
from supervisor.scheduling.running import RunningJob
from supervisor.scheduling.share import ShareWatch
from supervisor.scheduling.slots import GpuId, SlotPool

log = structlog.get_logger("supervisor")


class GpuTargets:
    """Applies the monitor's targets. Its narrow ties to the run: `running` (the attempts under way, whose
    progress says how long workers wait on reads), `workers()` (the running jobs as pausing sees them),
    `all_lost()` (the monitor's verdict), `give_up(reason, event, action)` (the run drains and exits 70) and
    `beat(name)` (the watchdog's)."""

    def __init__(self, *, memory: MemoryAdmission, share: ShareWatch, slots: SlotPool, pausing: CriticalPause,
                 clock: Clock, running: Mapping[int, RunningJob], workers: Callable[[], list[Worker]],
                 all_lost: Callable[[], bool], give_up: Callable[[str, str, str], None],
                 beat: Callable[[str], None]) -> None:
        self._memory = memory
        self._share = share
        self._slots = slots
        self._pausing = pausing
        self._clock = clock
        self._running = running
        self._workers = workers
        self._all_lost = all_lost
        self._give_up = give_up
        self._beat = beat
        self._held_by_share: set[GpuId] = set()  # GPUs whose limit the share holds down now (said once)

    def polled(self, targets: list[SlotTarget]) -> None:
        """The GPU-health loop went round: it beats for the watchdog, and its targets are applied."""
        self._beat("gpu-health")
        self.apply(targets)

    def apply(self, targets: list[SlotTarget]) -> None:
        self._memory.observe(targets)
        targets = self.paced(self._memory.capped(targets))
        self._slots.apply(targets)
        self._pausing.apply(targets, self._workers())
        if self._all_lost():
            self._give_up("every GPU is lost or failing", "gpu_all_lost",
                          "taking no new work; draining, then exiting 70 so that systemd restarts it once the "
                          "driver recovers")

    def paced(self, targets: list[SlotTarget]) -> list[SlotTarget]:
        """Targets that would raise a limit while workers wait on the share: held where they are."""
        self._share.note_workers((self._clock.time() - rj.started_at, rj.progress) for rj in self._running.values())
        why = self._share.pacing()
        if why is None:
            self._held_by_share.clear()
            return targets
        out = []
        for t in targets:
            held = self._slots.limit(t.gpu)
            if t.limit > held:
                if t.gpu not in self._held_by_share:  # said once while it lasts, not every poll
                    self._held_by_share.add(t.gpu)
                    log.info("limit_not_raised", gpu=t.gpu, limit=held, wanted=t.limit, reason=why)
                t = replace(t, limit=held, reason=f"{t.reason}; not raised: {why}")
            else:
                self._held_by_share.discard(t.gpu)
            out.append(t)
        return out
