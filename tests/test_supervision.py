"""Nothing fails silently: store faults at every call site, a crashed task, a worker that finds the
configuration unusable, transient failures without end, reloads that go wrong. Each either recovers
by itself or stops with a reason and a non-zero exit, never alive with work stuck."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from supervisor.config import ConfigError, WorkerSettings, load_settings
from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from supervisor.observe.notify import Notifier
from supervisor.scheduling.supervisor import Supervisor
from tests.daemon_harness import NotifySocket
from tests.fakes import (
    FakeLauncher,
    FaultyStore,
    ManualClock,
    disk_full,
    engine,
    make_settings,
    make_video,
)
from tests.test_scheduling import capture_logs, jobs

FAST_RETRY = (0.01, 0.05)


def run_faulty(settings, faults, *, daemon=False, during=None, notifier=None, reload=None):
    async def main():
        real = JobStore.open(settings.state_db)
        store = FaultyStore(real, faults)
        try:
            sup = Supervisor(settings, engine(store), daemon=daemon, store_retry=FAST_RETRY, notifier=notifier,
                             reload=reload)
            side = asyncio.create_task(during(sup)) if during else None
            code = await sup.run()
            if side is not None:
                await side
            return code, sup, store
        finally:
            real.close()
            if notifier is not None:
                notifier.close()

    return asyncio.run(main())


def run_faulty_on_clock(settings, faults, *, script=None, daemon=False, scenario=None, **options):
    """As run_faulty, on a clock moved by hand with the in-process launcher (`script` as FakeLauncher's);
    `scenario(sup, clock, launcher)` drives a daemon. Returns (exit code, supervisor, store, launcher)."""

    async def main():
        real = JobStore.open(settings.state_db)
        store = FaultyStore(real, faults)
        clock = ManualClock()
        launcher = FakeLauncher(clock, script)
        try:
            sup = Supervisor(settings, engine(store), daemon=daemon, store_retry=(1.0, 4.0), clock=clock,
                             launcher=launcher, **options)
            clock.busy = sup.busy_off_loop
            task = asyncio.ensure_future(sup.run())
            await clock.settle()
            if scenario is not None:
                await scenario(sup, clock, launcher)
            await clock.run_until(task.done)
            return task.result(), sup, store, launcher
        finally:
            real.close()

    return asyncio.run(main())


def videos(tmp_path, n=3):
    return [make_video(tmp_path / "videos" / "cam" / f"cam_20251114_10{i:02d}00.mp4") for i in range(n)]


@pytest.mark.parametrize("call_site", ["recover_running", "sync_apart", "jobs", "claim", "mark_done",
                                       "mark_failed"])
def test_a_full_store_disk_at_any_call_site_pauses_then_resumes_by_itself(tmp_path, call_site):
    videos(tmp_path)
    s = make_settings(tmp_path, worker=WorkerSettings(retry_backoff_seconds=1, retry_backoff_max_seconds=2))

    def script(video, attempt):  # one failed attempt, so that mark_failed is reached too
        return 1.0, 1 if video == "cam_20251114_100000.mp4" and attempt == 1 else 0

    with capture_logs() as logs:
        code, _, store, launcher = run_faulty_on_clock(s, {call_site: [disk_full(), disk_full(), disk_full()]},
                                                       script=script)
    assert store.raised == [call_site] * 3
    assert code == 0
    assert {j.state for j in jobs(s).values()} == {JobState.DONE}
    trouble = [e["event"] for e in logs if e["event"] in ("store_unavailable", "store_recovered")]
    assert trouble[0] == "store_unavailable" and trouble[-1] == "store_recovered"  # logged, then over
    unavailable = next(e for e in logs if e["event"] == "store_unavailable")
    assert unavailable["operation"] == call_site.removesuffix("_apart") and "disk is full" in unavailable["error"]
    # Every video ran to completion once (the planned failure aside): nothing lost, nothing doubled.
    completed = [video for _, kind, video, code in launcher.events if kind == "end" and code == 0]
    assert sorted(completed) == sorted(jobs(s))


@pytest.mark.parametrize("daemon", [False, True])
def test_an_unexpected_error_in_a_task_is_logged_once_and_ends_the_run_with_70(tmp_path, daemon):
    videos(tmp_path, 4)
    s = make_settings(tmp_path)
    with capture_logs() as logs:
        code, sup, _, _ = run_faulty_on_clock(s, {"claim": [RuntimeError("boom")]}, daemon=daemon,
                                              script=lambda video, attempt: (1.0, 0))
    assert code == 70
    crashed = [e for e in logs if e["event"] == "task_crashed"]
    assert len(crashed) == 1 and crashed[0]["task"] == "dispatch" and "RuntimeError: boom" in crashed[0]["error"]
    assert crashed[0]["exc_info"] is not None and crashed[0]["log_level"] == "critical"
    assert any(e["event"] == "run_summary" for e in logs)  # the shutdown still ran
    assert not sup.watchdog.healthy()  # the watchdog is no longer fed
    # Nothing is left running in the store: what did not run is still queued for the next start.
    assert JobState.RUNNING not in {j.state for j in jobs(s).values()}


def test_a_crash_in_a_job_task_is_noticed_too(tmp_path):
    videos(tmp_path, 2)
    s = make_settings(tmp_path)
    with capture_logs() as logs:
        code, _, _, _ = run_faulty_on_clock(s, {"mark_done": [ValueError("bad row")]},
                                            script=lambda video, attempt: (1.0, 0))
    assert code == 70
    [crashed] = [e for e in logs if e["event"] == "task_crashed"]
    assert crashed["task"].startswith("job-") and "bad row" in crashed["error"]


def test_worker_exit_78_halts_the_run_without_charging_the_job(tmp_path):
    for i in range(3):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_10{i:02d}00.mp4")
    s = make_settings(tmp_path, scheduler=replace(make_settings(tmp_path).scheduler, max_parallel=1))
    with capture_logs() as logs:
        code, _, _, launcher = run_faulty_on_clock(
            s, {}, script=lambda video, attempt: (1.0, 78 if video == "cam_20251114_100000.mp4" else 0))
    assert code == 78
    halted = jobs(s)["cam_20251114_100000.mp4"]
    assert halted.state is JobState.QUEUED
    assert halted.attempts == 0  # not charged
    assert len(launcher.spans()) == 1  # nothing else started after the halt
    [halted] = [e for e in logs if e["event"] == "run_halted"]
    assert "exit 78" in halted["reason"] and "cam_20251114_100000.mp4" in halted["reason"]


def test_exit_75_has_a_cap_of_its_own_then_the_job_is_dead(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path, worker=WorkerSettings(max_attempts=2, max_transient_attempts=4,
                                                      retry_backoff_seconds=1, retry_backoff_max_seconds=2))
    code, _, _, launcher = run_faulty_on_clock(s, {}, script=lambda video, attempt: (1.0, 75))
    assert code == 1  # a once run with a dead job
    [job] = jobs(s).values()
    assert job.state is JobState.DEAD and job.attempts == 4 and job.last_exit_code == 75
    assert len(launcher.spans()) == 4


def test_a_requested_stop_of_the_daemon_exits_0_even_with_dead_jobs(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path)

    async def stop_when_dead(sup, clock, launcher):
        await clock.advance(2)
        assert sup.stats.dead == 1
        sup.request_stop()

    code, sup, _, _ = run_faulty_on_clock(s, {}, daemon=True, scenario=stop_when_dead,
                                          script=lambda video, attempt: (1.0, 65))
    assert sup.stats.dead == 1 and code == 0


def _notify_pairs(sock: NotifySocket) -> list[str]:
    return [k for m in sock.messages for k in ("RELOADING", "READY") if m.get(k) == "1"]


class RecordingNotifier(Notifier):
    """systemd's side of sd_notify, as a list of what was said."""

    def __init__(self) -> None:
        super().__init__("")
        self.said: list[str] = []

    def send(self, *fields: str) -> bool:
        self.said.extend(f for f in fields if f in ("READY=1", "RELOADING=1"))
        return True


@pytest.mark.parametrize("failure", ["unlistable videos folder", "empty settings file", "unreadable settings"])
def test_a_reload_that_goes_wrong_keeps_the_old_settings_and_always_says_ready(tmp_path, failure):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path)
    settings_file = tmp_path / "vs.toml"
    settings_file.write_text("" if failure == "empty settings file" else "[scheduler]\nmax_parallel = 3\n")
    if failure == "unreadable settings":
        settings_file.unlink()
        settings_file.mkdir()
    notifier = RecordingNotifier()

    def reload():
        if failure == "unlistable videos folder":
            raise PermissionError(13, "Permission denied", str(s.videos_dir))
        return load_settings(settings_file)

    async def hup_twice(sup, clock, launcher):
        for _ in (1, 2):
            sup.request_reload()
            await clock.advance(2)
        sup.request_stop()

    with capture_logs() as logs:
        code, sup, _, _ = run_faulty_on_clock(s, {}, daemon=True, scenario=hup_twice, notifier=notifier,
                                              reload=reload, script=lambda video, attempt: (1.0, 0))
    assert code == 0
    assert notifier.said[:5] == ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1"]
    failed = [e for e in logs if e["event"] == "reload_failed"]
    assert len(failed) == 2 and sup.reloads == 0 and sup.settings.scheduler.max_parallel == 2


def test_a_videos_folder_that_cannot_be_listed_at_a_hup_is_logged_and_later_hups_still_work(tmp_path):
    from supervisor.commands.cli import check_cameras, check_videos_dir

    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path, cameras=("cam",))
    sock = NotifySocket(tmp_path / "notify.sock")
    hidden = tmp_path / "videos-away"

    def reload():
        check_videos_dir(s)  # lists the videos folder, as the real reload does
        check_cameras(s)
        return s

    async def hups(sup, clock, launcher):
        await clock.run_until(lambda: sup.stats.completed >= 1)
        (tmp_path / "videos").rename(hidden)
        (tmp_path / "videos").write_text("not a folder any more")  # listing it fails: NotADirectoryError
        sup.request_reload()
        await clock.run_until(lambda: _notify_pairs(sock).count("READY") >= 2)
        (tmp_path / "videos").unlink()
        hidden.rename(tmp_path / "videos")
        make_video(tmp_path / "videos" / "cam" / "cam_20251114_110000.mp4")
        sup.request_reload()
        await clock.run_until(lambda: sup.stats.completed >= 2)
        sup.request_stop()

    notifier = Notifier(sock.address)
    try:
        with capture_logs() as logs:
            code, sup, _, _ = run_faulty_on_clock(s, {}, daemon=True, scenario=hups, notifier=notifier,
                                                  reload=reload)
    finally:
        notifier.close()
        sock.close()
    assert code == 0 and sup.stats.completed == 2
    assert [e["event"] for e in logs if e["event"] in ("reload_failed", "scan_failed")][:1] == ["reload_failed"]
    assert _notify_pairs(sock)[:5] == ["READY", "RELOADING", "READY", "RELOADING", "READY"]


def test_an_empty_settings_file_is_refused(tmp_path):
    path = tmp_path / "vs.toml"
    path.write_text("\n  \n")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_settings(path)


def test_a_webhook_secret_never_appears_in_a_type_error(tmp_path):
    path = tmp_path / "vs.toml"
    path.write_text('[alerts]\nwebhooks = "https://user:hunter2@hooks.example/T0KEN"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "hunter2" not in str(err.value) and "T0KEN" not in str(err.value)
    assert "alerts.webhooks" in str(err.value) and "expected list of string" in str(err.value)


def test_a_paused_daemon_says_why_in_systemctl_status_and_in_status():

    from supervisor.observe.status import render_status, status_line

    counts = {"queued": 3, "failed": 0, "dead": 0, "running": 1, "done": 5}
    snapshot = {"running": [], "gpus": [], "limit": 4, "eta_seconds": None,
                "store_trouble": "database or disk is full"}
    assert status_line(counts, snapshot).startswith("PAUSED: job store unavailable (database or disk is full) · ")
    st = {"daemon": {"running": True, "pid": 1, "mode": "daemon", "started_at": None}, "gpus": [], "limit": 4,
          "jobs": counts, "damaged": {"videos": 0, "seconds": 0}, "partial_videos": 0, "running": [],
          "queued_by_camera": {}, "eta_seconds": None, "recent_failures": [],
          "store_trouble": "database or disk is full"}
    assert "PAUSED: the job store refuses writes (database or disk is full)" in render_status(st)
