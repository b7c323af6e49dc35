"""Promise, checked on random sequences: the queue starts the oldest recording first, equal times in
the order they arrived, and the slots are never above the limit in force (see also test_semaphore)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.clock import LoopClock
from supervisor.jobs.model import Job, JobState
from supervisor.scheduling.queue import JobQueue
from supervisor.scheduling.slots import SlotPool


def job(job_id: int, minute: int) -> Job:
    return Job(id=job_id, camera="cam", path=Path(f"/v/{job_id}.mp4"),
               recorded_at=datetime(2025, 11, 14) + timedelta(minutes=minute), size=1, mtime=0.0,
               state=JobState.QUEUED, attempts=0, last_error=None, last_exit_code=None, discovered_at=0.0,
               not_before=None, started_at=None, finished_at=None, duration_seconds=None, output=None,
               video_seconds=None)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=40))
def test_queue_order_is_oldest_first_then_arrival_order(minutes):
    async def main():
        queue = JobQueue(LoopClock())
        for i, m in enumerate(minutes):
            assert queue.add(job(i + 1, m))
        return [(await queue.take())[2] for _ in range(len(minutes))]

    order = asyncio.run(main())
    expected = [i + 1 for i, _ in sorted(enumerate(minutes), key=lambda p: (p[1], p[0]))]
    assert order == expected


ops = st.lists(st.one_of(
    st.tuples(st.just("acquire"), st.integers(0, 0)),
    st.tuples(st.just("release"), st.integers(0, 2)),
    st.tuples(st.just("limit"), st.tuples(st.integers(0, 2), st.integers(0, 4))),
    st.tuples(st.just("accepting"), st.tuples(st.integers(0, 2), st.booleans())),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_slot_pool_never_exceeds_any_gpu_limit_and_never_loses_a_wake_up(sequence):
    async def main():
        pool = SlotPool([0, 1, 2], 1)
        held: list[int] = []
        waiters: list[asyncio.Task[int | None]] = []
        for op, arg in sequence:
            if op == "acquire":
                waiters.append(asyncio.create_task(pool.acquire()))
            elif op == "release":
                gpu = next((g for g in held if g == arg), None)
                if gpu is not None:
                    held.remove(gpu)
                    pool.release(gpu)
            elif op == "limit":
                before = {g: pool.held(g) for g in pool.gpus}
                pool.set_limit(arg[0], arg[1])
                assert {g: pool.held(g) for g in pool.gpus} == before  # resizing takes no slot back
            else:
                pool.set_accepting(arg[0], arg[1])
            for _ in range(3):
                await asyncio.sleep(0)
            for t in [t for t in waiters if t.done()]:
                waiters.remove(t)
                gpu = t.result()
                held.append(gpu)
                # Granted only where a slot was free and the GPU accepted work.
                assert pool.held(gpu) <= pool.limit(gpu) and pool.accepting(gpu)
            # No lost wake-up: nobody waits while an accepting GPU has a free slot.
            free = any(pool.accepting(g) and pool.held(g) < pool.limit(g) for g in pool.gpus)
            assert not (waiters and free)
            assert sorted(held) == sorted(g for g in pool.gpus for _ in range(pool.held(g)))
        for t in waiters:
            t.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    asyncio.run(main())
