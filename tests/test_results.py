"""One result set per recording, runs of the first N seconds, and damage that shows everywhere."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.config import WorkerSettings
from supervisor.jobs.model import JobState, ResultFolderTaken
from supervisor.jobs.sqlite_store import SCHEMA_VERSION, JobStore
from supervisor.observe.metrics import Metrics
from supervisor.observe.report import build_report, render_table
from supervisor.observe.status import collect_status, render_status
from tests.fakes import cli, cli_env, fake_worker_command, make_settings, make_video, read_runs
from tests.test_scheduling import capture_logs, jobs, run_sup


def _summaries(results: Path) -> dict[str, str]:
    """Result folder (relative) -> the video its summary names."""
    return {str(p.parent.relative_to(results)): json.loads(p.read_text())["video"]["path"]
            for p in results.rglob("summary.json")}


def test_recordings_that_share_a_stem_get_a_result_folder_each(tmp_path):
    videos = tmp_path / "videos"
    names = ["camera_50/2025-11-14/14-30-00.mp4", "camera_50/2025-11-15/14-30-00.mp4",
             "cam/cam_20251114_100000.mp4", "cam/cam_20251114_100000.mkv",
             " cam /cam_20251114_100000.mp4"]
    for name in names:
        make_video(videos / name)
    s = make_settings(tmp_path)
    code, _ = run_sup(s)
    assert code == 0
    store = JobStore.open(s.state_db, readonly=True)
    done = store.jobs()  # by row: these videos share file names, so not keyed by name
    store.close()
    assert [j.state for j in done] == [JobState.DONE] * 5
    assert sorted(j.result_key for j in done) == sorted(names)
    # Each folder holds the results of its own recording: nothing was overwritten.
    assert _summaries(tmp_path / "results") == {name: str(videos / name) for name in names}


def test_the_store_refuses_two_jobs_one_result_folder_and_the_log_names_both(tmp_path):
    videos = tmp_path / "videos"
    make_video(videos / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path)
    # The folder is already recorded for a job of a videos directory used before.
    store = JobStore.open(s.state_db)
    old = tmp_path / "old-videos" / "cam" / "cam_20251114_100000.mp4"
    store._conn.execute(
        "INSERT INTO jobs (camera, path, recorded_at, size, mtime, state, discovered_at, result_key) "
        "VALUES ('cam', ?, '2025-11-14T10:00:00', 1, 1.0, 'done', 0, 'cam/cam_20251114_100000.mp4')", (str(old),))
    new_id = store._conn.execute(
        "INSERT INTO jobs (camera, path, recorded_at, size, mtime, state, discovered_at) "
        "VALUES ('cam', '/x.mp4', '2025-11-14T10:00:00', 1, 1.0, 'queued', 0)").lastrowid
    with pytest.raises(ResultFolderTaken, match=str(old)):
        store.claim(new_id, now=1.0, result_key="cam/cam_20251114_100000.mp4")
    store._conn.execute("DELETE FROM jobs WHERE id = ?", (new_id,))
    store.close()
    with capture_logs() as logs:
        code, _ = run_sup(s)
    assert code == 1  # the new video's job is dead: its folder belongs to another
    [conflict] = [e for e in logs if e["event"] == "result_folder_conflict"]
    assert conflict["video"] == str(videos / "cam" / "cam_20251114_100000.mp4")
    assert conflict["other_video"] == str(old)
    assert read_runs(tmp_path / "runs.jsonl") == []


def test_an_older_store_keeps_the_folders_its_done_jobs_wrote(tmp_path):
    db = tmp_path / "jobs.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE jobs (id INTEGER PRIMARY KEY, camera TEXT NOT NULL, path TEXT NOT NULL UNIQUE,
            recorded_at TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, last_exit_code INTEGER, discovered_at REAL NOT NULL,
            not_before REAL, started_at REAL, finished_at REAL, duration_seconds REAL, output TEXT,
            video_seconds REAL);
        INSERT INTO jobs (camera, path, recorded_at, size, mtime, state, discovered_at) VALUES
            ('cam', '/v/cam/a.mp4', '2025-11-14T10:00:00', 1, 1, 'done', 0),
            ('cam', '/v/cam/a.mkv', '2025-11-14T10:00:00', 1, 1, 'done', 0),
            ('cam', '/v/cam/b.mp4', '2025-11-14T10:00:00', 1, 1, 'queued', 0);
        PRAGMA user_version = 2;
    """)
    conn.close()
    store = JobStore.open(db)
    keys = {j.path.name: j.result_key for j in store.jobs()}
    version = store._conn.execute("PRAGMA user_version").fetchone()[0]
    store.close()
    # a.mp4 wrote cam/a; a.mkv overwrote it back then, so it gets a folder of its own when it next runs.
    assert keys == {"a.mp4": "cam/a", "a.mkv": None, "b.mp4": None} and version == SCHEMA_VERSION


def test_a_video_done_for_its_first_seconds_runs_again_when_more_is_asked(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path, duration=60.0)
    assert run_sup(s)[0] == 0
    [job] = jobs(s).values()
    assert job.covered_seconds == 60 and job.state_text() == "done (first 60 s)"
    assert run_sup(replace(s, duration=30.0))[0] == 0  # less than what is done: nothing to do
    assert len(read_runs(tmp_path / "runs.jsonl")) == 1
    listing = subprocess.run(cli("--videos-dir", str(s.videos_dir), "--state-db", str(s.state_db), "--list"),
                             capture_output=True, text=True, env=cli_env(), timeout=60)
    assert "done (first 60 s)" in listing.stdout, listing.stdout
    assert run_sup(replace(s, duration=0.0))[0] == 0  # the whole recording: runs again
    [job] = jobs(s).values()
    assert len(read_runs(tmp_path / "runs.jsonl")) == 2
    assert job.state is JobState.DONE and job.covered_seconds is None and job.state_text() == "done"


def test_damage_a_worker_reports_shows_in_the_log_status_report_and_metrics(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_110000.mp4")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"cam_20251114_100000.mp4": {"damaged_seconds": 3.2}}))
    s = make_settings(tmp_path, worker=WorkerSettings(
        command=fake_worker_command(plan=plan), timeout_seconds=30, retry_backoff_seconds=0.05))
    metrics = Metrics("")

    async def watch(sup):
        sup.observers.append(metrics)

    with capture_logs() as logs:
        code, _ = run_sup(s, during=watch)
    assert code == 0
    [warning] = [e for e in logs if e["event"] == "video_damaged"]
    assert warning["damaged_seconds"] == 3.2 and "done, 3.2 s damaged" in warning["message"]
    by_name = jobs(s)
    store = JobStore.open(s.state_db, readonly=True)
    try:
        status = collect_status(store, None)
    finally:
        store.close()
    assert by_name["cam_20251114_100000.mp4"].state_text() == "done, 3.2 s damaged"
    assert by_name["cam_20251114_110000.mp4"].state_text() == "done"
    assert status["damaged"] == {"videos": 1, "seconds": 3.2}
    assert "2 done (1 damaged, 3.2 s unreadable)" in render_status(status)
    report = build_report(by_name.values())
    assert report["cameras"][0]["damaged_videos"] == 1 and report["cameras"][0]["damaged_seconds"] == 3.2
    assert "1 (3.2 s)" in render_table(report)
    assert metrics.registry.get_sample_value("video_supervisor_damaged_videos_total", {"camera": "cam"}) == 1
    assert metrics.registry.get_sample_value("video_supervisor_damaged_video_seconds_total",
                                             {"camera": "cam"}) == pytest.approx(3.2)


def test_a_camera_folder_named_like_an_option_is_processed(tmp_path):
    make_video(tmp_path / "videos" / "-x" / "-x_20251114_100000.mp4")
    make_video(tmp_path / "videos" / "--help" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path)
    code, _ = run_sup(s)
    assert code == 0
    runs = read_runs(tmp_path / "runs.jsonl")
    assert sorted(r["camera"] for r in runs) == ["--help", "-x"]
