from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.scheduling.semaphore import ResizableSemaphore


def run(coro):
    return asyncio.run(coro)


def test_acquire_up_to_limit_then_waiters_queue():
    async def main():
        sem = ResizableSemaphore(2)
        await sem.acquire()
        await sem.acquire()
        waiter = asyncio.create_task(sem.acquire())
        await asyncio.sleep(0)
        assert not waiter.done() and sem.held == 2 and sem.waiting == 1
        sem.release()
        await asyncio.sleep(0)
        assert waiter.done() and sem.held == 2

    run(main())


def test_growing_wakes_waiters_at_once_in_fifo_order():
    async def main():
        sem = ResizableSemaphore(0)
        order: list[int] = []

        async def take(i: int):
            await sem.acquire()
            order.append(i)

        tasks = [asyncio.create_task(take(i)) for i in range(4)]
        await asyncio.sleep(0)
        assert order == []
        sem.resize(3)
        await asyncio.sleep(0)
        assert order == [0, 1, 2] and sem.held == 3
        sem.resize(4)
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2, 3]

    run(main())


def test_shrinking_never_takes_a_slot_back_and_blocks_until_below_new_limit():
    async def main():
        sem = ResizableSemaphore(4)
        for _ in range(4):
            await sem.acquire()
        sem.resize(1)
        assert sem.held == 4 and sem.free == 0
        waiter = asyncio.create_task(sem.acquire())
        for _ in range(3):
            sem.release()
            await asyncio.sleep(0)
            assert not waiter.done(), "no new slot while held >= new limit"
        sem.release()  # held 0 < 1
        await asyncio.sleep(0)
        assert waiter.done() and sem.held == 1

    run(main())


def test_cancelled_waiter_does_not_leak_a_slot():
    async def main():
        sem = ResizableSemaphore(1)
        await sem.acquire()
        waiter = asyncio.create_task(sem.acquire())
        await asyncio.sleep(0)
        sem.release()  # grants the slot to the waiter...
        waiter.cancel()  # ...which is cancelled in the same tick
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert sem.held == 0
        assert sem.try_acquire()

    run(main())


def test_try_acquire_respects_queued_waiters():
    async def main():
        sem = ResizableSemaphore(0)
        waiter = asyncio.create_task(sem.acquire())
        await asyncio.sleep(0)
        sem._limit = 1  # a free slot appears without a wake-up
        assert not sem.try_acquire(), "a waiter queued first must not be overtaken"
        sem.resize(1)
        await waiter

    run(main())


def test_release_without_acquire_is_an_error():
    with pytest.raises(RuntimeError):
        ResizableSemaphore(1).release()
    with pytest.raises(ValueError):
        ResizableSemaphore(-1)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(0, 0)),
        st.tuples(st.just("release"), st.integers(0, 0)),
        st.tuples(st.just("resize"), st.integers(0, 6)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, 4))
def test_random_sequences_keep_the_invariants(sequence, initial):
    """Never more holders than the limit in force when each was granted; no lost wake-ups; FIFO."""

    async def main():
        sem = ResizableSemaphore(initial)
        granted_order: list[int] = []
        holders: list[int] = []
        pending: dict[int, asyncio.Task[None]] = {}
        next_id = 0

        async def take(i: int):
            await sem.acquire()
            granted_order.append(i)
            holders.append(i)

        for op, arg in sequence:
            grants_before = len(granted_order)
            if op == "acquire":
                pending[next_id] = asyncio.create_task(take(next_id))
                next_id += 1
            elif op == "release" and holders:
                holders.pop(0)
                sem.release()
            elif op == "resize":
                sem.resize(arg)
            elif op == "cancel" and pending:
                key = sorted(pending)[arg % len(pending)]
                task = pending.pop(key)
                if not task.done():
                    task.cancel()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            for key in [k for k, t in pending.items() if t.done()]:
                del pending[key]
            if len(granted_order) > grants_before:
                # A slot was granted in this step: only ever while below the limit in force.
                assert sem.held <= sem.limit
            # Held slots are exactly the holders we know of.
            assert sem.held == len(holders)
            # No lost wake-up: a free slot and a live waiter never coexist after the loop settles.
            live_waiters = sum(1 for t in pending.values() if not t.done())
            assert not (sem.held < sem.limit and live_waiters > 0)
        # FIFO: grants happen in the order requests were made (among those not cancelled).
        assert granted_order == sorted(granted_order)
        for t in pending.values():
            t.cancel()
        await asyncio.gather(*pending.values(), return_exceptions=True)

    asyncio.run(main())
