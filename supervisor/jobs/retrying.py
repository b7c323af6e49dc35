"""A store call that waits out a store refusing it: the one place the scheduler's store retries live.

A store that refuses a call for now (`StoreUnavailable`: a full or read-only disk, I/O errors, a lock
held too long, a server restarting) is asked again with backoff, first after `first` seconds, then
twice as long each time up to `longest`; the trouble is logged once, said to whoever listens
(`on_trouble`), and its end logged, and work resumes by itself. The caller simply waits, keeping
whatever it holds. A damaged store (any other error) is not retried. Once `give_up()` is called
(a second stop request: the run is leaving now), a refused call raises at once instead of waiting.

Nothing here feeds or starves the watchdog: a store that does not answer is waited for, never a
reason to restart the daemon.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from supervisor.clock import Clock
from supervisor.jobs.model import StoreUnavailable

log = structlog.get_logger("supervisor")
T = TypeVar("T")

RETRY_FIRST_SECONDS = 1.0
RETRY_LONGEST_SECONDS = 60.0


class RetryingStore:
    """Runs store calls until they are answered; owns the store's trouble (`trouble`: the error while the
    store refuses calls, else None)."""

    def __init__(self, describe: str, clock: Clock, *, first: float = RETRY_FIRST_SECONDS,
                 longest: float = RETRY_LONGEST_SECONDS, on_trouble: Callable[[str], None] | None = None) -> None:
        self._describe = describe
        self._clock = clock
        self._first = first
        self._longest = longest
        self._on_trouble = on_trouble
        self._given_up = False
        self.trouble: str | None = None

    def give_up(self) -> None:
        """From now on a refused call raises StoreUnavailable at once: nobody will wait for it any more."""
        self._given_up = True

    async def call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, asked again while the store refuses it; `what` names it in the log."""
        delay = self._first
        while True:
            try:
                result = await fn(*args, **kwargs)
            except StoreUnavailable as exc:
                if self._given_up:
                    raise
                error = str(exc)
                if self.trouble is None:
                    log.error("store_unavailable", operation=what, error=error, store=self._describe,
                              retry_in_seconds=delay, action="dispatch paused; retrying until it answers")
                    if self._on_trouble is not None:
                        self._on_trouble(error)
                else:
                    log.warning("store_still_unavailable", operation=what, error=error, retry_in_seconds=delay)
                self.trouble = error
                await self._clock.sleep(delay)
                delay = min(delay * 2, self._longest)
                continue
            if self.trouble is not None:
                log.info("store_recovered", operation=what, error_was=self.trouble)
                self.trouble = None
            return result
