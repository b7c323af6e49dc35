"""Claims as the scheduler uses them: renewals that nothing else holds up, a lost claim that stops its worker
and records nothing, results that must be there to be done, a swap of result sets in one step, and a
checkpoint that waits out a full disk."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from dataclasses import replace
from datetime import datetime

from supervisor.config import WorkerSettings
from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_engine import SqliteEngine
from supervisor.jobs.sqlite_store import JobStore
from supervisor.protocol.paths import ResultRoot, staging_key
from supervisor.scheduling.supervisor import Supervisor
from tests.fakes import FakeLauncher, ManualClock, make_settings, make_video
from tests.test_scheduling import capture_logs, jobs, run_sup


class SharedEngine(SqliteEngine):
    """A real SQLite engine that says it is shared, counts its renewals, can be told to report claims lost,
    and whose takeovers can be made to hang (a slow server, a long settle)."""

    shared = True

    def __init__(self, store: JobStore) -> None:
        super().__init__(store, owned=False)
        self.renewals = 0
        self.lose_claims = False
        self.takeovers_hang = False

    async def renew(self, claims):
        self.renewals += 1
        return set() if self.lose_claims else await super().renew(claims)

    async def reclaim_expired(self):
        if self.takeovers_hang:
            await asyncio.Event().wait()
        return []


def run_shared(settings, scenario, *, script):
    async def main():
        store = JobStore.open(settings.state_db)
        clock = ManualClock()
        launcher = FakeLauncher(clock, script)
        eng = SharedEngine(store)
        sup = Supervisor(settings, eng, clock=clock, launcher=launcher, daemon=True)
        clock.busy = sup.busy_off_loop
        task = asyncio.ensure_future(sup.run())
        try:
            await clock.settle()
            await scenario(sup, clock, eng)
            sup.request_stop()
            await clock.run_until(task.done)
            return task.result(), launcher
        finally:
            store.close()

    return asyncio.run(main())


def test_renewals_go_on_while_a_takeover_hangs(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = make_settings(tmp_path)

    async def scenario(sup, clock, eng):
        eng.takeovers_hang = True
        await clock.advance(1.0)
        before = eng.renewals
        await clock.advance(20.0)
        scenario.renewed = eng.renewals - before

    code, _ = run_shared(settings, scenario, script=lambda video, attempt: (600.0, 0))
    assert code == 0
    assert scenario.renewed >= 9  # every 2 s, whatever the takeovers do


def test_a_lost_claim_kills_its_worker_at_once_and_records_nothing(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = make_settings(tmp_path)

    async def scenario(sup, clock, eng):
        await clock.advance(5.0)
        eng.lose_claims = True  # another scheduler took the job over
        await clock.advance(5.0)

    with capture_logs() as logs:
        code, launcher = run_shared(settings, scenario, script=lambda video, attempt: (600.0, 0))
    assert code == 0
    [(started, _, _, _), (ended, _, _, exit_code)] = launcher.events
    assert ended - started <= 8.0 and exit_code == 143  # killed at the first renewal that found it lost
    events = [e["event"] for e in logs]
    assert "lease_lost" in events and "attempt_void" in events
    assert "job_succeeded" not in events and "job_interrupted" not in events
    [job] = jobs(settings).values()
    assert job.state is JobState.RUNNING and job.attempts == 1  # left for the one that took it over
    assert not any(p.name.startswith(".") for p in (tmp_path / "results" / "cam").iterdir())


def test_a_done_event_whose_results_are_gone_is_a_failed_attempt(tmp_path):
    """A worker says done, naming results in its folder, but the folder is empty: never recorded done."""
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    worker = tmp_path / "vanishing_worker.py"
    worker.write_text("import json, shutil, sys\nout = sys.argv[1]\nshutil.rmtree(out)\n"
                      "print(json.dumps({'event': 'done', 'output': out + '/summary.json', 'video_seconds': 1}))\n")
    settings = make_settings(tmp_path, worker=WorkerSettings(
        command=(sys.executable, str(worker), "{out}"), timeout_seconds=30, max_transient_attempts=2,
        retry_backoff_seconds=0.05, retry_backoff_max_seconds=0.1))
    with capture_logs() as logs:
        code, _ = run_sup(settings)
    assert code == 1
    [job] = jobs(settings).values()
    assert job.state is JobState.DEAD and job.attempts == 2
    assert "gone or empty" in job.last_error
    assert not any(e["event"] == "job_succeeded" for e in logs)


def test_publishing_swaps_result_sets_in_one_step_and_never_over_a_taker(tmp_path):
    root = ResultRoot(tmp_path)
    key = "cam/a.mp4"

    def stage(token, text):
        root.make(staging_key(key, token))
        (tmp_path / staging_key(key, token) / "summary.json").write_text(text)

    stage(1, "first")
    assert root.publish(key, 1)
    stage(2, "second")
    assert root.publish(key, 2)
    assert (tmp_path / key / "summary.json").read_text() == "second"
    assert os.listdir(tmp_path / "cam") == ["a.mp4"]  # the set before is gone, no staging left
    # A paused daemon that comes back after the taker published its staged set moves nothing.
    assert not root.publish(key, 2)
    assert (tmp_path / key / "summary.json").read_text() == "second"
    root.make(staging_key(key, 3))  # an attempt that wrote nothing
    assert not root.publish(key, 3) and os.listdir(tmp_path / "cam") == ["a.mp4"]
    stage(4, "old attempt")
    stage(5, "current")
    assert root.clear_stale(key, 5) == [".a.mp4.attempt-4"]
    root.close()


def test_a_checkpoint_on_a_full_disk_is_put_off_not_fatal(tmp_path):
    class FullDisk(JobStore):
        full = True

        def checkpoint(self):
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            super().checkpoint()

    async def main():
        store = JobStore.open(tmp_path / "jobs.db")
        store.__class__ = FullDisk
        eng = SqliteEngine(store, owned=False)
        video = VideoFile("cam", datetime(2025, 11, 14, 10), tmp_path / "cam" / "a.mp4", 100, 1.0)
        [jid] = (await eng.sync([video], reprocess=False, now=1.0, duration=0)).new
        await eng.claim(jid, now=2.0)  # writes: there is something to checkpoint
        with capture_logs() as logs:
            await eng.check(idle=True)
            store.full = False
            await eng.check(idle=True)
            await eng.check(idle=True)
        await eng.close()
        store.close()
        return [e["event"] for e in logs], eng

    events, eng = asyncio.run(main())
    assert events == ["store_checkpoint_deferred"]  # said once; the next heartbeat's checkpoint went through
    assert eng._writes == 0


def test_summary_names_the_claim_of_the_attempt_that_wrote_it(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = make_settings(tmp_path)
    assert run_sup(settings)[0] == 0
    assert run_sup(replace(settings, reprocess=True))[0] == 0
    [job] = jobs(settings).values()
    summary = json.loads((tmp_path / "results" / "cam" / "cam_20251114_100000.mp4" / "summary.json").read_text())
    assert job.claim_token == 2 and summary["video"]["claim"] == 2
