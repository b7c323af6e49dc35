"""The scheduling core end to end: real fake-worker subprocesses, a real SQLite store."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs as _capture_logs

from supervisor.config import SchedulerSettings, WorkerSettings
from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from supervisor.scheduling.supervisor import Supervisor
from tests.fakes import engine, make_settings, make_video, read_runs


def capture_logs():
    return _capture_logs(processors=[merge_contextvars])


def run_sup(settings, *, daemon=False, during=None, probe=None):
    """Run a supervisor in-process; `during(sup)` runs beside it (a coroutine)."""

    async def main():
        store = JobStore.open(settings.state_db)
        try:
            kwargs = {"probe": probe} if probe is not None else {}
            sup = Supervisor(settings, engine(store), daemon=daemon, **kwargs)
            if during is None:
                return await sup.run(), sup
            side = asyncio.create_task(during(sup))
            code = await sup.run()
            await side
            return code, sup
        finally:
            store.close()

    return asyncio.run(main())


def jobs(settings):
    store = JobStore.open(settings.state_db, readonly=True)
    try:
        return {j.path.name: j for j in store.jobs()}
    finally:
        store.close()


def test_jobs_start_oldest_recording_first(tmp_path):
    from tests.test_event_order import run_on_clock

    names = [f"camera_{c}/camera_{c}_20251114_{h:02d}{m:02d}00.mp4" for c, h, m in
             [(1, 10, 0), (2, 9, 30), (1, 8, 0), (3, 11, 15), (2, 8, 0), (3, 7, 59)]]
    shuffled = names[:]
    random.Random(4).shuffle(shuffled)
    for n in shuffled:
        make_video(tmp_path / "videos" / n)
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=1))
    code, _, launcher = run_on_clock(s, script=lambda video, attempt: (1.0, 0))
    assert code == 0
    started = [video for _, kind, video, _ in launcher.events if kind == "start"]
    stamps = [video.rsplit("_", 2)[-2] + video.rsplit("_", 2)[-1] for video in started]
    assert stamps == sorted(stamps)
    # Ties (same recording time, two cameras) go in a stable order: camera, then path.
    assert [video.rsplit("_", 2)[0] for video in started[:3]] == ["camera_3", "camera_1", "camera_2"]


def test_running_workers_never_exceed_the_limit(tmp_path):
    from tests.test_event_order import run_on_clock

    for i in range(9):
        make_video(tmp_path / "videos" / f"cam/cam_20251114_10{i:02d}00.mp4")
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=3))
    code, sup, launcher = run_on_clock(s, script=lambda video, attempt: (0.4, 0))
    assert code == 0 and len(launcher.spans()) == 9
    assert launcher.peak == 3  # never above, and the limit was used
    assert sup.stats.completed == 9


def test_retries_transient_and_failing_jobs_and_gives_up_on_bad_input(tmp_path):
    from tests.test_event_order import run_on_clock

    for n in ("a", "b", "c"):
        make_video(tmp_path / "videos" / f"cam/{n}_20251114_10000{ord(n) - 97}.mp4")
    plan = {
        "a_20251114_100000.mp4": [75, 75, 75, 0],  # transient: not counted against max_attempts
        "b_20251114_100001.mp4": [1, 1, 1, 0],  # fails 3 times: dead
        "c_20251114_100002.mp4": [65, 0],  # bad input: dead at once
    }
    s = make_settings(tmp_path, worker=WorkerSettings(max_attempts=3, retry_backoff_seconds=5,
                                                      retry_backoff_max_seconds=10))
    with capture_logs() as logs:
        code, sup, launcher = run_on_clock(s, script=lambda video, attempt: (1.0, plan[video][attempt - 1]))
    assert code == 1  # something went dead
    j = jobs(s)
    assert j["a_20251114_100000.mp4"].state is JobState.DONE and j["a_20251114_100000.mp4"].attempts == 4
    assert j["b_20251114_100001.mp4"].state is JobState.DEAD and j["b_20251114_100001.mp4"].attempts == 3
    assert j["b_20251114_100001.mp4"].last_exit_code == 1
    assert j["c_20251114_100002.mp4"].state is JobState.DEAD and j["c_20251114_100002.mp4"].attempts == 1
    assert "exit 65" in j["c_20251114_100002.mp4"].last_error
    dead = [e for e in logs if e["event"] == "job_dead"]
    assert {e["log_level"] for e in dead} == {"error"} and len(dead) == 2
    retries = [e for e in logs if e["event"] == "job_failed"]
    b_retries = [round(e["retry_in_seconds"], 2) for e in retries if e["video"].endswith("b_20251114_100001.mp4")]
    assert b_retries == [5, 10]  # exponential backoff, capped at 10
    # Each retry started the moment its backoff ran out, on the clock: attempt ends at 1, 7, 18 (1 + 5 + 1 + 10 + 1).
    b_starts = [at for at, kind, video, _ in launcher.events if kind == "start" and video.startswith("b_")]
    assert b_starts == [0.0, 6.0, 17.0]
    assert sup.stats.dead == 2 and sup.stats.completed == 1


def test_done_videos_are_skipped_next_time_and_rerun_with_reprocess(tmp_path):
    for i in range(3):
        make_video(tmp_path / "videos" / f"cam/cam_20251114_10{i:02d}00.mp4")
    s = make_settings(tmp_path)
    assert run_sup(s)[0] == 0
    assert len(read_runs(tmp_path / "runs.jsonl")) == 3
    assert run_sup(s)[0] == 0
    assert len(read_runs(tmp_path / "runs.jsonl")) == 3  # nothing ran again
    make_video(tmp_path / "videos" / "cam/cam_20251114_100100.mp4", size=999)  # a changed file runs again
    assert run_sup(s)[0] == 0
    assert len(read_runs(tmp_path / "runs.jsonl")) == 4
    assert run_sup(replace(s, reprocess=True))[0] == 0
    assert len(read_runs(tmp_path / "runs.jsonl")) == 7


def test_jobs_left_running_by_a_crash_run_again(tmp_path):
    make_video(tmp_path / "videos" / "cam/cam_20251114_100000.mp4")
    s = make_settings(tmp_path)
    store = JobStore.open(s.state_db)
    from supervisor.jobs.discovery import scan
    from supervisor.protocol.names import PathParser

    found = scan(s.videos_dir, extensions=("mp4",), settle_seconds=0, now=time.time(), parser=PathParser())
    jid = store.sync(found.videos).new[0]
    store.claim(jid, now=time.time())  # ...and then the daemon died
    store.close()
    with capture_logs() as logs:
        code, _ = run_sup(s)
    assert code == 0
    started = next(e for e in logs if e["event"] == "supervisor_started")
    assert started["recovered_running"] == 1
    job = jobs(s)["cam_20251114_100000.mp4"]
    assert job.state is JobState.DONE and job.attempts == 1


def test_recordings_still_being_written_wait_for_the_settle_time(tmp_path):
    make_video(tmp_path / "videos" / "cam/cam_20251114_100000.mp4")
    make_video(tmp_path / "videos" / "cam/cam_20251114_110000.mp4", age=0)
    s = make_settings(tmp_path)
    s = replace(s, discovery=replace(s.discovery, settle_seconds=30))
    with capture_logs() as logs:
        assert run_sup(s)[0] == 0
    assert [r["video"].rsplit("/", 1)[1] for r in read_runs(tmp_path / "runs.jsonl")] == ["cam_20251114_100000.mp4"]
    assert next(e for e in logs if e["event"] == "videos_unsettled")["count"] == 1


def test_daemon_picks_up_new_recordings_and_drains_on_stop(tmp_path):
    from tests.test_event_order import run_on_clock

    make_video(tmp_path / "videos" / "cam/cam_20251114_100000.mp4")
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=2, rescan_seconds=60, drain_seconds=30))
    long = "cam_20251114_120000.mp4"  # runs past the drain: interrupted, back to the queue

    async def drive(sup, clock, launcher):
        await clock.advance(1)
        assert sup.stats.completed == 1
        make_video(tmp_path / "videos" / "cam/cam_20251114_110000.mp4")
        await clock.advance(60)  # the periodic rescan finds it, and it runs
        await clock.advance(1)
        assert sup.stats.completed == 2
        make_video(tmp_path / "videos" / "cam" / long)
        sup.request_reload()  # found at once, without waiting for the next periodic rescan
        await clock.advance(1)
        assert len(sup.running) == 1
        sup.request_stop()
        await clock.advance(29)
        assert len(sup.running) == 1  # still draining
        await clock.advance(2)

    with capture_logs() as logs:
        code, _, launcher = run_on_clock(s, drive, daemon=True,
                                         script=lambda video, attempt: (1000.0 if video == long else 0.5, 0))
    assert code == 0
    j = jobs(s)
    assert j["cam_20251114_110000.mp4"].state is JobState.DONE
    interrupted = j[long]
    assert interrupted.state is JobState.QUEUED and interrupted.attempts == 0
    done = next(e for e in logs if e["event"] == "shutdown_complete")
    assert done["stopped"] == 1
    [(stopped_at, code_)] = [(at, c) for at, kind, video, c in launcher.events if kind == "end" and video == long]
    assert code_ == 143 and stopped_at == 63.0 + 30  # stop asked at 63: at the end of the drain, not before


def test_a_vanished_video_is_dead_with_a_clear_reason(tmp_path):
    v = make_video(tmp_path / "videos" / "cam/cam_20251114_100000.mp4")
    s = make_settings(tmp_path)

    store = JobStore.open(s.state_db)
    from supervisor.jobs.discovery import scan
    from supervisor.protocol.names import PathParser

    store.sync(scan(s.videos_dir, extensions=("mp4",), settle_seconds=0, now=time.time(),
                    parser=PathParser()).videos)
    store.close()
    v.unlink()
    code, _ = run_sup(s)
    assert code == 1
    job = jobs(s)["cam_20251114_100000.mp4"]
    assert job.state is JobState.DEAD and "the video is gone" in job.last_error
