"""One door to a job store: a path opens the SQLite engine, a postgresql:// URL the shared one.

The scheduler gets a `JobStoreEngine` (`open_engine`), the commands and the daemon's page a
`JobReader` (`open_reader`); nothing else in the tree asks which engine it has.
"""

from __future__ import annotations

from pathlib import Path

from supervisor.config import is_store_url
from supervisor.jobs.contract import JobReader, JobStoreEngine
from supervisor.jobs.postgres import LEASE_SECONDS, PostgresEngine, PostgresReader
from supervisor.jobs.sqlite_engine import SqliteEngine
from supervisor.jobs.sqlite_store import JobStore


def open_reader(target: str | Path) -> JobReader:
    """A read-only look at the store at `target`: a PostgreSQL URL, or a SQLite file (a missing one reads as
    empty). StoreError when it cannot be read; StoreUnavailable when its server does not answer."""
    if is_store_url(str(target)):
        return PostgresReader(str(target))
    return JobStore.open(Path(target), readonly=True)


async def open_engine(target: str | Path, *, lease_seconds: float = LEASE_SECONDS) -> JobStoreEngine:
    """The scheduler's store at `target`. A SQLite file is created if missing and locked for this scheduler
    alone (StoreInUse when another holds it); a PostgreSQL server that does not answer yet is waited for by
    the scheduler, one that refuses these credentials raises StoreError."""
    if is_store_url(str(target)):
        return await PostgresEngine.open(str(target), lease_seconds=lease_seconds)
    return SqliteEngine.open(Path(target), lock=True)
