"""A count of held slots against a limit that may change at any time (one per GPU; see slots.py).

Shrinking the limit never takes a slot back: holders keep theirs, and no new slot is granted
until the number held drops below the new limit. Waiting for a slot, across every GPU at once,
is the slot pool's: it is woken by each release and resize.
"""

from __future__ import annotations


class ResizableSemaphore:
    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self._limit = limit
        self._held = 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def held(self) -> int:
        return self._held

    @property
    def free(self) -> int:
        return max(0, self._limit - self._held)

    def try_acquire(self) -> bool:
        """Take a slot now if one is free; never waits."""
        if self._held < self._limit:
            self._held += 1
            return True
        return False

    def release(self) -> None:
        if self._held <= 0:
            raise RuntimeError("release() without a matching acquire()")
        self._held -= 1

    def resize(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self._limit = limit
