"""The watchdog is fed by proof of progress, judged without I/O: a store that does not answer pauses the
work but never gets the daemon restarted; a loop that must keep going and stops does. On a manual clock."""

from __future__ import annotations

import asyncio
from typing import Any

from supervisor.config import SchedulerSettings
from supervisor.jobs.sqlite_store import JobStore
from supervisor.observe.notify import Notifier
from supervisor.scheduling.supervisor import Supervisor
from tests.fakes import FakeLauncher, ManualClock, engine, make_settings, make_video, until
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


class CountingNotifier(Notifier):
    """systemd's side of the watchdog, as a count: a notifier whose pings are only counted."""

    def __init__(self) -> None:
        super().__init__("")
        self.watchdog_seconds = 1.0
        self.pings = 0

    def watchdog(self) -> None:
        self.pings += 1


def run_daemon(tmp_path, scenario, *, hung=frozenset(), job_seconds=10_000.0, notifier=None, **options):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=1, lease_seconds=30))

    async def main():
        store = JobStore.open(s.state_db)
        clock = ManualClock()
        launcher = FakeLauncher(clock, lambda video, attempt: (job_seconds, 0))  # by default, the whole test
        sup = Supervisor(s, HungStore(engine(store), set(hung)), clock=clock, launcher=launcher, daemon=True,
                         notifier=notifier, reload=lambda: s, **options)
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
            healthy.append(sup.watchdog.healthy())
        return healthy

    with capture_logs() as logs:
        healthy = run_daemon(tmp_path, scenario, hung={"check", "renew"})
    assert all(healthy)
    [warned] = [e for e in logs if e["event"] == "claims_not_renewed"]  # said once for the outage
    assert "no answer within 10 s" in warned["error"]


def test_a_lease_loop_that_stops_going_round_starves_the_watchdog(tmp_path):
    async def scenario(sup, clock):
        await clock.advance(4)
        before = sup.watchdog.healthy()

        async def wedged(*, timeout: float) -> None:
            await asyncio.get_running_loop().create_future()  # a bug: the renewal never returns

        sup.renewer.renew = wedged
        await clock.advance(4)
        soon = sup.watchdog.healthy()  # one missed round is not yet a verdict
        await clock.advance(20)
        return before, soon, sup.watchdog.healthy()

    assert run_daemon(tmp_path, scenario) == (True, True, False)


def test_a_scan_stuck_on_a_hung_share_stops_the_watchdog_until_it_returns(tmp_path):
    notifier = CountingNotifier()
    hung = asyncio.Event()

    async def scenario(sup, clock):
        await clock.advance(2)
        assert sup.stats.completed == 1
        real_scan = sup.intake.scan

        async def hanging_scan():
            await hung.wait()  # a listdir on a dead NFS server: it does not return
            return await real_scan()

        sup.intake.scan = hanging_scan
        # Off the loop only the store's calls count from here: the scan is meant to hang.
        clock.busy = lambda: sup.store.in_flight > 0 or sup.runner.reading > 0
        sup.request_reload()
        await clock.advance(29)
        healthy_before_the_limit = sup.watchdog.healthy()
        await clock.advance(2)
        pings = notifier.pings
        await clock.advance(60)  # a minute past the limit: not one ping, systemd would restart it
        starved = notifier.pings == pings and not sup.watchdog.healthy()
        hung.set()  # the share comes back
        await until(lambda: sup.intake.scan_started is None)  # the real scan, on its thread
        await clock.advance(4)
        return healthy_before_the_limit, starved, sup.watchdog.healthy() and notifier.pings > pings

    with capture_logs() as logs:
        result = run_daemon(tmp_path, scenario, job_seconds=1.0, notifier=notifier, scan_stuck_seconds=30)
    assert result == (True, True, True)
    [stuck] = [e for e in logs if e["event"] == "scan_stuck"]  # said once, however long it lasts
    assert "watchdog" in stuck["action"] and stuck["log_level"] == "critical"
    assert any(e["event"] == "scan_unstuck" for e in logs)
