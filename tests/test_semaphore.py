"""The per-GPU slot count: never above the limit in force when a slot was granted; shrinking takes nothing
back. (Waiting for a slot across GPUs is the pool's: see test_properties and test_event_order.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.scheduling.semaphore import ResizableSemaphore


def test_slots_up_to_the_limit_then_none():
    sem = ResizableSemaphore(2)
    assert sem.try_acquire() and sem.try_acquire()
    assert not sem.try_acquire() and sem.free == 0 and sem.held == 2


def test_shrinking_never_takes_a_slot_back_and_grants_none_until_below_the_new_limit():
    sem = ResizableSemaphore(3)
    for _ in range(3):
        assert sem.try_acquire()
    sem.resize(1)
    assert sem.held == 3 and sem.free == 0  # holders keep theirs
    sem.release()
    assert not sem.try_acquire()  # 2 held, limit 1
    sem.release()
    sem.release()
    assert sem.try_acquire() and not sem.try_acquire()


def test_release_without_acquire_and_negative_limits_are_errors():
    with pytest.raises(RuntimeError):
        ResizableSemaphore(1).release()
    with pytest.raises(ValueError):
        ResizableSemaphore(-1)
    with pytest.raises(ValueError):
        ResizableSemaphore(1).resize(-1)


ops = st.lists(st.one_of(st.just(("acquire", 0)), st.just(("release", 0)),
                         st.tuples(st.just("resize"), st.integers(0, 6))), max_size=80)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, 4))
def test_random_sequences_keep_the_invariants(sequence, initial):
    sem = ResizableSemaphore(initial)
    held = 0
    for op, arg in sequence:
        if op == "acquire":
            granted = sem.try_acquire()
            assert granted == (held < sem.limit)
            held += granted
        elif op == "release" and held:
            sem.release()
            held -= 1
        elif op == "resize":
            sem.resize(arg)
        assert sem.held == held and sem.free == max(0, sem.limit - held)
