"""The watchdog is fed by proof of progress, judged without I/O: a store that does not answer pauses the
work but never gets the daemon restarted; a loop that must keep going and stops does. On a manual clock."""

from __future__ import annotations

import asyncio
from typing import Any

from supervisor.config import SchedulerSettings
from supervisor.jobs.sqlite_store import JobStore
from supervisor.scheduling.supervisor import Supervisor
from tests.fakes import FakeLauncher, ManualClock, engine, make_settings, make_video
from tests.test_scheduling import capture_logs


class HungStore:
    """The real engine, but for the calls that hang for ever (a server that accepted the connection and went
    silent, a disk that stopped answering)."""

    def __init__(self, real: Any, hung: set[str]) -> None:
        self._real = real
        self._hung = hung
        self.shared = real.shared

    def __getattr__(self, name: str) -> Any:
        if name in self._hung:
            async def hang(*args: Any, **kwargs: Any) -> Any:
                await asyncio.get_running_loop().create_future()
            return hang
        return getattr(self._real, name)


def run_daemon(tmp_path, scenario, *, hung=frozenset()):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=1, lease_seconds=30))

    async def main():
        store = JobStore.open(s.state_db)
        clock = ManualClock()
        launcher = FakeLauncher(clock, lambda video, attempt: (10_000.0, 0))  # runs for the whole test
        sup = Supervisor(s, HungStore(engine(store), set(hung)), clock=clock, launcher=launcher, daemon=True)
        clock.busy = sup.busy_off_loop
        task = asyncio.ensure_future(sup.run())
        try:
            await clock.settle()
            result = await scenario(sup, clock)
            sup.request_stop()
            sup.request_stop()  # and at once: the store may never answer
            await clock.run_until(task.done)
            return result
        finally:
            store.close()

    return asyncio.run(main())


def test_a_store_that_never_answers_pauses_the_work_but_keeps_the_watchdog_fed(tmp_path):
    async def scenario(sup, clock):
        assert len(sup.running) == 1
        healthy = []
        for _ in range(30):  # a minute of the clock, the store silent throughout
            await clock.advance(2)
            healthy.append(sup.healthy())
        return healthy

    with capture_logs() as logs:
        healthy = run_daemon(tmp_path, scenario, hung={"check", "renew"})
    assert all(healthy)
    [warned] = [e for e in logs if e["event"] == "claims_not_renewed"]  # said once for the outage
    assert "no answer within 10 s" in warned["error"]


def test_a_lease_loop_that_stops_going_round_starves_the_watchdog(tmp_path):
    async def scenario(sup, clock):
        await clock.advance(4)
        before = sup.healthy()

        async def wedged(*, timeout: float) -> None:
            await asyncio.get_running_loop().create_future()  # a bug: the renewal never returns

        sup.runner.renew_claims = wedged
        await clock.advance(4)
        soon = sup.healthy()  # one missed round is not yet a verdict
        await clock.advance(20)
        return before, soon, sup.healthy()

    assert run_daemon(tmp_path, scenario) == (True, True, False)
