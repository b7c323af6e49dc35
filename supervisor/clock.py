"""Time, as the scheduler sees it: one seam, so that tests drive it by hand instead of waiting on it.

The scheduler never calls time.time(), time.monotonic(), asyncio.sleep() or loop.call_later()
itself: it asks its Clock. `LoopClock` is the real one; the tests' manual clock moves only
when told to, and fires what is due in time order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch: what the store records."""
        ...

    def monotonic(self) -> float:
        """Seconds that only go forward: for intervals and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The real clock: the system's time and the running event loop's timers."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)


async def wait_event(clock: Clock, event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds of the clock's time; whether it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, sleeper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return event.is_set()
