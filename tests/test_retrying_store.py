"""The store's retries, on a manual clock: backoff doubling up to its cap, trouble said once and its end
said, a damaged store never retried, and no waiting at all once the run gives up."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from supervisor.jobs.model import StoreUnavailable
from supervisor.jobs.retrying import RetryingStore
from tests.fakes import ManualClock
from tests.test_scheduling import capture_logs


class Flaky:
    """A store call that is refused `times` times, then answers."""

    def __init__(self, times: int, clock: ManualClock) -> None:
        self.left = times
        self.clock = clock
        self.asked_at: list[float] = []

    async def __call__(self) -> str:
        self.asked_at.append(self.clock.now)
        if self.left:
            self.left -= 1
            raise StoreUnavailable("database or disk is full")
        return "answered"


def test_a_refused_call_is_asked_again_with_backoff_up_to_its_cap_and_the_trouble_said_once():
    said: list[str] = []

    async def main():
        clock = ManualClock()
        calls = RetryingStore("jobs.db", clock, first=1.0, longest=4.0, on_trouble=said.append)
        flaky = Flaky(5, clock)
        task = asyncio.ensure_future(calls.call("mark_done", flaky))
        await clock.run_until(task.done, step=0.5)
        return task.result(), flaky.asked_at, calls.trouble

    with capture_logs() as logs:
        result, asked_at, trouble = asyncio.run(main())
    assert result == "answered" and trouble is None
    assert asked_at == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0]  # 1, 2, 4, then never more than 4 s apart
    assert said == ["database or disk is full"]  # the observers hear of it once
    events = [e["event"] for e in logs]
    assert events.count("store_unavailable") == 1 and events.count("store_recovered") == 1


def test_a_damaged_store_is_not_retried():
    async def main():
        calls = RetryingStore("jobs.db", ManualClock())

        async def damaged():
            raise sqlite3.DatabaseError("file is not a database")

        await calls.call("claim", damaged)

    with pytest.raises(sqlite3.DatabaseError):
        asyncio.run(main())


def test_once_the_run_gives_up_a_refused_call_raises_at_once():
    async def main():
        clock = ManualClock()
        calls = RetryingStore("jobs.db", clock)
        calls.give_up()
        flaky = Flaky(1, clock)
        with pytest.raises(StoreUnavailable):
            await calls.call("requeue_interrupted", flaky)
        return flaky.asked_at

    assert asyncio.run(main()) == [0.0]
