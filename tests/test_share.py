"""The videos share's health: a timed probe read, stalls and recoveries said once, workers' reads, pacing,
and a job that times out on a stalled share not charged. Manual clock, in-process launcher."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from supervisor.config import IoSettings, SchedulerSettings, Settings
from supervisor.gpu.monitor import SlotTarget
from supervisor.jobs.model import JobState
from supervisor.scheduling.share import ShareWatch, read_block
from tests.fakes import ManualClock, make_settings
from tests.test_event_order import run_on_clock, videos
from tests.test_scheduling import capture_logs, jobs


def watch(clock: ManualClock, read, *, stall: float = 0.5, changes=None) -> ShareWatch:
    settings = Settings(io=IoSettings(probe_seconds=30, slow_ms=500, stall_seconds=stall))
    return ShareWatch(lambda: settings, clock, sample=lambda: Path("/srv/cameras/cam/a.mp4"), read=read,
                      on_change=(lambda state, detail: changes.append(state)) if changes is not None else None)


def test_a_probe_read_slower_than_slow_ms_is_slow_and_a_fast_one_recovers():
    clock = ManualClock()
    took = [0.8]

    def read(path: Path) -> int:
        clock.now += took[0]  # the read takes this long on the scheduler's clock
        return 65536

    changes: list[str] = []
    share = watch(clock, read, changes=changes)

    async def main() -> None:
        with capture_logs() as logs:
            await share.probe_once()
            assert (share.state, share.latency_ms) == ("slow", 800.0)
            await share.probe_once()  # still slow: said once
            took[0] = 0.003
            await share.probe_once()
        assert [e["event"] for e in logs] == ["share_slow", "share_recovered"]
        assert logs[0]["detail"] == "a 64 KiB read took 800 ms (slow above 500 ms)"

    asyncio.run(main())
    assert changes == ["slow", "ok"]


def test_a_read_that_never_returns_is_a_stall_alerted_once_and_the_probe_waits_for_it():
    clock = ManualClock()
    release = threading.Event()
    calls = []

    def read(path: Path) -> int:
        calls.append(path)
        release.wait(30)  # a hung NFS read
        return 65536

    changes: list[str] = []
    share = watch(clock, read, stall=0.2, changes=changes)

    async def main() -> None:
        with capture_logs() as logs:
            await share.probe_once()
            assert share.stalled and share.detail.endswith("did not return within 0.2 s")
            await share.probe_once()  # the hung read is still out: no second read piles up behind it
            assert len(calls) == 1 and share.stalled
            release.set()
            while share.probing or not share._inflight.done():  # the hung read comes back
                await asyncio.sleep(0.01)
            await share.probe_once()
            assert share.state == "ok"
        assert [e["event"] for e in logs] == ["share_stalled", "share_recovered"]

    try:
        asyncio.run(main())
    finally:
        release.set()
        share.close()
    assert changes == ["stalled", "ok"]


def test_the_probe_reads_from_the_middle_of_a_real_file(tmp_path):
    f = tmp_path / "a.mp4"
    f.write_bytes(b"x" * 300_000)
    assert read_block(f) == 65536
    small = tmp_path / "b.mp4"
    small.write_bytes(b"x" * 1000)
    assert read_block(small) == 1000


def test_workers_waiting_on_reads_hold_the_limit_where_it_is(tmp_path):
    videos(tmp_path, 4)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=2))

    async def scenario(sup, clock, launcher):
        await clock.advance(10)
        for rj in sup.running.values():  # what the workers' progress says after 10 s
            rj.progress = {"read_bytes": 50 * 2**20, "read_wait_seconds": 6.2}
        with capture_logs() as logs:
            (held,) = sup.targets.paced([SlotTarget(None, 4, reason="cooler")])
            sup.targets.paced([SlotTarget(None, 4, reason="cooler")])  # the next poll: held still, not said again
        assert [e["event"] for e in logs].count("limit_not_raised") == 1
        assert held.limit == 2 and "not raised: videos share: 10 MB/s, workers waiting 62 % on reads" in held.reason
        assert "videos share: 10 MB/s" in sup.figures.io()["share"]["pacing"]
        for rj in sup.running.values():
            rj.progress = {"read_bytes": 50 * 2**20, "read_wait_seconds": 1.0}
        (raised,) = sup.targets.paced([SlotTarget(None, 4, reason="cooler")])
        assert raised.limit == 4

    code, _, _ = run_on_clock(s, scenario, script=lambda video, attempt: (30.0, 0))
    assert code == 0


def test_a_job_timing_out_while_the_share_is_stalled_is_not_charged(tmp_path):
    videos(tmp_path, 1)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=1), io=IoSettings(stall_seconds=0.2))
    release = threading.Event()
    runs = []

    def work(video, attempt):
        runs.append(attempt)
        return (10.0, "timeout") if len(runs) == 1 else (5.0, 0)

    async def scenario(sup, clock, launcher):
        sup.share._read = lambda path: release.wait(30) and 0
        await sup.share.probe_once()
        assert sup.share.stalled
        await clock.advance(10)  # the attempt times out meanwhile

    with capture_logs() as logs:
        try:
            code, sup, _ = run_on_clock(s, scenario, script=work)
        finally:
            release.set()
    assert code == 0 and sup.stats.completed == 1
    (excused,) = [e for e in logs if e["event"] == "job_not_charged"]
    assert excused["reason"].startswith("it timed out while the videos share was stalled (a 64 KiB read of ")
    (job,) = jobs(s).values()
    assert job.state is JobState.DONE and job.attempts == 1 and runs == [1, 1]
