"""The shared engine: the job store in PostgreSQL, for several daemons (one per GPU host) on one tree.

Each daemon claims a job with `FOR UPDATE SKIP LOCKED`, so two never wait on or take the same
row; a claim is a lease carrying the daemon's identity (host, pid, start time) and a token (the
job's claim generation), renewed by its heartbeat. Every lease time is the server's own clock,
computed in the statement: no host's clock decides whether a lease is alive. A lease that runs out
(a daemon killed, paused or cut off; a host lost) is taken over by another daemon (the lease's owner
changes), so every later write of the old attempt, fenced by owner and token, changes nothing; the
job's next attempt gets a new token. Leases do not
run out within one lease of the server's own start: a server restart is nobody's silence.
Discovery from several hosts is idempotent (insert-or-ignore on the video's path). Every call is
awaited on the loop through psycopg's async connections: one for the work, and a pool of one
(psycopg_pool) for renewals, so a long scan never delays a renewal; a server that does not answer
(restarting, unreachable, out of connections) raises StoreUnavailable, and the scheduler waits for it.

Every PostgreSQL query of the job store is in this file, beside the SQLite engine's in
sqlite_store.py: one place to read what the engine does to the server and how its fencing holds,
which is why it is longer than other modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from supervisor.jobs import people as people_sql
from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.model import (
    Job,
    JobState,
    ResultFolderTaken,
    StoreError,
    StoreUnavailable,
    SyncResult,
    Takeover,
)
from supervisor.jobs.people import PeopleQuery
from supervisor.jobs.sqlite_store import FINISHED_FIGURES, retry_sql
from supervisor.jobs.sync_plan import KNOWN_ROWS_SQL, SYNC_CHUNK, KnownRow, plan_sync
from supervisor.protocol.hours import HourRow

SCHEMA_VERSION = 3
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
    2: "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS claim_token BIGINT NOT NULL DEFAULT 0;",
    # People by hour, and which done jobs' rows are in (the rest are filled from their result files).
    3: "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS people_recorded INTEGER NOT NULL DEFAULT 0;"
       "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS retry_requested INTEGER NOT NULL DEFAULT 0;"
       + people_sql.table(real="DOUBLE PRECISION", big="BIGINT", clustered=""),
}
# The server's clock, as every lease time is reckoned (epoch seconds).
_NOW = "extract(epoch from clock_timestamp())::float8"
# SQLSTATE classes of a connection refused for a reason no wait will fix: bad credentials (28), no such
# database (3D), a bad name (42). Anything else at connect (refused, reset, too many clients, the server
# starting or shutting down) passes.
_CONFIG_SQLSTATE = ("28", "3D", "42")


# The reads both the scheduler's engine and the commands' reader make, and how their rows are shaped.
_ALL_JOBS = "SELECT * FROM jobs ORDER BY recorded_at, camera, path"
_JOBS_IN = "SELECT * FROM jobs WHERE state = ANY(%s) ORDER BY recorded_at, camera, path"
_COUNTS = "SELECT state, count(*) AS n FROM jobs GROUP BY state"
_PENDING = "SELECT camera, sum(size) AS total FROM jobs WHERE state = ANY(%s) GROUP BY camera"
_DONE_WORK = ("SELECT camera, sum(duration_seconds) AS secs, sum(size) AS size, sum(coalesce(video_seconds, 0)) "
              "AS video FROM jobs WHERE state = 'done' AND duration_seconds > 0 AND finished_at >= %s GROUP BY camera")


async def _replace_people(cur: Any, job_id: int, hours: Sequence[HourRow]) -> None:
    forget, add, noted = people_sql.replace_sql("%s")
    await cur.execute(forget, (job_id,))
    if hours:
        await cur.executemany(add, [people_sql.row_params(job_id, row) for row in hours])
    await cur.execute(noted, (job_id,))


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    out = {str(s): 0 for s in JobState}
    for r in rows:
        out[r["state"]] = int(r["n"])
    return out


def _pending(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {r["camera"]: float(r["total"]) for r in rows}


def _done_work(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float, float]]:
    return {r["camera"]: (float(r["secs"]), float(r["size"]), float(r["video"])) for r in rows}


def hide_password(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _alive(owner: str) -> bool:
    """Whether the daemon named `owner` (on this host) may still run: a process with its pid exists. The start
    time in the name is not checked, so a pid reused by another process keeps its leases until they run out
    (reclaim_expired then takes them over): slower, never wrong."""
    try:
        pid = int(owner.rsplit(":", 2)[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # someone else's process has that pid now, or ours under another user: leave it
    return True


def daemon_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{time.time():.6f}"  # one per engine, even in one process


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"PostgreSQL: {_first_line(exc)}")


def _refused_for_good(exc: BaseException) -> bool:
    """A connection refused for a reason only the settings can fix (a password, a database name)."""
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith(_CONFIG_SQLSTATE):
        return True
    text = str(exc)
    if "too many" in text or "the database system is" in text:  # out of connections; starting or stopping
        return False
    return any(marker in text for marker in ("password authentication failed", "does not exist",
                                             "no password supplied", "invalid connection option"))


class _Channel:
    """One connection and the turn to use it: one transaction at a time. Reconnects when it was lost."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.conn: Any = None
        self.turn = asyncio.Lock()

    async def connect(self) -> None:
        import psycopg
        from psycopg.rows import dict_row

        try:
            self.conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, row_factory=dict_row, connect_timeout=10,
                application_name=f"video-supervisor {self.name}")
        except psycopg.Error as exc:
            if _refused_for_good(exc):
                raise StoreError(f"{hide_password(self.url)}: the server refused the connection ({_first_line(exc)}): "
                                 "check the user, the password and the database name") from None
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing: nothing more to do with it
                await conn.close()


class PostgresEngine:
    """`JobStoreEngine` over one PostgreSQL database. `owner` names this daemon in its leases."""

    shared = True

    def __init__(self, url: str, *, owner: str | None = None, lease_seconds: float = LEASE_SECONDS) -> None:
        self.url = url
        self.owner = owner or daemon_identity()
        self.lease_seconds = lease_seconds
        self.in_flight = 0
        self._main = _Channel(url, "jobs")
        # Renewals on a connection of their own (a pool of one, which reconnects by itself), each bounded
        # well within the lease; made at first use, on the loop.
        self._leases: Any = None
        self._migrated = False

    @property
    def describe(self) -> str:
        return hide_password(self.url)

    @classmethod
    async def open(cls, url: str, *, owner: str | None = None, lease_seconds: float = LEASE_SECONDS,
                   migrate: bool = True) -> PostgresEngine:
        """The engine, connected and migrated when the server answers now. A server that does not answer yet
        is not an error here: the first call then raises StoreUnavailable and the scheduler waits for it. A
        server that refuses these credentials or this database raises StoreError (fix the settings)."""
        engine = cls(url, owner=owner, lease_seconds=lease_seconds)
        engine._migrated = not migrate
        with contextlib.suppress(StoreUnavailable):
            await engine._ready()
        return engine

    async def _ready(self) -> None:
        if not self._migrated:
            await self._migrate()

    async def _migrate(self) -> None:
        async with _Transaction(self, self._main) as cur:
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
        self._migrated = True

    @contextlib.asynccontextmanager
    async def _tx(self, channel: _Channel | None = None) -> Any:
        await self._ready()
        async with _Transaction(self, channel or self._main) as cur:
            yield cur

    async def _fetch(self, sql: str, params: Any = None, channel: _Channel | None = None) -> list[dict[str, Any]]:
        async with self._tx(channel) as cur:
            await cur.execute(sql, params)
            return list(await cur.fetchall()) if cur.description else []

    def _fence(self, token: int | None) -> tuple[str, dict[str, Any]]:
        """The condition under which an attempt's write applies: this daemon still holds claim `token`; or, for
        a job that never ran (`token` None), the job still waits to."""
        if token is None:
            return "state = ANY(%(ready)s)", {"ready": list(_READY)}
        return "state = 'running' AND claim_token = %(token)s AND lease_owner = %(me)s", {
            "token": token, "me": self.owner}

    # --- the contract --------------------------------------------------------------------------------

    async def recover_running(self) -> list[Takeover]:
        """At start: the jobs of a daemon on this host that is gone (a restart after a crash: no need to wait
        for its leases), and every job whose lease ran out, taken over by this daemon."""
        host = self.owner.rsplit(":", 2)[0]
        rows = await self._fetch("SELECT DISTINCT lease_owner FROM jobs WHERE state = 'running' AND "
                                 "lease_owner LIKE %s", (f"{host}:%",))
        dead = [r["lease_owner"] for r in rows if r["lease_owner"] != self.owner and not _alive(r["lease_owner"])]
        return await self._take_over(dead)

    async def reclaim_expired(self) -> list[Takeover]:
        """Jobs whose lease ran out by the server's clock (their daemon died, stopped, or lost the server) are
        taken over by this daemon (the claim's owner changes; its token stays, naming the lost attempt's
        results), for the exactly-once check."""
        return await self._take_over([])

    async def _take_over(self, dead_owners: list[str]) -> list[Takeover]:
        rows = await self._fetch(
            "WITH gone AS (SELECT id, claim_token FROM jobs WHERE state = 'running' "
            "AND lease_owner IS DISTINCT FROM %(me)s AND (lease_owner IS NULL OR lease_owner = ANY(%(dead)s) "
            f"OR (lease_until < {_NOW} AND extract(epoch from pg_postmaster_start_time()) < {_NOW} - %(lease)s)) "
            "FOR UPDATE SKIP LOCKED) "
            f"UPDATE jobs j SET lease_owner = %(me)s, lease_until = {_NOW} + %(lease)s "
            "FROM gone WHERE j.id = gone.id RETURNING j.*, gone.claim_token AS lost",
            {"me": self.owner, "dead": dead_owners, "lease": self.lease_seconds})
        return [Takeover(Job.from_row(r), int(r["lost"])) for r in rows]

    async def get(self, job_id: int) -> Job:
        rows = await self._fetch("SELECT * FROM jobs WHERE id = %s", (job_id,))
        if not rows:
            raise KeyError(job_id)
        return Job.from_row(rows[0])

    async def jobs(self, states: Iterable[JobState] | None = None) -> list[Job]:
        if states is None:
            rows = await self._fetch(_ALL_JOBS)
        else:
            rows = await self._fetch(_JOBS_IN, ([str(s) for s in states],))
        return [Job.from_row(r) for r in rows]

    async def jobs_by_id(self, ids: Iterable[int]) -> list[Job]:
        rows = await self._fetch("SELECT * FROM jobs WHERE id = ANY(%s)", (list(ids),))
        return [Job.from_row(r) for r in rows]

    async def sync(self, videos: list[VideoFile], *, reprocess: bool, now: float, duration: float) -> SyncResult:
        """Record what a scan found, by the rules of sync_plan.py, a transaction every SYNC_CHUNK rows."""
        known = {r["path"]: KnownRow.from_row(r) for r in await self._fetch(KNOWN_ROWS_SQL)}
        plan = plan_sync(known, videos, reprocess=reprocess, duration=duration)
        for i in range(0, len(plan.insert), SYNC_CHUNK):
            part = plan.insert[i:i + SYNC_CHUNK]
            for r in await self._fetch(
                    "INSERT INTO jobs (camera, path, recorded_at, size, mtime, state, discovered_at) "
                    "SELECT c, p, r, s, m, 'queued', %s FROM unnest(%s::text[], %s::text[], %s::text[], "
                    "%s::bigint[], %s::float8[]) AS v(c, p, r, s, m) ON CONFLICT (path) DO NOTHING RETURNING id, path",
                    (now, [v.camera for v in part], [str(v.path) for v in part],
                     [v.recorded_at.isoformat() for v in part], [v.size for v in part], [v.mtime for v in part])):
                plan.note_inserted(r["path"], int(r["id"]))
        for i in range(0, len(plan.refresh), SYNC_CHUNK):
            async with self._tx() as cur:
                for job_id, v in plan.refresh[i:i + SYNC_CHUNK]:
                    await cur.execute(
                        "UPDATE jobs SET camera = %s, recorded_at = %s, size = %s, mtime = %s, state = 'queued', "
                        "attempts = 0, last_error = NULL, last_exit_code = NULL, not_before = NULL "
                        "WHERE id = %s AND state != 'running' RETURNING id",
                        (v.camera, v.recorded_at.isoformat(), v.size, v.mtime, job_id))
                    if await cur.fetchone():
                        plan.note_refreshed(job_id)
        for i in range(0, len(plan.requeue), SYNC_CHUNK):
            async with self._tx() as cur:
                for job_id, state in plan.requeue[i:i + SYNC_CHUNK]:
                    await cur.execute(
                        "UPDATE jobs SET state = 'queued', attempts = 0, last_error = NULL, last_exit_code = NULL, "
                        "not_before = NULL WHERE id = %s AND state = %s RETURNING id", (job_id, str(state)))
                    if await cur.fetchone():
                        plan.note_requeued(job_id)
        return plan.result()

    async def claim(self, job_id: int, *, now: float, result_key: str | None = None) -> Job | None:
        import psycopg

        try:
            rows = await self._fetch(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = %(now)s, "
                "finished_at = NULL, not_before = NULL, result_key = coalesce(result_key, %(key)s), "
                f"lease_owner = %(me)s, lease_until = {_NOW} + %(lease)s, claim_token = claim_token + 1, "
                "retry_requested = 0 WHERE id = (SELECT id FROM jobs WHERE id = %(id)s AND state = ANY(%(ready)s) "
                "FOR UPDATE SKIP LOCKED) RETURNING *",
                {"now": now, "key": result_key, "me": self.owner, "lease": self.lease_seconds,
                 "id": job_id, "ready": list(_READY)})
        except psycopg.errors.UniqueViolation:
            rows = await self._fetch("SELECT * FROM jobs WHERE result_key = %s", (result_key,))
            if rows:
                raise ResultFolderTaken(result_key or "", Job.from_row(rows[0])) from None
            raise
        return Job.from_row(rows[0]) if rows else None

    async def mark_done(self, job_id: int, *, token: int | None, now: float, duration: float, output: str | None,
                        video_seconds: float | None, covered_seconds: float | None, damaged_seconds: float,
                        hours: Sequence[HourRow] = ()) -> bool:
        fence, params = self._fence(token)
        async with self._tx() as cur:
            await cur.execute(
                "UPDATE jobs SET state = 'done', finished_at = %(now)s, duration_seconds = %(duration)s, "
                "output = %(output)s, video_seconds = %(video)s, covered_seconds = %(covered)s, "
                "damaged_seconds = %(damaged)s, last_error = NULL, last_exit_code = 0, lease_owner = NULL, "
                f"lease_until = NULL WHERE id = %(id)s AND {fence} RETURNING id",
                {**params, "now": now, "duration": duration, "output": output, "video": video_seconds,
                 "covered": covered_seconds or None, "damaged": damaged_seconds or None, "id": job_id})
            done = await cur.fetchone() is not None
            if done:
                await _replace_people(cur, job_id, hours)
        return done

    async def record_people(self, job_id: int, hours: Sequence[HourRow]) -> bool:
        async with self._tx() as cur:
            await cur.execute("SELECT 1 FROM jobs WHERE id = %s AND state = 'done' FOR UPDATE", (job_id,))
            done = await cur.fetchone() is not None
            if done:
                await _replace_people(cur, job_id, hours)
        return done

    async def retry(self, job_ids: Iterable[int] = (), *, dead: bool = False, cameras: Iterable[str] = ()
                    ) -> list[Job]:
        sql, params = retry_sql("%s", list(job_ids), dead=dead, cameras=list(cameras))
        return [Job.from_row(r) for r in await self._fetch(sql, params)]

    async def retry_requested(self) -> list[Job]:
        rows = await self._fetch("SELECT * FROM jobs WHERE retry_requested = 1 AND state = 'queued' "
                                 "ORDER BY recorded_at")
        return [Job.from_row(r) for r in rows]

    async def without_people(self, limit: int = 1000, *, after: int = 0) -> list[Job]:
        rows = await self._fetch("SELECT * FROM jobs WHERE state = 'done' AND people_recorded = 0 AND id > %s "
                                 "ORDER BY id LIMIT %s", (after, limit))
        return [Job.from_row(r) for r in rows]

    async def mark_failed(self, job_id: int, *, token: int | None, now: float, error: str, exit_code: int | None,
                          retry_at: float | None) -> bool:
        state = JobState.FAILED if retry_at is not None else JobState.DEAD
        fence, params = self._fence(token)
        rows = await self._fetch(
            "UPDATE jobs SET state = %(state)s, finished_at = %(now)s, "
            "duration_seconds = %(now)s - coalesce(started_at, %(now)s), last_error = %(error)s, "
            "last_exit_code = %(code)s, not_before = %(retry)s, lease_owner = NULL, lease_until = NULL "
            f"WHERE id = %(id)s AND {fence} RETURNING id",
            {**params, "state": str(state), "now": now, "error": error, "code": exit_code, "retry": retry_at,
             "id": job_id})
        return bool(rows)

    async def requeue_interrupted(self, job_id: int, *, token: int) -> bool:
        fence, params = self._fence(token)
        rows = await self._fetch(
            "UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), started_at = NULL, "
            f"lease_owner = NULL, lease_until = NULL WHERE id = %(id)s AND {fence} RETURNING id",
            {**params, "id": job_id})
        return bool(rows)

    async def import_jobs(self, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                          people: Sequence[Mapping[str, Any]]) -> None:
        """Fill an empty store with another's jobs (`columns` of each row) and people rows, in one transaction
        (`store copy`); StoreError when it holds jobs already: nothing is ever overwritten."""
        async with self._tx() as cur:
            await cur.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")
            await cur.execute("SELECT count(*) AS n FROM jobs")
            if (await cur.fetchone())["n"]:
                raise StoreError(f"{self.describe}: already holds jobs; copy into an empty store")
            marks = ",".join(["%s"] * len(columns))
            await cur.executemany(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({marks})", rows)
            if people:
                await cur.executemany(people_sql.import_sql("%s"), [people_sql.import_params(r) for r in people])
            await cur.execute(people_sql.NOTE_COPIED)

    async def counts(self) -> dict[str, int]:
        return _counts(await self._fetch(_COUNTS))

    async def pending_bytes_by_camera(self) -> dict[str, float]:
        return _pending(await self._fetch(_PENDING, (list(_READY),)))

    async def done_work_by_camera(self) -> dict[str, tuple[float, float, float]]:
        return _done_work(await self._fetch(_DONE_WORK, (0.0,)))

    async def renew(self, claims: Mapping[int, int]) -> set[int]:
        """Extend this daemon's leases, by the server's clock, on its own connection; the ids still held."""
        if not claims:
            return set()
        ids = list(claims)
        rows = await self._lease_rows(
            f"UPDATE jobs j SET lease_until = {_NOW} + %(lease)s FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) "
            "AS c(id, token) WHERE j.id = c.id AND j.claim_token = c.token AND j.state = 'running' "
            "AND j.lease_owner = %(me)s RETURNING j.id",
            {"lease": self.lease_seconds, "ids": ids, "tokens": [claims[i] for i in ids], "me": self.owner})
        return {int(r["id"]) for r in rows}

    async def publish_status(self, status: dict[str, Any]) -> None:
        """Say what this daemon runs and how its GPUs are, for `status` anywhere (its beat by the server's clock)."""
        host, pid, started = self.owner.rsplit(":", 2)
        await self._lease_rows(
            f"INSERT INTO daemons VALUES (%s, %s, %s, %s, {_NOW}, %s) ON CONFLICT (id) DO UPDATE SET "
            "heartbeat_at = excluded.heartbeat_at, status = excluded.status",
            (self.owner, host, int(pid), float(started), json.dumps(status, default=str)))

    async def _lease_rows(self, sql: str, params: Any) -> list[dict[str, Any]]:
        """One statement on the leases' own connection (psycopg_pool's, which reconnects by itself after an
        outage), waiting for it at most a third of the lease; trouble is StoreUnavailable."""
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool, PoolTimeout

        await self._ready()
        bound = self.lease_seconds / 3
        if self._leases is None:
            logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # an outage is said once, by the renewals
            self._leases = AsyncConnectionPool(
                self.url, min_size=1, max_size=1, open=False, name="leases", reconnect_timeout=self.lease_seconds,
                check=AsyncConnectionPool.check_connection,
                kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": max(1, int(bound)),
                        "application_name": "video-supervisor leases",
                        "options": f"-c statement_timeout={max(500, int(bound * 1000))}"})
            await self._leases.open(wait=False)
        self.in_flight += 1
        try:
            async with self._leases.connection(timeout=bound) as conn:
                cur = await conn.execute(sql, params)
                return list(await cur.fetchall()) if cur.description else []
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise _unavailable(exc) from exc
        finally:
            self.in_flight -= 1

    async def check(self, *, idle: bool = False) -> None:
        return None  # a server is not a file that can be swapped under us

    async def close(self) -> None:
        try:
            await self._main.close()
        finally:
            leases, self._leases = self._leases, None
            if leases is not None:
                await leases.close()


class _Transaction:
    """One transaction on a channel's connection, connecting first where it has none (a server that went
    away is reconnected to on the next call); connection trouble is StoreUnavailable."""

    def __init__(self, engine: PostgresEngine, channel: _Channel) -> None:
        self._engine = engine
        self._channel = channel
        self._tx: Any = None
        self._cur: Any = None

    async def __aenter__(self) -> Any:
        import psycopg

        channel = self._channel
        self._engine.in_flight += 1
        await channel.turn.acquire()
        try:
            if channel.conn is None or channel.conn.closed:
                await channel.connect()
            self._tx = channel.conn.transaction()
            await self._tx.__aenter__()
        except psycopg.OperationalError as exc:
            self._engine.in_flight -= 1
            await channel.close()
            channel.turn.release()
            raise _unavailable(exc) from exc
        except BaseException:
            self._engine.in_flight -= 1
            channel.turn.release()
            raise
        self._cur = channel.conn.cursor()
        return self._cur

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        import psycopg

        try:
            try:
                await self._cur.close()
                await self._tx.__aexit__(kind, exc, tb)
            except psycopg.OperationalError as error:
                await self._channel.close()
                raise _unavailable(error) from error
            if isinstance(exc, psycopg.OperationalError):
                await self._channel.close()
                raise _unavailable(exc) from exc
        finally:
            self._engine.in_flight -= 1
            self._channel.turn.release()
        return False


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
            if _refused_for_good(exc):
                raise StoreError(f"{hide_password(url)}: cannot read the job store ({_first_line(exc)}): check the "
                                 "user, the password and the database name") from None
            raise StoreUnavailable(f"{hide_password(url)}: cannot reach the job store ({_first_line(exc)}): is the "
                                   "server running and reachable from here?") from None

    def _rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        import psycopg

        try:
            with self._conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        except psycopg.errors.UndefinedTable:
            return []  # no scheduler has used this database yet

    def jobs(self, states: Iterable[JobState] | None = None) -> list[Job]:
        if states is None:
            return [Job.from_row(r) for r in self._rows(_ALL_JOBS)]
        return [Job.from_row(r) for r in self._rows(_JOBS_IN, ([str(s) for s in states],))]

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

    def people_rows(self) -> list[dict[str, Any]]:
        return self._rows(people_sql.EXPORT)

    def people(self, query: PeopleQuery, period: str = "hour") -> list[dict[str, Any]]:
        sql, params = query.sql("%s", period)
        return people_sql.as_rows(self._rows(sql, params))

    def finished_figures(self, since: float | None) -> list[tuple[Any, ...]]:
        return [tuple(r.values()) for r in self._rows(FINISHED_FIGURES, (since or 0.0,))]

    def daemons(self, within: float = 60.0) -> list[dict[str, Any]]:
        """Every daemon that beat within `within` seconds: host, pid, running jobs, GPU state."""
        return self._rows("SELECT d.id, d.host, d.pid, d.started_at, d.heartbeat_at, d.status, (SELECT count(*) "
                          "FROM jobs j WHERE j.lease_owner = d.id AND j.state = 'running') AS running_jobs "
                          f"FROM daemons d WHERE heartbeat_at >= {_NOW} - %s ORDER BY host, pid", (within,))

    def close(self) -> None:
        self._conn.close()
