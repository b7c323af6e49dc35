"""What a scan does to the store, decided once for every engine: a pure plan that each engine applies.

The rules, for each video a scan found:

- one the store does not know is inserted, queued (insert-or-ignore on its path: another host's scan
  may have inserted it a moment ago);
- a known one whose size or mtime changed takes the new figures and is queued again, its attempts
  from zero, unless it is running (the next scan sees the change again);
- a done one that covers less than this run asks (`duration` seconds; 0: the whole recording) is
  queued again;
- with `reprocess`, a done or dead one is queued again.

Every update names the state the row had when it was read, and the engine re-checks it in SQL: a
job that started (or finished) between the read and the write is left alone. Engines commit a plan
in chunks of `SYNC_CHUNK` statements, so a scan of a big tree never holds the store long.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.model import TERMINAL_STATES, JobState, Row, SyncResult, covers_less

# The columns of every known row a plan needs, as both engines read them.
KNOWN_ROWS_SQL = "SELECT id, path, size, mtime, state, covered_seconds FROM jobs"
SYNC_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class KnownRow:
    """What the store holds of a video, as read at the start of a sync."""

    id: int
    size: int
    mtime: float
    state: JobState
    covered_seconds: float | None

    @classmethod
    def from_row(cls, row: Row) -> KnownRow:
        return cls(int(row["id"]), int(row["size"]), float(row["mtime"]), JobState(row["state"]),
                   row["covered_seconds"])


@dataclass(slots=True)
class SyncPlan:
    """The writes a sync makes, and (filled in by the engine as it applies them) which of them took effect."""

    insert: list[VideoFile] = field(default_factory=list)  # new videos
    refresh: list[tuple[int, VideoFile]] = field(default_factory=list)  # (job id, the video as found now)
    requeue: list[tuple[int, JobState]] = field(default_factory=list)  # (job id, the state it must still be in)
    _result: SyncResult = field(default_factory=SyncResult)

    def note_inserted(self, path: str, job_id: int) -> None:
        """A new video's row was inserted (one another host inserted first is not noted)."""
        self._result.new.append(job_id)
        self._result.new_paths.append(path)

    def note_refreshed(self, job_id: int, _rowid: int = 0) -> None:
        self._result.changed.append(job_id)

    def note_requeued(self, job_id: int, _rowid: int = 0) -> None:
        self._result.requeued.append(job_id)

    def result(self) -> SyncResult:
        """What the sync came to: the writes noted as they took effect."""
        return self._result


def plan_sync(known: Mapping[str, KnownRow], videos: Iterable[VideoFile], *, reprocess: bool,
              duration: float) -> SyncPlan:
    """The writes that record what a scan found (`known`: the store's rows by path)."""
    plan = SyncPlan()
    for video in videos:
        row = known.get(str(video.path))
        if row is None:
            plan.insert.append(video)
        elif row.size != video.size or row.mtime != video.mtime:
            if row.state is not JobState.RUNNING:
                plan.refresh.append((row.id, video))
        elif (row.state is JobState.DONE and covers_less(row.covered_seconds, duration)) or (
                reprocess and row.state in TERMINAL_STATES):
            plan.requeue.append((row.id, row.state))
    return plan
