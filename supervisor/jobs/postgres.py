"""The shared engine: the job store in PostgreSQL, for several daemons (one per GPU host) on one tree.

Each daemon claims a job with `FOR UPDATE SKIP LOCKED`, so two never wait on or take the same
row; a claim is a lease carrying the daemon's identity (host, pid, start time), renewed by its
heartbeat. A lease that runs out (a daemon killed, a host lost) makes the job claimable again by
any daemon. Discovery from several hosts is idempotent (insert-or-ignore on the video's path).
Every call is awaited on the loop through psycopg's async connections; a server that does not
answer (restarting, unreachable) raises StoreUnavailable, and the scheduler waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from supervisor.jobs.contract import StoreUnavailable
from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.store import (
    TERMINAL_STATES,
    Job,
    JobState,
    ResultFolderTaken,
    StoreError,
    SyncResult,
    covers_less,
)

SCHEMA_VERSION = 1
LEASE_SECONDS = 30.0  # a claim not renewed for this long is free again (the heartbeat renews it every 2 s)
_READY = (str(JobState.QUEUED), str(JobState.FAILED))

_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS jobs (
    id BIGSERIAL PRIMARY KEY,
    camera TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    recorded_at TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_exit_code INTEGER,
    discovered_at DOUBLE PRECISION NOT NULL,
    not_before DOUBLE PRECISION,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    duration_seconds DOUBLE PRECISION,
    output TEXT,
    video_seconds DOUBLE PRECISION,
    result_key TEXT UNIQUE,
    covered_seconds DOUBLE PRECISION,
    damaged_seconds DOUBLE PRECISION,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, recorded_at, camera, path);
CREATE TABLE IF NOT EXISTS daemons (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    status JSONB
);
""",
}


# The reads both the scheduler's engine and the commands' reader make, and how their rows are shaped.
_ALL_JOBS = "SELECT * FROM jobs ORDER BY recorded_at, camera, path"
_COUNTS = "SELECT state, count(*) AS n FROM jobs GROUP BY state"
_PENDING = "SELECT camera, sum(size) AS total FROM jobs WHERE state = ANY(%s) GROUP BY camera"
_DONE_WORK = ("SELECT camera, sum(duration_seconds) AS secs, sum(size) AS size, sum(coalesce(video_seconds, 0)) "
              "AS video FROM jobs WHERE state = 'done' AND duration_seconds > 0 AND finished_at >= %s GROUP BY camera")


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    out = {str(s): 0 for s in JobState}
    for r in rows:
        out[r["state"]] = int(r["n"])
    return out


def _pending(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {r["camera"]: float(r["total"]) for r in rows}


def _done_work(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float, float]]:
    return {r["camera"]: (float(r["secs"]), float(r["size"]), float(r["video"])) for r in rows}


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _alive(owner: str) -> bool:
    """Whether the daemon named `owner` (on this host) still runs: its pid, started when it says."""
    try:
        pid = int(owner.rsplit(":", 2)[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # someone else's process has that pid now, or ours under another user: leave it
    return True


def daemon_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"


def _unavailable(exc: BaseException) -> StoreUnavailable:
    text = str(exc).strip()
    return StoreUnavailable(f"PostgreSQL: {text.splitlines()[0] if text else type(exc).__name__}")


class PostgresEngine:
    """`JobStoreEngine` over one PostgreSQL database. `owner` names this daemon in its leases."""

    shared = True

    def __init__(self, url: str, *, owner: str | None = None, lease_seconds: float = LEASE_SECONDS) -> None:
        self.url = url
        self.owner = owner or daemon_identity()
        self.lease_seconds = lease_seconds
        self.in_flight = 0
        self._conn: Any = None
        self._turn: asyncio.Lock | None = None  # one transaction at a time on the one connection

    @property
    def describe(self) -> str:
        return redact(self.url)

    @classmethod
    async def open(cls, url: str, *, owner: str | None = None, lease_seconds: float = LEASE_SECONDS,
                   migrate: bool = True) -> PostgresEngine:
        engine = cls(url, owner=owner, lease_seconds=lease_seconds)
        try:
            await engine._connect()
        except StoreUnavailable as exc:
            raise StoreError(f"{redact(url)}: cannot reach the job store ({exc}): check the server, the "
                             "address and the credentials") from None
        if migrate:
            await engine._migrate()
        return engine

    async def _connect(self) -> None:
        import psycopg
        from psycopg.rows import dict_row

        try:
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, row_factory=dict_row,
                                                               connect_timeout=10)
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc

    async def _migrate(self) -> None:
        async with self._tx() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(7310)")  # one migrator at a time, across hosts
            await cur.execute("CREATE TABLE IF NOT EXISTS vs_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            await cur.execute("SELECT value FROM vs_meta WHERE key = 'schema_version'")
            row = await cur.fetchone()
            version = int(row["value"]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.describe}: written by a newer version (schema {version}, this one knows "
                                 f"{SCHEMA_VERSION}); upgrade video-supervisor")
            while version < SCHEMA_VERSION:
                version += 1
                await cur.execute(_MIGRATIONS[version])
            await cur.execute("INSERT INTO vs_meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE "
                              "SET value = excluded.value", (str(SCHEMA_VERSION),))

    def _tx(self) -> Any:
        return _Transaction(self)

    async def _fetch(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        async with self._tx() as cur:
            await cur.execute(sql, params)
            return list(await cur.fetchall()) if cur.description else []

    # --- the contract --------------------------------------------------------------------------------

    async def recover_running(self) -> list[Job]:
        """At start: the jobs of a daemon on this host that is gone (a restart after a crash: no need to wait
        for its leases), and every job whose lease ran out, go back to queued, the attempt not counted."""
        host = self.owner.rsplit(":", 2)[0]
        rows = await self._fetch("SELECT DISTINCT lease_owner FROM jobs WHERE state = 'running' AND "
                                 "lease_owner LIKE %s", (f"{host}:%",))
        dead = [r["lease_owner"] for r in rows if r["lease_owner"] != self.owner and not _alive(r["lease_owner"])]
        return await self._reclaim(dead)

    async def reclaim_expired(self) -> list[Job]:
        """Jobs whose lease ran out (their daemon died or lost the server) go back to queued, the attempt not
        counted; the rows as they were are returned, for the exactly-once check."""
        return await self._reclaim([])

    async def _reclaim(self, owners: list[str]) -> list[Job]:
        rows = await self._fetch(
            "WITH gone AS (SELECT * FROM jobs WHERE state = 'running' AND (lease_until < %s OR lease_owner = ANY(%s)) "
            "FOR UPDATE SKIP LOCKED) "
            "UPDATE jobs j SET state = 'queued', attempts = greatest(j.attempts - 1, 0), lease_owner = NULL, "
            "lease_until = NULL FROM gone WHERE j.id = gone.id RETURNING gone.*", (time.time(), owners))
        return [Job.from_row(r) for r in rows]

    async def get(self, job_id: int) -> Job:
        rows = await self._fetch("SELECT * FROM jobs WHERE id = %s", (job_id,))
        if not rows:
            raise KeyError(job_id)
        return Job.from_row(rows[0])

    async def jobs(self, states: Iterable[JobState] | None = None) -> list[Job]:
        if states is None:
            rows = await self._fetch(_ALL_JOBS)
        else:
            rows = await self._fetch("SELECT * FROM jobs WHERE state = ANY(%s) ORDER BY recorded_at, camera, path",
                                     ([str(s) for s in states],))
        return [Job.from_row(r) for r in rows]

    async def jobs_by_id(self, ids: Iterable[int]) -> list[Job]:
        rows = await self._fetch("SELECT * FROM jobs WHERE id = ANY(%s)", (list(ids),))
        return [Job.from_row(r) for r in rows]

    async def sync(self, videos: list[VideoFile], *, reprocess: bool, now: float, duration: float) -> SyncResult:
        result = SyncResult()
        async with self._tx() as cur:
            await cur.execute("SELECT id, path, size, mtime, state, covered_seconds FROM jobs")
            known = {r["path"]: r for r in await cur.fetchall()}
            fresh = [v for v in videos if str(v.path) not in known]
            for i in range(0, len(fresh), 1000):
                part = fresh[i:i + 1000]
                await cur.execute(
                    "INSERT INTO jobs (camera, path, recorded_at, size, mtime, state, discovered_at) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::float8[], "
                    "%s::text[], %s::float8[]) ON CONFLICT (path) DO NOTHING RETURNING id, path",
                    ([v.camera for v in part], [str(v.path) for v in part],
                     [v.recorded_at.isoformat() for v in part], [v.size for v in part], [v.mtime for v in part],
                     [str(JobState.QUEUED)] * len(part), [now] * len(part)))
                for r in await cur.fetchall():
                    result.new.append(int(r["id"]))
                    result.new_paths.append(r["path"])
            for v in videos:
                row = known.get(str(v.path))
                if row is None:
                    continue
                if row["size"] != v.size or row["mtime"] != v.mtime:
                    await cur.execute(
                        "UPDATE jobs SET camera = %s, recorded_at = %s, size = %s, mtime = %s, state = 'queued', "
                        "attempts = 0, last_error = NULL, last_exit_code = NULL, not_before = NULL "
                        "WHERE id = %s AND state != 'running' RETURNING id",
                        (v.camera, v.recorded_at.isoformat(), v.size, v.mtime, row["id"]))
                    if await cur.fetchone():
                        result.changed.append(row["id"])
                elif (row["state"] == JobState.DONE and covers_less(row["covered_seconds"], duration)) or (
                        reprocess and row["state"] in TERMINAL_STATES):
                    await cur.execute(
                        "UPDATE jobs SET state = 'queued', attempts = 0, last_error = NULL, last_exit_code = NULL, "
                        "not_before = NULL WHERE id = %s AND state = %s RETURNING id", (row["id"], row["state"]))
                    if await cur.fetchone():
                        result.requeued.append(row["id"])
        return result

    async def claim(self, job_id: int, *, now: float, result_key: str | None = None) -> Job | None:
        import psycopg

        try:
            rows = await self._fetch(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = %(now)s, "
                "finished_at = NULL, not_before = NULL, result_key = coalesce(result_key, %(key)s), "
                "lease_owner = %(me)s, lease_until = %(until)s "
                "WHERE id = (SELECT id FROM jobs WHERE id = %(id)s AND state = ANY(%(ready)s) "
                "FOR UPDATE SKIP LOCKED) RETURNING *",
                {"now": now, "key": result_key, "me": self.owner, "until": now + self.lease_seconds,
                 "id": job_id, "ready": list(_READY)})
        except psycopg.errors.UniqueViolation:
            rows = await self._fetch("SELECT * FROM jobs WHERE result_key = %s", (result_key,))
            if rows:
                raise ResultFolderTaken(result_key or "", Job.from_row(rows[0])) from None
            raise
        return Job.from_row(rows[0]) if rows else None

    async def claim_next(self, *, now: float) -> Job | None:
        """The oldest ready job, claimed: what a daemon without a local queue would take next."""
        rows = await self._fetch(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = %(now)s, finished_at = NULL, "
            "not_before = NULL, lease_owner = %(me)s, lease_until = %(until)s "
            "WHERE id = (SELECT id FROM jobs WHERE state = ANY(%(ready)s) AND coalesce(not_before, 0) <= %(now)s "
            "ORDER BY recorded_at, camera, path FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING *",
            {"now": now, "me": self.owner, "until": now + self.lease_seconds, "ready": list(_READY)})
        return Job.from_row(rows[0]) if rows else None

    async def mark_done(self, job_id: int, *, now: float, duration: float, output: str | None,
                        video_seconds: float | None, covered_seconds: float | None, damaged_seconds: float,
                        recovered: bool = False) -> None:
        await self._fetch(
            "UPDATE jobs SET state = 'done', finished_at = %s, duration_seconds = %s, output = %s, video_seconds = %s, "
            "covered_seconds = %s, damaged_seconds = %s, last_error = NULL, last_exit_code = 0, lease_owner = NULL, "
            "lease_until = NULL, attempts = attempts + %s WHERE id = %s",
            (now, duration, output, video_seconds, covered_seconds or None, damaged_seconds or None, int(recovered),
             job_id))

    async def mark_failed(self, job_id: int, *, now: float, error: str, exit_code: int | None,
                          retry_at: float | None) -> None:
        state = JobState.FAILED if retry_at is not None else JobState.DEAD
        await self._fetch(
            "UPDATE jobs SET state = %s, finished_at = %s, duration_seconds = %s - started_at, last_error = %s, "
            "last_exit_code = %s, not_before = %s, lease_owner = NULL, lease_until = NULL WHERE id = %s",
            (str(state), now, now, error, exit_code, retry_at, job_id))

    async def requeue_interrupted(self, job_id: int) -> None:
        await self._fetch(
            "UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), started_at = NULL, "
            "lease_owner = NULL, lease_until = NULL WHERE id = %s", (job_id,))

    async def counts(self) -> dict[str, int]:
        return _counts(await self._fetch(_COUNTS))

    async def pending_bytes_by_camera(self) -> dict[str, float]:
        return _pending(await self._fetch(_PENDING, (list(_READY),)))

    async def done_work_by_camera(self) -> dict[str, tuple[float, float, float]]:
        return _done_work(await self._fetch(_DONE_WORK, (0.0,)))

    async def heartbeat(self, running: list[int], status: dict[str, Any]) -> None:
        """Renew this daemon's leases and publish what it runs and how its GPUs are, for `status` anywhere."""
        now = time.time()
        host, pid, started = self.owner.rsplit(":", 2)
        async with self._tx() as cur:
            if running:
                await cur.execute("UPDATE jobs SET lease_until = %s WHERE lease_owner = %s AND id = ANY(%s) "
                                  "AND state = 'running'", (now + self.lease_seconds, self.owner, running))
            await cur.execute(
                "INSERT INTO daemons VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "heartbeat_at = excluded.heartbeat_at, status = excluded.status",
                (self.owner, host, int(pid), float(started), now, json.dumps(status, default=str)))

    async def check(self) -> None:
        return None  # a server is not a file that can be swapped under us

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            finally:
                self._conn = None


class _Transaction:
    """One transaction on the engine's connection; reconnects once after the server went away."""

    def __init__(self, engine: PostgresEngine) -> None:
        self._engine = engine
        self._tx: Any = None
        self._cur: Any = None

    async def __aenter__(self) -> Any:
        import psycopg

        engine = self._engine
        engine.in_flight += 1
        if engine._turn is None:
            engine._turn = asyncio.Lock()
        await engine._turn.acquire()
        try:
            if engine._conn is None or engine._conn.closed:
                await engine._connect()
            self._tx = engine._conn.transaction()
            await self._tx.__aenter__()
        except psycopg.OperationalError as exc:
            engine.in_flight -= 1
            await self._drop()
            engine._turn.release()
            raise _unavailable(exc) from exc
        except BaseException:
            engine.in_flight -= 1
            engine._turn.release()
            raise
        self._cur = engine._conn.cursor()
        return self._cur

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        import psycopg

        try:
            try:
                await self._cur.close()
                await self._tx.__aexit__(kind, exc, tb)
            except psycopg.OperationalError as error:
                await self._drop()
                raise _unavailable(error) from error
            if isinstance(exc, psycopg.OperationalError):
                await self._drop()
                raise _unavailable(exc) from exc
        finally:
            self._engine.in_flight -= 1
            if self._engine._turn is not None:
                self._engine._turn.release()
        return False

    async def _drop(self) -> None:
        conn, self._engine._conn = self._engine._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to do with it
                await conn.close()


class PostgresReader:
    """The read-only looks of the commands (`--list`, `status`, `report`) at a PostgreSQL store: the same
    methods as the SQLite store's reads, blocking, on a connection of their own."""

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        self.url = url
        try:
            self._conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"{redact(url)}: cannot read the job store ({_unavailable(exc)})") from None

    def _rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        import psycopg

        try:
            with self._conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        except psycopg.errors.UndefinedTable:
            return []  # no scheduler has used this database yet

    def jobs(self) -> list[Job]:
        return [Job.from_row(r) for r in self._rows(_ALL_JOBS)]

    def by_path(self) -> dict[str, Job]:
        return {str(j.path): j for j in self.jobs()}

    def counts(self) -> dict[str, int]:
        return _counts(self._rows(_COUNTS))

    def damage_totals(self) -> tuple[int, float, int]:
        rows = self._rows("SELECT count(damaged_seconds) AS n, coalesce(sum(damaged_seconds), 0) AS s, "
                          "count(covered_seconds) AS c FROM jobs WHERE state = 'done'")
        return (int(rows[0]["n"]), float(rows[0]["s"]), int(rows[0]["c"])) if rows else (0, 0.0, 0)

    def pending_bytes_by_camera(self) -> dict[str, float]:
        return _pending(self._rows(_PENDING, (list(_READY),)))

    def ready_count_by_camera(self) -> dict[str, int]:
        rows = self._rows("SELECT camera, count(*) AS n FROM jobs WHERE state = ANY(%s) GROUP BY camera",
                          (list(_READY),))
        return {r["camera"]: int(r["n"]) for r in rows}

    def done_work_by_camera(self, since: float | None = None) -> dict[str, tuple[float, float, float]]:
        return _done_work(self._rows(_DONE_WORK, (since or 0.0,)))

    def recent_failures(self, limit: int = 5) -> list[Job]:
        rows = self._rows("SELECT * FROM jobs WHERE state IN ('dead', 'failed') AND last_error IS NOT NULL "
                          "ORDER BY finished_at DESC LIMIT %s", (limit,))
        return [Job.from_row(r) for r in rows]

    def finished_since(self, since: float | None) -> list[Job]:
        rows = self._rows("SELECT * FROM jobs WHERE state IN ('done', 'dead') AND finished_at >= %s "
                          "ORDER BY finished_at", (since or 0.0,))
        return [Job.from_row(r) for r in rows]

    def daemons(self, within: float = 60.0) -> list[dict[str, Any]]:
        """Every daemon that beat within `within` seconds: host, pid, running jobs, GPU state."""
        return self._rows("SELECT d.id, d.host, d.pid, d.started_at, d.heartbeat_at, d.status, (SELECT count(*) "
                          "FROM jobs j WHERE j.lease_owner = d.id AND j.state = 'running') AS running_jobs "
                          "FROM daemons d WHERE heartbeat_at >= %s ORDER BY host, pid", (time.time() - within,))

    def close(self) -> None:
        self._conn.close()


def open_reader(settings_store_url: str, state_db: Any) -> Any:
    """The commands' read-only store: PostgreSQL for a URL, else the SQLite file (read-only)."""
    if settings_store_url:
        return PostgresReader(settings_store_url)
    from supervisor.jobs.store import JobStore

    return JobStore.open(state_db, readonly=True)
