"""Systemd's watchdog, fed from the event loop itself, and the beat the long-lived tasks go round on.

The watchdog task does no I/O: it feeds systemd only while no task has died, no scan is stuck, and
the tasks that must make progress whatever the store does (renewals, GPU health) have stamped their
beat recently; a store that does not answer pauses the work, never gets the daemon killed. It owns
those stamps, so its verdict waits on nothing: a hung loop is restarted by systemd, a hung task is
found by its silence.
"""

from __future__ import annotations

from collections.abc import Callable

from supervisor.clock import Clock
from supervisor.config import Settings
from supervisor.observe.notify import Notifier

HEARTBEAT_SECONDS = 2.0
# A task that must make progress whatever the store does, silent for this many of its own intervals, is
# taken as hung: the watchdog is no longer fed.
STALE_BEATS = 5


class Watchdog:
    """Owns when each task that must keep going last went round. Its narrow ties to the run: `settings()`,
    `faulted()` (a long-lived task died or ended), `scan_stuck(now)` (a scan of the videos folder has run
    too long) and `poll_seconds()` (the GPU-health loop's interval)."""

    def __init__(self, *, settings: Callable[[], Settings], clock: Clock, notifier: Notifier,
                 faulted: Callable[[], bool], scan_stuck: Callable[[float], bool],
                 poll_seconds: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._notifier = notifier
        self._faulted = faulted
        self._scan_stuck = scan_stuck
        self._poll_seconds = poll_seconds
        # The clock's monotonic time each task that must keep going whatever the store does last went round.
        self._beats: dict[str, float] = {}

    def interval(self) -> float:
        """The beat: renewals well within the lease, and systemd's watchdog fed twice within its interval."""
        interval = min(HEARTBEAT_SECONDS, self._settings().scheduler.lease_seconds / 4)
        if self._notifier.watchdog_seconds:
            interval = min(interval, self._notifier.watchdog_seconds / 2)
        return interval

    def beat(self, name: str) -> None:
        self._beats[name] = self._clock.monotonic()

    def healthy(self) -> bool:
        """Whether systemd's watchdog may be fed: no task has crashed, every supervised task still runs, and
        no scan has been stuck longer than scan_stuck_seconds."""
        if self._faulted():
            return False
        now = self._clock.monotonic()
        if self._scan_stuck(now):
            return False
        # A loop that must keep going whatever the store does has stopped going round: something is wedged.
        limits = {"leases": self.interval(), "gpu-health": self._poll_seconds()}
        return all(now - at <= STALE_BEATS * limits[name] for name, at in self._beats.items())

    async def run(self) -> None:
        """Feed systemd's watchdog from the event loop itself (a hung loop gets restarted), judged by the other
        tasks' progress, never by waiting on them: no I/O here."""
        while True:
            await self._clock.sleep(self.interval())
            if self._notifier.watchdog_seconds and self.healthy():
                self._notifier.watchdog()
