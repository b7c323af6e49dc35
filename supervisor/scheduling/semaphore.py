"""A semaphore whose size can change while coroutines wait on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class ResizableSemaphore:
    """Counts held slots against a limit that may change at any time.

    Growing the limit hands free slots to waiters at once, in FIFO order.
    Shrinking it never takes a slot back: holders keep theirs, and no new slot
    is granted until the number held drops below the new limit.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self._limit = limit
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def held(self) -> int:
        return self._held

    @property
    def free(self) -> int:
        return max(0, self._limit - self._held)

    @property
    def waiting(self) -> int:
        return sum(1 for fut in self._waiters if not fut.done())

    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody queued ahead; never waits."""
        if self._held < self._limit and not self.waiting:
            self._held += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # The slot was granted in the same tick we were cancelled: give it back.
                self.release()
            raise
        finally:
            if not fut.done() or fut.cancelled():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)

    def release(self) -> None:
        if self._held <= 0:
            raise RuntimeError("release() without a matching acquire()")
        self._held -= 1
        self._wake_waiters()

    def resize(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self._limit = limit
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        while self._waiters and self._held < self._limit:
            fut = self._waiters.popleft()
            if fut.done():
                continue
            self._held += 1
            fut.set_result(None)
