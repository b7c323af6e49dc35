"""One contract, two engines: every test here runs on the SQLite engine and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.model import READY_STATES, JobState, ResultFolderTaken
from supervisor.jobs.people import PeopleQuery
from supervisor.jobs.postgres import PostgresEngine
from supervisor.jobs.sqlite_engine import SqliteEngine
from supervisor.protocol.hours import HourRow

ENGINES = ["sqlite", "postgres"]


def video(name: str, minute: int, *, size: int = 100, mtime: float = 1.0, camera: str = "cam") -> VideoFile:
    return VideoFile(camera, datetime(2025, 11, 14, 10) + timedelta(minutes=minute), Path(f"/v/{camera}/{name}"),
                     size, mtime)


@pytest.fixture(params=ENGINES)
def opener(request, tmp_path):
    """`await opener(**kw)`: a new engine on this test's store (the same store each time)."""
    if request.param == "sqlite":
        async def open_sqlite(**_: object):
            return SqliteEngine.open(tmp_path / "jobs.db")
        return open_sqlite
    url = request.getfixturevalue("pg_url")

    async def open_pg(**kw: object):
        return await PostgresEngine.open(url, **kw)
    return open_pg


def run(coro):
    return asyncio.run(coro)


def test_discovery_is_idempotent_and_claims_go_to_one_taker(opener):
    async def main():
        e = await opener()
        videos = [video("c.mp4", 3), video("a.mp4", 1), video("b.mp4", 2)]
        first = await e.sync(videos, reprocess=False, now=1.0, duration=0)
        again = await e.sync(videos, reprocess=False, now=2.0, duration=0)
        ready = await e.jobs(READY_STATES)
        job = await e.claim(ready[0].id, now=5.0, result_key="cam/a.mp4")
        twice = await e.claim(ready[0].id, now=6.0, result_key="cam/a.mp4")
        counts = await e.counts()
        await e.close()
        return first, again, ready, job, twice, counts

    first, again, ready, job, twice, counts = run(main())
    assert len(first.new) == 3 and again.ready == []
    assert [j.path.name for j in ready] == ["a.mp4", "b.mp4", "c.mp4"]  # oldest recording first
    assert job.state is JobState.RUNNING and job.attempts == 1 and job.result_key == "cam/a.mp4"
    assert twice is None
    assert counts["running"] == 1 and counts["queued"] == 2


def test_retries_then_dead_and_attempts_counted_once_each(opener):
    async def main():
        e = await opener()
        [jid] = (await e.sync([video("a.mp4", 1)], reprocess=False, now=1.0, duration=0)).new
        first = await e.claim(jid, now=2.0)
        await e.mark_failed(jid, token=first.claim_token, now=3.0, error="exit 1", exit_code=1, retry_at=33.0)
        waiting = await e.get(jid)
        again = await e.claim(jid, now=40.0)
        await e.mark_failed(jid, token=again.claim_token, now=41.0, error="exit 1", exit_code=1, retry_at=None)
        dead = await e.get(jid)
        await e.close()
        return waiting, again, dead

    waiting, again, dead = run(main())
    assert waiting.state is JobState.FAILED and waiting.not_before == 33.0 and waiting.last_exit_code == 1
    assert again.attempts == 2
    assert dead.state is JobState.DEAD and dead.attempts == 2 and dead.last_error == "exit 1"


def test_changed_files_partial_runs_and_reprocess_queue_again(opener):
    async def main():
        e = await opener()
        a, b, c = video("a.mp4", 1), video("b.mp4", 2), video("c.mp4", 3)
        ids = (await e.sync([a, b, c], reprocess=False, now=1.0, duration=0)).new
        for jid, covered in zip(ids, (None, 60.0, None), strict=True):
            job = await e.claim(jid, now=2.0)
            await e.mark_done(jid, token=job.claim_token, now=3.0, duration=1.0, output="x", video_seconds=60.0,
                              covered_seconds=covered, damaged_seconds=0.0)
        grown = video("a.mp4", 1, size=200)
        sync = await e.sync([grown, b, c], reprocess=False, now=4.0, duration=0)
        everything = await e.sync([grown, b, c], reprocess=True, now=5.0, duration=0)
        await e.close()
        return ids, sync, everything

    ids, sync, everything = run(main())
    assert sync.changed == [ids[0]]  # the file changed: run again
    assert sync.requeued == [ids[1]]  # done for its first 60 s only; this run wants all of it
    assert everything.requeued == [ids[2]]  # --reprocess: the rest that was done


def test_one_result_folder_per_recording(opener):
    async def main():
        e = await opener()
        one, two = (await e.sync([video("a.mp4", 1), video("b.mp4", 2)], reprocess=False, now=1.0, duration=0)).new
        await e.claim(one, now=2.0, result_key="cam/same")
        try:
            await e.claim(two, now=2.0, result_key="cam/same")
        except ResultFolderTaken as exc:
            taken = exc
        else:
            taken = None
        still = await e.get(two)
        await e.close()
        return taken, still

    taken, still = run(main())
    assert taken is not None and taken.other.path.name == "a.mp4"
    assert still.state is JobState.QUEUED and still.attempts == 0  # not claimed


def test_a_crashed_schedulers_jobs_are_taken_over_and_requeued_uncounted(opener):
    async def main():
        first = await opener(lease_seconds=0.0)
        ids = (await first.sync([video("a.mp4", 1), video("b.mp4", 2)], reprocess=False, now=1.0, duration=0)).new
        lost = await first.claim(ids[0], now=time.time(), result_key="cam/a.mp4")
        await first.close()  # ...and it died: nothing renews its claim
        second = await opener(lease_seconds=0.0)
        recovered = await second.recover_running()
        stale = await second.requeue_interrupted(ids[0], token=lost.claim_token - 1)
        requeued = await second.requeue_interrupted(ids[0], token=recovered[0].job.claim_token)
        after = await second.get(ids[0])
        await second.close()
        return ids, lost, recovered, stale, requeued, after

    ids, lost, recovered, stale, requeued, after = run(main())
    [taken] = recovered
    assert (taken.job.id, taken.job.state, taken.job.result_key) == (ids[0], JobState.RUNNING, "cam/a.mp4")
    assert taken.lost_token == lost.claim_token  # where the lost attempt's results are looked for
    assert not stale and requeued
    assert after.state is JobState.QUEUED and after.attempts == 0


def test_an_attempt_whose_claim_was_taken_over_can_record_nothing(opener):
    """The fence: a scheduler paused past its lease (or the attempt before a retry) writes nothing, whatever
    order the late writes come in; a done job never goes back to queued."""
    async def main():
        e = await opener()
        [jid] = (await e.sync([video("a.mp4", 1)], reprocess=False, now=1.0, duration=0)).new
        old = await e.claim(jid, now=2.0)
        assert await e.requeue_interrupted(jid, token=old.claim_token)
        new = await e.claim(jid, now=3.0)
        renewed = (await e.renew({jid: old.claim_token}), await e.renew({jid: new.claim_token}))
        late = (await e.mark_done(jid, token=old.claim_token, now=4.0, duration=1.0, output="old", video_seconds=1.0,
                                  covered_seconds=None, damaged_seconds=0.0),
                await e.mark_failed(jid, token=old.claim_token, now=4.0, error="x", exit_code=1, retry_at=None),
                await e.requeue_interrupted(jid, token=old.claim_token))
        ours = await e.mark_done(jid, token=new.claim_token, now=5.0, duration=2.0, output="new", video_seconds=1.0,
                                 covered_seconds=None, damaged_seconds=0.0)
        after_done = await e.requeue_interrupted(jid, token=new.claim_token)
        job = await e.get(jid)
        await e.close()
        return old, new, renewed, late, ours, after_done, job

    old, new, renewed, late, ours, after_done, job = run(main())
    assert new.claim_token == old.claim_token + 1
    assert renewed == (set(), {new.id})
    assert late == (False, False, False) and ours and not after_done
    assert job.state is JobState.DONE and job.output == "new" and job.attempts == 1


def test_the_figures_behind_status_and_report(opener):
    async def main():
        e = await opener()
        ids = (await e.sync([video("a.mp4", 1, size=1000), video("b.mp4", 2, size=500, camera="door")],
                            reprocess=False, now=1.0, duration=0)).new
        pending = await e.pending_bytes_by_camera()
        job = await e.claim(ids[0], now=2.0)
        await e.mark_done(ids[0], token=job.claim_token, now=12.0, duration=10.0, output="x", video_seconds=30.0,
                          covered_seconds=None, damaged_seconds=2.0)
        work = await e.done_work_by_camera()
        done = await e.get(ids[0])
        await e.close()
        return pending, work, done

    pending, work, done = run(main())
    assert pending == {"cam": 1000.0, "door": 500.0}
    assert work == {"cam": (10.0, 1000.0, 30.0)}
    assert done.state is JobState.DONE and done.damaged_seconds == 2.0 and done.output == "x"


# --- PostgreSQL only: several daemons on one store -------------------------------------------------------


def test_a_row_one_daemon_holds_is_skipped_by_the_others_not_waited_for(pg_url):
    import psycopg

    async def main():
        a = await PostgresEngine.open(pg_url, owner="host-a:1:1")
        ids = (await a.sync([video("a.mp4", 1), video("b.mp4", 2)], reprocess=False, now=1.0, duration=0)).new
        holder = await psycopg.AsyncConnection.connect(pg_url)
        await holder.execute("BEGIN")
        await holder.execute("SELECT * FROM jobs WHERE id = %s FOR UPDATE", (ids[0],))  # mid-claim elsewhere
        b = await PostgresEngine.open(pg_url, owner="host-b:1:1")
        started = time.monotonic()
        skipped = await b.claim(ids[0], now=2.0)
        oldest_free = await b.claim(ids[1], now=2.0)  # the next row, free, taken at once
        waited = time.monotonic() - started
        await holder.rollback()
        await holder.close()
        for e in (a, b):
            await e.close()
        return ids, skipped, oldest_free, waited

    ids, skipped, oldest_free, waited = run(main())
    assert skipped is None and oldest_free.id == ids[1]
    assert waited < 5  # it did not wait for the lock (a lock wait would never end here)


def test_a_lease_renewed_by_heartbeats_holds_and_an_expired_one_is_taken_over(pg_url):
    async def main():
        a = await PostgresEngine.open(pg_url, owner="host-a:1:1", lease_seconds=1.0)
        b = await PostgresEngine.open(pg_url, owner="host-b:2:2", lease_seconds=1.0)
        [jid] = (await a.sync([video("a.mp4", 1)], reprocess=False, now=1.0, duration=0)).new
        mine = await a.claim(jid, now=time.time())
        held = []
        for _ in range(3):
            await asyncio.sleep(0.5)
            assert await a.renew({jid: mine.claim_token}) == {jid}
            held.append(await b.reclaim_expired())
        await asyncio.sleep(1.2)  # host a is gone: no more renewals
        taken = await b.reclaim_expired()
        lost = await a.renew({jid: mine.claim_token})  # host a comes back: its claim is gone
        assert await b.requeue_interrupted(jid, token=taken[0].job.claim_token)
        again = await b.claim(jid, now=time.time())
        for e in (a, b):
            await e.close()
        return mine, held, taken, lost, again

    mine, held, taken, lost, again = run(main())
    assert held == [[], [], []]
    assert [t.job.id for t in taken] == [again.id] and taken[0].lost_token == mine.claim_token
    assert lost == set()
    assert again.state is JobState.RUNNING and again.attempts == 1  # the lost attempt is not charged


# --- moving a site's history ------------------------------------------------------------------------------


def test_store_copy_moves_every_job_from_sqlite_to_postgresql_and_refuses_to_overwrite(tmp_path, pg_url):
    import subprocess
    import sys

    from supervisor.jobs.postgres import PostgresReader
    from supervisor.jobs.sqlite_store import JobStore

    src = tmp_path / "jobs.db"
    store = JobStore.open(src)
    ids = store.sync([video("a.mp4", 1), video("b.mp4", 2), video("c.mp4", 3)]).new
    token = store.claim(ids[0], now=2.0, result_key="cam/a.mp4").claim_token
    store.mark_done(ids[0], token=token, now=3.0, duration=1.0, output="out/a", video_seconds=60.0, damaged_seconds=1.5,
                    hours=[HourRow("door", "2025-11-14T10:00", 60.0, 12.0, 20.5, 2, 3, 1.5)])
    store.claim(ids[1], now=2.0)  # its scheduler is stopped (the copy locks the store): it ran no more
    store.close()
    cli = [sys.executable, "-m", "supervisor", "store", "copy"]
    done = subprocess.run([*cli, str(src), pg_url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("copied 3 jobs to postgresql://")
    reader = PostgresReader(pg_url)
    copied = {j.path.name: j for j in reader.jobs()}
    people = reader.people(PeopleQuery())
    reader.close()
    assert [(r["camera"], r["region"], r["period"], r["person_seconds"], r["peak"], r["visits"]) for r in people] == [
        ("cam", "door", "2025-11-14T10:00", 20.5, 2, 3)]
    assert copied["a.mp4"].state is JobState.DONE and copied["a.mp4"].result_key == "cam/a.mp4"
    assert copied["a.mp4"].video_seconds == 60.0 and copied["a.mp4"].damaged_seconds == 1.5
    assert copied["b.mp4"].state is JobState.QUEUED  # was running: queued again
    assert copied["c.mp4"].state is JobState.QUEUED
    again = subprocess.run([*cli, str(src), pg_url], capture_output=True, text=True, timeout=60)
    assert again.returncode == 78 and "already holds jobs" in again.stderr
    back = subprocess.run([*cli, pg_url, str(tmp_path / "back.db")], capture_output=True, text=True, timeout=60)
    assert back.returncode == 0 and "copied 3 jobs" in back.stdout
    returned = JobStore.open(tmp_path / "back.db", readonly=True)
    assert returned.people(PeopleQuery()) == people and returned.without_people() == []
    returned.close()


def test_a_postgresql_url_is_a_store_not_a_folder_and_list_reads_it(tmp_path, pg_url):
    import subprocess
    import sys

    from tests.fakes import make_video

    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    proc = subprocess.run([sys.executable, "-m", "supervisor", "--videos-dir", str(tmp_path / "videos"),
                           "--state-db", pg_url, "--list"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "new" in proc.stdout and "1 video in 1 camera" in proc.stdout
    assert not (tmp_path / "postgresql:").exists()
