"""The SQLite engine's job table: one row per video, in a SQLite file (WAL), blocking calls.

The store is the memory of the system. Only one scheduler writes to it at a
time (an advisory lock that dies with its process); read-only commands open it
beside a running daemon.

Every SQLite query of the job store is in this file (the people table's, written once for both
engines, are in people.py): one place to read what the engine does to the file, which is why it
is longer than other modules.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from supervisor.jobs import people as people_sql
from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.model import (
    Job,
    JobState,
    ResultFolderTaken,
    StoreError,
    StoreInUse,
    SyncResult,
    Takeover,
)
from supervisor.jobs.people import PeopleQuery
from supervisor.jobs.sync_plan import KNOWN_ROWS_SQL, SYNC_CHUNK, KnownRow, SyncPlan, plan_sync
from supervisor.protocol.hours import HourRow

SCHEMA_VERSION = 5


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    recorded_at TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_exit_code INTEGER,
    discovered_at REAL NOT NULL,
    not_before REAL,
    started_at REAL,
    finished_at REAL,
    duration_seconds REAL,
    output TEXT,
    video_seconds REAL,
    result_key TEXT,
    covered_seconds REAL,
    damaged_seconds REAL,
    claim_token INTEGER NOT NULL DEFAULT 0,
    people_recorded INTEGER NOT NULL DEFAULT 0,
    retry_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, recorded_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_result_key ON jobs(result_key);
""" + people_sql.table()

# Each step brings a store up by one version. 1 lacked the video length; 2 named result folders by
# camera and file stem, so two recordings could share one: 3 records each job's folder, unique. Done jobs
# keep the folder they wrote (the first of any that shared one); the rest get theirs when they next run.
# 3 had no claim token: 4 fences every write of an attempt with the generation of its claim. 4 had no
# people by hour: 5 keeps them, and marks which done jobs' rows are in (the rest are filled from their
# result files by the scheduler), and which jobs an operator asked to run again (`retry`).
# report's figures of finished jobs (columns in report.Finished's order); %s: the engine's placeholder.
FINISHED_FIGURES = ("SELECT camera, state, duration_seconds, video_seconds, attempts, damaged_seconds, "
                    "covered_seconds FROM jobs WHERE state IN ('done', 'dead') AND finished_at >= %s")

def retry_sql(mark: str, job_ids: list[int], *, dead: bool, cameras: list[str]) -> tuple[str, list[Any]]:
    """`retry`'s one statement, both engines' (placeholder `mark`): back to queued, attempts from zero, and
    flagged for the scheduler's next scan to take up. Never a running job."""
    which: list[str] = []
    params: list[Any] = []
    if job_ids:
        which.append(f"id IN ({', '.join([mark] * len(job_ids))})")
        params.extend(job_ids)
    if dead:
        limit = f" AND camera IN ({', '.join([mark] * len(cameras))})" if cameras else ""
        which.append(f"(state = 'dead'{limit})")
        params.extend(cameras)
    if not which:
        return "SELECT * FROM jobs WHERE 1 = 0", []
    return (f"UPDATE jobs SET state = 'queued', attempts = 0, not_before = NULL, retry_requested = 1 "
            f"WHERE state <> 'running' AND ({' OR '.join(which)}) RETURNING *", params)


_MIGRATIONS: dict[int, str] = {
    1: "ALTER TABLE jobs ADD COLUMN video_seconds REAL;",
    2: """
ALTER TABLE jobs ADD COLUMN result_key TEXT;
ALTER TABLE jobs ADD COLUMN covered_seconds REAL;
ALTER TABLE jobs ADD COLUMN damaged_seconds REAL;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_result_key ON jobs(result_key);
""",
    3: "ALTER TABLE jobs ADD COLUMN claim_token INTEGER NOT NULL DEFAULT 0;",
    4: "ALTER TABLE jobs ADD COLUMN people_recorded INTEGER NOT NULL DEFAULT 0;"
       "ALTER TABLE jobs ADD COLUMN retry_requested INTEGER NOT NULL DEFAULT 0;" + people_sql.table(),
}


def _legacy_result_keys(conn: sqlite3.Connection) -> None:
    """Version 2's done jobs wrote to `<camera>/<file stem>`: record that folder for the first of each."""
    seen: set[str] = set()
    rows = conn.execute("SELECT id, camera, path FROM jobs WHERE state = 'done' ORDER BY id").fetchall()
    for job_id, camera, path in rows:
        key = f"{camera}/{Path(path).stem}"
        if key not in seen:
            seen.add(key)
            conn.execute("UPDATE jobs SET result_key = ? WHERE id = ?", (key, job_id))


_MIGRATION_STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _legacy_result_keys}


def _create_private(path: Path) -> None:
    """Create `path` readable by owner and group only, if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    except FileExistsError:
        return
    os.close(fd)


def store_error(path: Path, exc: sqlite3.DatabaseError | OSError, *, reading: bool = False) -> StoreError:
    """What to do about a store that cannot be opened: only a damaged file is worth moving aside."""
    text = str(exc) if isinstance(exc, sqlite3.DatabaseError) else (exc.strerror or str(exc))
    if reading and (isinstance(exc, (sqlite3.OperationalError, OSError)) or "unable to open" in text):
        return StoreError(f"{path}: cannot read the job store ({text}): check that this user can read the file "
                          "and its folder (the service's store is readable by its group)")
    if isinstance(exc, (sqlite3.OperationalError, OSError)) or "readonly" in text or "unable to open" in text:
        # Permissions, a read-only or full disk: the history is intact; moving it aside would lose it.
        return StoreError(f"{path}: cannot use the job store ({text}): check that this user can write the file "
                          "and its folder, and that the disk has room and is mounted read-write. "
                          "The store was left untouched")
    return StoreError(f"{path}: not a usable job store ({text}): it is damaged; restore it from a backup, or "
                      "move it aside to start a new one (every video will then be processed again). "
                      "It was left untouched")


class SchedulerLock:
    """One scheduler per store: an exclusive lock on the store file itself, reached through its resolved
    path, so a symlink to the store or a deleted side file cannot get around it. The kernel drops it when
    the process dies. The holder's pid is written beside the store, for the message a second one gets."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = db_path.with_name(db_path.name + ".lock")  # who holds it (informational)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            _create_private(self.db_path)
            real = self.db_path.resolve()
            fd = os.open(real, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise store_error(self.db_path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = "unknown"
            with contextlib.suppress(OSError):
                holder = real.with_name(real.name + ".lock").read_text().strip() or holder
            raise StoreInUse(
                f"{self.db_path}: already in use by another scheduler (pid {holder}); "
                "stop it first, or use --list/status to look without scheduling"
            ) from None
        self._fd = fd
        with contextlib.suppress(OSError):  # only a note for the message above: never fatal
            side = real.with_name(real.name + ".lock")
            _create_private(side)
            side.write_text(f"{os.getpid()}\n")
            if self.path != side and not self.path.exists():
                self.path = side

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sync_in_thread(path: Path, videos: list[VideoFile], *, reprocess: bool, now: float,
                   duration: float = 0.0) -> SyncResult:
    """`JobStore.sync` on a connection of its own: call it through `asyncio.to_thread`, off the event loop.
    The store must be there already: a scan never creates a second one where the first was deleted."""
    store = JobStore.open(path, create=False)
    try:
        return store.sync(videos, reprocess=reprocess, now=now, duration=duration)
    finally:
        store.close()


class JobStore:
    """All reads and writes of the job table, blocking. The scheduler reaches it through `SqliteEngine`,
    which runs every call on one thread that owns the connection; the commands use it directly."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, create: bool = True) -> JobStore:
        if not create and not path.exists():
            raise StoreError(f"{path}: the job store is gone (deleted or moved while in use)")
        if readonly:
            if not path.exists():
                return cls._empty_readonly(path)
            uri = f"file:{path.resolve()}?mode=ro"
            conn = cls._connect(path, uri, reading=True)
        else:
            _create_private(path)
            conn = cls._connect(path, str(path))
        store = cls(conn, path, readonly)
        store._prepare()
        return store

    @classmethod
    def _empty_readonly(cls, path: Path) -> JobStore:
        conn = sqlite3.connect(":memory:")
        conn.row_factory = sqlite3.Row
        conn.executescript(_SCHEMA)
        return cls(conn, path, True)

    @staticmethod
    def _connect(path: Path, target: str, *, reading: bool = False) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(target, uri=target.startswith("file:"), isolation_level=None, timeout=5.0,
                                   check_same_thread=False)  # handed to the store thread once opened
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise store_error(path, exc, reading=reading) from exc
        return conn

    def _prepare(self) -> None:
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            has_jobs = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='jobs'"
            ).fetchone() is not None
            if self.readonly:
                if has_jobs and version > SCHEMA_VERSION:
                    raise StoreError(f"{self.path}: written by a newer version (schema {version})")
                if not has_jobs:  # a scheduler is creating it right now: nothing in it yet
                    self._conn.close()
                    self._conn = self._empty_readonly(self.path)._conn
                return
            self._conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on the disk (the WAL synced) before the call returns, so a power cut never takes
            # back a job recorded done, which NORMAL can (its WAL syncs only at checkpoints).
            self._conn.execute("PRAGMA synchronous = FULL")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: written by a newer version (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade video-supervisor"
                )
            if has_jobs and version == SCHEMA_VERSION:
                return  # nothing to write: opening never needs room on the disk
            with self._transaction():
                if not has_jobs:
                    self._run_script(_SCHEMA)
                    version = SCHEMA_VERSION
                while version < SCHEMA_VERSION:
                    self._run_script(_MIGRATIONS[version])
                    step = _MIGRATION_STEPS.get(version)
                    if step is not None:
                        step(self._conn)
                    version += 1
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # The schema in the main file from the first moment, never only in the WAL; on a full disk it is
            # safe in the (synced) WAL meanwhile, and the running engine checkpoints again.
            with contextlib.suppress(sqlite3.OperationalError):
                self.checkpoint()
        except sqlite3.DatabaseError as exc:
            raise store_error(self.path, exc) from exc

    def _run_script(self, script: str) -> None:
        # executescript() would COMMIT the open transaction first; run statement by statement instead.
        for statement in script.split(";"):
            if statement.strip():
                self._conn.execute(statement)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """Undo what is open, keeping the error that got us here: SQLite may already have rolled back
        by itself (a full disk at COMMIT), and a failing ROLLBACK must not replace the real reason."""
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    # --- reads -------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return Job.from_row(row)

    def jobs(self, states: Iterable[JobState] | None = None) -> list[Job]:
        if states is None:
            rows = self._conn.execute("SELECT * FROM jobs ORDER BY recorded_at, camera, path")
        else:
            wanted = [str(s) for s in states]
            marks = ",".join("?" * len(wanted))
            rows = self._conn.execute(
                f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY recorded_at, camera, path", wanted
            )
        return [Job.from_row(r) for r in rows]

    def daemons(self, within: float = 60.0) -> list[dict[str, Any]]:
        """None to tell of: one scheduler uses a SQLite store, and its status file says what it runs."""
        return []

    def by_path(self) -> dict[str, Job]:
        return {str(j.path): j for j in self.jobs()}

    def counts(self) -> dict[str, int]:
        out = {str(s): 0 for s in JobState}
        for state, n in self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
            out[state] = n
        return out

    def damage_totals(self) -> tuple[int, float, int]:
        """(videos done with damage, their undecodable seconds, videos done for their first seconds only)."""
        row = self._conn.execute(
            "SELECT count(damaged_seconds), COALESCE(sum(damaged_seconds), 0), count(covered_seconds) "
            "FROM jobs WHERE state = ?", (JobState.DONE,)).fetchone()
        return int(row[0]), float(row[1]), int(row[2])

    def pending_bytes_by_camera(self) -> dict[str, float]:
        rows = self._conn.execute(
            "SELECT camera, SUM(size) FROM jobs WHERE state IN (?, ?) GROUP BY camera",
            (JobState.QUEUED, JobState.FAILED),
        )
        return {camera: float(total) for camera, total in rows}

    def done_work_by_camera(self, since: float | None = None) -> dict[str, tuple[float, float, float]]:
        """{camera: (processing seconds, bytes, video seconds)} over finished jobs: what speed is learnt from."""
        rows = self._conn.execute(
            "SELECT camera, SUM(duration_seconds), SUM(size), SUM(COALESCE(video_seconds, 0)) FROM jobs "
            "WHERE state = ? AND duration_seconds > 0 AND finished_at >= ? GROUP BY camera",
            (JobState.DONE, since if since is not None else 0.0),
        )
        return {camera: (float(secs), float(size), float(video)) for camera, secs, size, video in rows}

    def ready_count_by_camera(self) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT camera, COUNT(*) FROM jobs WHERE state IN (?, ?) GROUP BY camera",
            (JobState.QUEUED, JobState.FAILED),
        )
        return {camera: int(n) for camera, n in rows}

    def recent_failures(self, limit: int = 5) -> list[Job]:
        rows = self._conn.execute(
            "SELECT * FROM jobs WHERE state IN (?, ?) AND last_error IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT ?",
            (JobState.DEAD, JobState.FAILED, limit),
        )
        return [Job.from_row(r) for r in rows]

    def finished_figures(self, since: float | None) -> list[tuple[Any, ...]]:
        """What `report` sums of each job done or given up on since `since`, without making whole jobs."""
        return [tuple(r) for r in self._conn.execute(FINISHED_FIGURES.replace("%s", "?"), (since or 0.0,))]

    def finished_since(self, since: float | None) -> list[Job]:
        rows = self._conn.execute(
            "SELECT * FROM jobs WHERE state IN (?, ?) AND finished_at >= ? ORDER BY finished_at",
            (JobState.DONE, JobState.DEAD, since if since is not None else 0.0),
        )
        return [Job.from_row(r) for r in rows]

    # --- writes ------------------------------------------------------------

    def recover_running(self) -> list[Takeover]:
        """Rows left `running` by a scheduler that died (the lock says it is gone): held by this one now, as
        they are, for the exactly-once check; each then becomes done or goes back to the queue (fenced)."""
        rows = self._conn.execute("SELECT * FROM jobs WHERE state = ?", (JobState.RUNNING,)).fetchall()
        return [Takeover(job, job.claim_token) for job in map(Job.from_row, rows)]

    def renew(self, claims: Mapping[int, int]) -> set[int]:
        """Which of these claims ({job id: token}) this scheduler still holds."""
        held: set[int] = set()
        wanted = list(claims)
        for i in range(0, len(wanted), 500):
            part = wanted[i:i + 500]
            marks = ",".join("?" * len(part))
            for job_id, token in self._conn.execute(
                    f"SELECT id, claim_token FROM jobs WHERE state = ? AND id IN ({marks})", (JobState.RUNNING, *part)):
                if claims[job_id] == token:
                    held.add(job_id)
        return held

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the main file and empty the WAL: the main file alone then holds
        the store (a WAL lost with its disk or deleted by hand takes nothing committed with it)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def sync(self, videos: Iterable[VideoFile], *, reprocess: bool = False, now: float | None = None,
             chunk: int = SYNC_CHUNK, duration: float = 0.0) -> SyncResult:
        """Record what a scan found, by the rules of sync_plan.py; commits every `chunk` statements, so it is
        safe beside the scheduler's own connection (no writer waits long)."""
        now = time.time() if now is None else now
        known = {row["path"]: KnownRow.from_row(row) for row in self._conn.execute(KNOWN_ROWS_SQL)}
        plan = plan_sync(known, videos, reprocess=reprocess, duration=duration)
        pending = 0
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params, note in _sync_steps(plan, now):
                if pending >= chunk:
                    self._conn.execute("COMMIT")
                    self._conn.execute("BEGIN IMMEDIATE")
                    pending = 0
                pending += 1
                cur = self._conn.execute(sql, params)
                if cur.rowcount:
                    note(int(cur.lastrowid or 0))
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return plan.result()

    def sync_apart(self, videos: list[VideoFile], *, reprocess: bool, now: float, duration: float = 0.0
                   ) -> SyncResult:
        """`sync` on a connection of its own (the scan's thread), never this one's: see sync_in_thread."""
        return sync_in_thread(self.path, videos, reprocess=reprocess, now=now, duration=duration)

    def jobs_by_id(self, ids: Iterable[int]) -> list[Job]:
        wanted = list(ids)
        out: list[Job] = []
        for i in range(0, len(wanted), 500):
            part = wanted[i:i + 500]
            marks = ",".join("?" * len(part))
            out.extend(Job.from_row(r) for r in self._conn.execute(f"SELECT * FROM jobs WHERE id IN ({marks})", part))
        return out

    def claim(self, job_id: int, *, now: float, result_key: str | None = None) -> Job | None:
        """Start an attempt of a job that is ready (queued, or failed and waiting to retry): one write,
        which also reads the row back. None when it is not ready (done meanwhile, gone, or running).

        `result_key` is recorded unless the job has one already; ResultFolderTaken (and no claim) when
        another job holds that folder."""
        try:
            with self._transaction():
                rows = self._conn.execute(
                    "UPDATE jobs SET state = ?, attempts = attempts + 1, started_at = ?, finished_at = NULL, "
                    "not_before = NULL, result_key = coalesce(result_key, ?), claim_token = claim_token + 1, "
                    "retry_requested = 0 WHERE id = ? AND state IN (?, ?) RETURNING *",
                    (JobState.RUNNING, now, result_key, job_id, JobState.QUEUED, JobState.FAILED),
                ).fetchall()  # stepped to the end before COMMIT
        except sqlite3.IntegrityError:
            self._folder_taken(result_key)
            raise
        return Job.from_row(rows[0]) if rows else None

    def _folder_taken(self, key: str | None) -> None:
        row = self._conn.execute("SELECT * FROM jobs WHERE result_key = ?", (key,)).fetchone()
        if row is not None:
            raise ResultFolderTaken(key or "", Job.from_row(row)) from None

    def mark_done(self, job_id: int, *, token: int | None, now: float, duration: float, output: str | None,
                  video_seconds: float | None = None, covered_seconds: float | None = None,
                  damaged_seconds: float | None = None, hours: Sequence[HourRow] = ()) -> bool:
        """Record the attempt of claim `token` done, with its people by hour (replacing any an earlier attempt
        left), in one transaction; False (nothing written) when that claim is no longer the job's.
        `covered_seconds`: set when only the first N seconds were processed (--duration)."""
        fence, args = _fence(token)
        with self._transaction():
            cur = self._conn.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, duration_seconds = ?, output = ?, "
                "video_seconds = ?, covered_seconds = ?, damaged_seconds = ?, last_error = NULL, "
                f"last_exit_code = 0 WHERE id = ? AND {fence}",
                (JobState.DONE, now, duration, output, video_seconds, covered_seconds or None,
                 damaged_seconds or None, job_id, *args),
            )
            if cur.rowcount > 0:
                self._replace_people(job_id, hours)
        return cur.rowcount > 0

    def _replace_people(self, job_id: int, hours: Sequence[HourRow]) -> None:
        forget, add, noted = people_sql.replace_sql("?")
        self._conn.execute(forget, (job_id,))
        self._conn.executemany(add, [people_sql.row_params(job_id, row) for row in hours])
        self._conn.execute(noted, (job_id,))

    def record_people(self, job_id: int, hours: Sequence[HourRow]) -> bool:
        """A done job's people by hour, filled in from its result files; False when it is no longer done."""
        with self._transaction():
            done = self._conn.execute("SELECT 1 FROM jobs WHERE id = ? AND state = ?",
                                      (job_id, JobState.DONE)).fetchone() is not None
            if done:
                self._replace_people(job_id, hours)
        return done

    def retry(self, job_ids: Iterable[int] = (), *, dead: bool = False, cameras: Iterable[str] = ()) -> list[Job]:
        """Queue jobs again with their attempts from zero: `job_ids` whatever they came to (not running),
        or with `dead` every job given up on (of `cameras`, when named); the jobs queued."""
        sql, params = retry_sql("?", list(job_ids), dead=dead, cameras=list(cameras))
        with self._transaction():
            rows = self._conn.execute(sql, params).fetchall()
        return [Job.from_row(r) for r in rows]

    def retry_requested(self) -> list[Job]:
        """Jobs an operator queued again (`retry`) that no scheduler has taken yet."""
        rows = self._conn.execute("SELECT * FROM jobs WHERE retry_requested = 1 AND state = ? ORDER BY recorded_at",
                                  (JobState.QUEUED,))
        return [Job.from_row(r) for r in rows]

    def without_people(self, limit: int = 1000, *, after: int = 0) -> list[Job]:
        """Done jobs whose people by hour are not in the store (done before it kept them), by id from `after`."""
        rows = self._conn.execute("SELECT * FROM jobs WHERE state = ? AND people_recorded = 0 AND id > ? ORDER BY id "
                                  "LIMIT ?", (JobState.DONE, after, limit))
        return [Job.from_row(r) for r in rows]

    def people_rows(self) -> list[dict[str, Any]]:
        """Every row as kept, with its recording's path (for `store copy`)."""
        try:
            return [dict(r) for r in self._conn.execute(people_sql.EXPORT)]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    def people(self, query: PeopleQuery, period: str = "hour") -> list[dict[str, Any]]:
        """People per camera, region and period (people.PERIODS), summed over every recording."""
        sql, params = query.sql("?", period)
        cur = self._conn.cursor()
        cur.row_factory = None  # plain tuples: a year of 20 cameras is 350,000 rows
        try:
            return people_sql.as_rows(cur.execute(sql, params))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # a store from before people were kept, opened read-only
            raise

    def mark_failed(self, job_id: int, *, token: int | None, now: float, error: str, exit_code: int | None,
                    retry_at: float | None) -> bool:
        """Record a failed attempt: `retry_at` set means it will be tried again, None means dead. Fenced as
        mark_done is; `token` None: a job that never ran (still ready)."""
        state = JobState.FAILED if retry_at is not None else JobState.DEAD
        fence, args = _fence(token)
        with self._transaction():
            cur = self._conn.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, duration_seconds = ? - coalesce(started_at, ?), "
                f"last_error = ?, last_exit_code = ?, not_before = ? WHERE id = ? AND {fence}",
                (state, now, now, now, error, exit_code, retry_at, job_id, *args),
            )
        return cur.rowcount > 0

    def import_jobs(self, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                    people: Sequence[Mapping[str, Any]]) -> None:
        """Fill an empty store with another's jobs (`columns` of each row) and people rows, in one
        transaction (`store copy`); StoreError when it holds jobs already: nothing is ever overwritten."""
        with self._transaction():
            if self._conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchone() is not None:
                raise StoreError(f"{self.path}: already holds jobs; copy into an empty store")
            marks = ",".join("?" * len(columns))
            self._conn.executemany(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({marks})", rows)
            self._conn.executemany(people_sql.import_sql("?"), [people_sql.import_params(r) for r in people])
            self._conn.execute(people_sql.NOTE_COPIED)

    def requeue_interrupted(self, job_id: int, *, token: int) -> bool:
        """An attempt we stopped ourselves (shutdown), or one lost with its scheduler: back to queued, the
        attempt not counted. Only while claim `token` is the job's: a done job never goes back this way."""
        with self._transaction():
            cur = self._conn.execute(
                "UPDATE jobs SET state = ?, attempts = max(attempts - 1, 0), started_at = NULL "
                "WHERE id = ? AND state = ? AND claim_token = ?",
                (JobState.QUEUED, job_id, JobState.RUNNING, token),
            )
        return cur.rowcount > 0


def _fence(token: int | None) -> tuple[str, tuple[Any, ...]]:
    """The condition under which an attempt's write applies: its claim is still the job's (`token`), or,
    for a job that never ran, the job is still waiting to."""
    if token is None:
        return "state IN (?, ?)", (JobState.QUEUED, JobState.FAILED)
    return "state = ? AND claim_token = ?", (JobState.RUNNING, token)

_INSERT = ("INSERT OR IGNORE INTO jobs (camera, path, recorded_at, size, mtime, state, discovered_at) "
           "VALUES (?, ?, ?, ?, ?, 'queued', ?)")
_REFRESH = ("UPDATE jobs SET camera = ?, recorded_at = ?, size = ?, mtime = ?, state = 'queued', attempts = 0, "
            "last_error = NULL, last_exit_code = NULL, not_before = NULL WHERE id = ? AND state != 'running'")
_REQUEUE = ("UPDATE jobs SET state = 'queued', attempts = 0, last_error = NULL, last_exit_code = NULL, "
            "not_before = NULL WHERE id = ? AND state = ?")


def _sync_steps(plan: SyncPlan, now: float) -> Iterator[tuple[str, tuple[Any, ...], Callable[[int], None]]]:
    """A sync plan as SQLite statements, one a row: (sql, parameters, what to note when it wrote a row, given
    the row's id)."""
    for v in plan.insert:
        yield (_INSERT, (v.camera, str(v.path), v.recorded_at.isoformat(), v.size, v.mtime, now),
               partial(plan.note_inserted, str(v.path)))
    for job_id, v in plan.refresh:
        yield (_REFRESH, (v.camera, v.recorded_at.isoformat(), v.size, v.mtime, job_id),
               partial(plan.note_refreshed, job_id))
    for job_id, state in plan.requeue:
        yield _REQUEUE, (job_id, str(state)), partial(plan.note_requeued, job_id)
