"""What a job store holds and says, whichever engine keeps it: the job, its states, and the store's errors.

Shared by both engines (sqlite_store.py, postgres.py), the contract and everything that reads jobs;
it imports no engine.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


class Row(Protocol):
    """A row as either engine returns it (sqlite3.Row, or psycopg's dict rows): read by column name."""

    def __getitem__(self, key: str, /) -> Any: ...

    def keys(self) -> Any: ...


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # an attempt failed; another will follow
    DEAD = "dead"  # gave up


TERMINAL_STATES = frozenset({JobState.DONE, JobState.DEAD})
READY_STATES = frozenset({JobState.QUEUED, JobState.FAILED})


class StoreError(Exception):
    """The store cannot be used; the message names the file and what to do."""


class StoreInUse(StoreError):
    """Another scheduler holds the store (exit 75: try again once it is gone)."""


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    camera: str
    path: Path
    recorded_at: datetime
    size: int
    mtime: float
    state: JobState
    attempts: int
    last_error: str | None
    last_exit_code: int | None
    discovered_at: float
    not_before: float | None
    started_at: float | None
    finished_at: float | None
    duration_seconds: float | None
    output: str | None
    video_seconds: float | None
    result_key: str | None = None  # the job's result folder, relative to output_dir; unique
    covered_seconds: float | None = None  # done with only the first N seconds (--duration); None or 0: whole
    damaged_seconds: float | None = None  # done, with this much of the recording undecodable
    claim_token: int = 0  # the generation of the job's latest claim: every write of an attempt names it

    @property
    def partial(self) -> bool:
        return bool(self.covered_seconds)

    def state_text(self) -> str:
        """The state as a person reads it: "done (first 60 s), 3.2 s damaged"."""
        text = str(self.state)
        if self.state is JobState.DONE:
            if self.partial:
                text += f" (first {self.covered_seconds:g} s)"
            if self.damaged_seconds:
                text += f", {self.damaged_seconds:.1f} s damaged"
        return text

    @classmethod
    def from_row(cls, row: Row | Mapping[str, Any]) -> Job:
        return cls(
            id=row["id"], camera=row["camera"], path=Path(row["path"]),
            recorded_at=datetime.fromisoformat(row["recorded_at"]), size=row["size"], mtime=row["mtime"],
            state=JobState(row["state"]), attempts=row["attempts"], last_error=row["last_error"],
            last_exit_code=row["last_exit_code"], discovered_at=row["discovered_at"],
            not_before=row["not_before"], started_at=row["started_at"], finished_at=row["finished_at"],
            duration_seconds=row["duration_seconds"], output=row["output"], video_seconds=row["video_seconds"],
            result_key=row["result_key"], covered_seconds=row["covered_seconds"],
            damaged_seconds=row["damaged_seconds"],
            # keys(): `in` on a sqlite3.Row looks among the values. A store not yet migrated has no tokens.
            claim_token=row["claim_token"] if "claim_token" in row.keys() else 0,  # noqa: SIM118
        )


@dataclass(frozen=True, slots=True)
class Takeover:
    """A running job this scheduler now holds because the one that ran it is gone: `job` is the row as
    held now (write with its claim_token), `lost_token` the claim of the attempt that was cut off (its
    result set is looked for under that token before the job is run again)."""

    job: Job
    lost_token: int


@dataclass(slots=True)
class SyncResult:
    new: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    new_paths: list[str] = field(default_factory=list)

    @property
    def ready(self) -> list[int]:
        return self.new + self.changed + self.requeued


class StoreUnavailable(Exception):
    """The store refused a call for now; the same call may succeed later."""


class ResultFolderTaken(Exception):
    """Another job's results live in that folder already."""

    def __init__(self, key: str, other: Job) -> None:
        super().__init__(f"result folder {key!r} already holds the results of job {other.id} ({other.path})")
        self.key, self.other = key, other


def covers_less(covered: float | None, wanted: float) -> bool:
    """A job done for its first `covered` seconds (None/0: all of it) gives less than `wanted` (0: all)."""
    if not covered:
        return False
    return wanted == 0 or covered < wanted
