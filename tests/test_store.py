from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.model import JobState, StoreError
from supervisor.jobs.sqlite_store import SCHEMA_VERSION, JobStore, SchedulerLock


def video(name: str, size: int = 100, mtime: float = 1000.0, hour: int = 10) -> VideoFile:
    return VideoFile("cam", datetime(2025, 11, 14, hour), Path(f"/v/cam/{name}"), size, mtime)


def test_new_videos_are_queued_once_and_done_ones_stay_done(tmp_path):
    store = JobStore.open(tmp_path / "jobs.db")
    r1 = store.sync([video("a.mp4"), video("b.mp4", hour=9)])
    assert len(r1.new) == 2
    assert [j.path.name for j in store.jobs([JobState.QUEUED])] == ["b.mp4", "a.mp4"]
    job = store.claim(r1.new[0], now=1.0)
    assert job.attempts == 1 and job.state is JobState.RUNNING and job.claim_token == 1
    assert store.mark_done(job.id, token=job.claim_token, now=2.0, duration=1.0, output="/o")
    r2 = store.sync([video("a.mp4"), video("b.mp4", hour=9)])
    assert r2.ready == []
    assert store.get(job.id).state is JobState.DONE


def test_changed_file_is_queued_again_and_reprocess_requeues_done(tmp_path):
    store = JobStore.open(tmp_path / "jobs.db")
    jid = store.sync([video("a.mp4")]).new[0]
    token = store.claim(jid, now=1.0).claim_token
    store.mark_done(jid, token=token, now=2.0, duration=1.0, output=None)
    assert store.sync([video("a.mp4", size=200)]).changed == [jid]
    assert store.get(jid).state is JobState.QUEUED and store.get(jid).attempts == 0
    token = store.claim(jid, now=3.0).claim_token
    store.mark_failed(jid, token=token, now=4.0, error="boom", exit_code=65, retry_at=None)
    assert store.get(jid).state is JobState.DEAD
    assert store.sync([video("a.mp4", size=200)]).ready == []
    assert store.sync([video("a.mp4", size=200)], reprocess=True).requeued == [jid]


def test_running_rows_are_taken_over_at_recovery_and_requeued_without_counting_the_attempt(tmp_path):
    path = tmp_path / "jobs.db"
    store = JobStore.open(path)
    jid = store.sync([video("a.mp4")]).new[0]
    store.claim(jid, now=1.0)
    store.close()
    store = JobStore.open(path)
    [taken] = store.recover_running()
    assert taken.job.state is JobState.RUNNING and taken.lost_token == taken.job.claim_token == 1  # as it was
    assert store.requeue_interrupted(jid, token=taken.job.claim_token)
    job = store.get(jid)
    assert job.state is JobState.QUEUED and job.attempts == 0


def test_every_write_of_an_attempt_is_fenced_by_its_claim(tmp_path):
    store = JobStore.open(tmp_path / "jobs.db")
    jid = store.sync([video("a.mp4")]).new[0]
    first = store.claim(jid, now=1.0).claim_token
    assert store.requeue_interrupted(jid, token=first)
    second = store.claim(jid, now=2.0).claim_token
    assert second == first + 1
    assert store.renew({jid: first}) == set() and store.renew({jid: second}) == {jid}
    # The first attempt's late outcome changes nothing; the second's is taken.
    assert not store.mark_done(jid, token=first, now=3.0, duration=1.0, output="old")
    assert not store.mark_failed(jid, token=first, now=3.0, error="x", exit_code=1, retry_at=None)
    assert store.get(jid).state is JobState.RUNNING
    assert store.mark_done(jid, token=second, now=4.0, duration=2.0, output="new")
    # A done job never goes back to queued through an attempt's requeue, late or not.
    assert not store.requeue_interrupted(jid, token=second)
    assert store.get(jid).state is JobState.DONE and store.get(jid).output == "new"


def test_store_and_lock_files_are_private(tmp_path):
    store = JobStore.open(tmp_path / "state" / "jobs.db")
    store.close()
    assert (tmp_path / "state" / "jobs.db").stat().st_mode & 0o777 == 0o640
    lock = SchedulerLock(tmp_path / "state" / "jobs.db")
    lock.acquire()
    assert lock.path.stat().st_mode & 0o777 == 0o640
    lock.release()


HOLD_LOCK = """
import sys, time
from pathlib import Path
from supervisor.jobs.sqlite_store import SchedulerLock
SchedulerLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.faults
def test_second_scheduler_is_refused_and_the_lock_dies_with_a_killed_process(tmp_path):
    db = tmp_path / "jobs.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match=f"already in use by another scheduler \\(pid {holder.pid}\\)"):
            SchedulerLock(db).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    lock = SchedulerLock(db)
    lock.acquire()  # the SIGKILLed holder left nothing behind that blocks us
    lock.release()


def test_readonly_store_reads_beside_a_writer(tmp_path):
    db = tmp_path / "jobs.db"
    writer = JobStore.open(db)
    writer.sync([video("a.mp4")])
    reader = JobStore.open(db, readonly=True)
    assert [j.path.name for j in reader.jobs()] == ["a.mp4"]
    writer.sync([video("b.mp4")])
    assert len(reader.jobs()) == 2
    with pytest.raises(sqlite3.OperationalError):
        reader._conn.execute("DELETE FROM jobs")


def test_missing_store_reads_as_empty_without_creating_it(tmp_path):
    reader = JobStore.open(tmp_path / "none.db", readonly=True)
    assert reader.jobs() == []
    assert not (tmp_path / "none.db").exists()


@pytest.mark.faults
def test_corrupt_store_is_refused_with_advice_and_left_untouched(tmp_path):
    db = tmp_path / "jobs.db"
    junk = os.urandom(8192)
    db.write_bytes(junk)
    with pytest.raises(StoreError, match=r"not a usable job store.*move it aside"):
        JobStore.open(db)
    assert db.read_bytes() == junk


@pytest.mark.faults
def test_store_from_an_older_schema_is_migrated(tmp_path):
    db = tmp_path / "jobs.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE jobs (id INTEGER PRIMARY KEY, camera TEXT NOT NULL, path TEXT NOT NULL UNIQUE,
            recorded_at TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, last_exit_code INTEGER,
            discovered_at REAL NOT NULL, not_before REAL, started_at REAL, finished_at REAL,
            duration_seconds REAL, output TEXT);
        INSERT INTO jobs (camera, path, recorded_at, size, mtime, state, discovered_at)
            VALUES ('cam', '/v/cam/a.mp4', '2025-11-14T10:00:00', 1, 1.0, 'done', 1.0);
        PRAGMA user_version = 1;
    """)
    conn.close()
    store = JobStore.open(db)
    job = store.jobs()[0]
    assert job.state is JobState.DONE and job.video_seconds is None
    assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "jobs.db"
    JobStore.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer version"):
        JobStore.open(db)


def test_ten_thousand_rows_sync_in_one_transaction(tmp_path):
    store = JobStore.open(tmp_path / "jobs.db")
    vids = [video(f"v{i:05d}.mp4") for i in range(10_000)]
    t = time.perf_counter()
    assert len(store.sync(vids).new) == 10_000
    assert store.sync(vids).ready == []
    assert time.perf_counter() - t < 30  # generous: this guards against per-row commits, not speed


def test_a_scan_on_its_own_connection_never_requeues_a_job_that_started_meanwhile(tmp_path):
    from supervisor.jobs.sqlite_store import sync_in_thread

    db = tmp_path / "jobs.db"
    scheduler = JobStore.open(db)
    jid = sync_in_thread(db, [video("a.mp4")], reprocess=False, now=1.0).new[0]
    token = scheduler.claim(jid, now=2.0).claim_token
    # The file changed while its job runs: the scan leaves the row alone...
    assert sync_in_thread(db, [video("a.mp4", size=999)], reprocess=True, now=3.0).ready == []
    assert scheduler.get(jid).state is JobState.RUNNING and scheduler.get(jid).size == 100
    scheduler.mark_done(jid, token=token, now=4.0, duration=2.0, output=None)
    # ...and the next scan sees the change and queues it again.
    assert sync_in_thread(db, [video("a.mp4", size=999)], reprocess=False, now=5.0).changed == [jid]


def test_sync_commits_in_chunks_so_the_scheduler_never_waits_long(tmp_path):
    db = tmp_path / "jobs.db"
    scanner = JobStore.open(db)
    scheduler = JobStore.open(db)
    seen: list[int] = []
    original = scanner._conn

    class Spy:
        """Counts the scanner's commits by peeking from the scheduler's connection."""

        def execute(self, sql, *args):
            if sql == "COMMIT":
                out = original.execute(sql, *args)
                seen.append(len(scheduler.jobs()))
                return out
            return original.execute(sql, *args)

    scanner._conn = Spy()  # type: ignore[assignment]
    scanner.sync([video(f"v{i:04d}.mp4") for i in range(5000)], chunk=2000)
    assert seen == [2000, 4000, 5000]
