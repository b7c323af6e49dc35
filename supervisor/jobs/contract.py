"""What the scheduler needs of a job store, whatever keeps it: every call is awaited, none blocks the loop.

An engine raises `StoreUnavailable` for trouble that passes (a full or read-only disk, a lock held
too long, a server restarting): the scheduler waits and tries again. Anything else it raises is a
store it cannot trust, and the run stops.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.store import Job, JobState, SyncResult


class StoreUnavailable(Exception):
    """The store refused a call for now; the same call may succeed later."""


class JobStoreEngine(Protocol):
    shared: bool  # several schedulers use it at once (their retries are everyone's to pick up)

    @property
    def describe(self) -> str:
        """Where the store is, for logs: a path, or a URL without its password."""
        ...

    async def recover_running(self) -> list[Job]:
        """At start: jobs left running by a scheduler that died go back to queued, the attempt not
        counted; returned as they were, so their results can be checked (exactly once)."""
        ...

    async def reclaim_expired(self) -> list[Job]:
        """Now and then: jobs claimed by a scheduler that stopped renewing its claims (shared stores)."""
        ...

    async def heartbeat(self, running: list[int], status: dict[str, Any]) -> None:
        """Renew this scheduler's claims on `running` and publish its status (shared stores)."""
        ...

    async def get(self, job_id: int) -> Job: ...

    async def jobs(self, states: Iterable[JobState] | None = None) -> list[Job]: ...

    async def jobs_by_id(self, ids: Iterable[int]) -> list[Job]: ...

    async def sync(self, videos: list[VideoFile], *, reprocess: bool, now: float, duration: float) -> SyncResult:
        ...

    async def claim(self, job_id: int, *, now: float, result_key: str | None = None) -> Job | None:
        """Start an attempt of a ready job (one write), recording its result folder unless it has one;
        None when it is not ready any more; ResultFolderTaken when another job holds that folder."""
        ...

    async def mark_done(self, job_id: int, *, now: float, duration: float, output: str | None,
                        video_seconds: float | None, covered_seconds: float | None,
                        damaged_seconds: float, recovered: bool = False) -> None:
        """`recovered`: its attempt was taken back as lost at recovery, but had finished: count it."""
        ...

    async def mark_failed(self, job_id: int, *, now: float, error: str, exit_code: int | None,
                          retry_at: float | None) -> None: ...

    async def requeue_interrupted(self, job_id: int) -> None: ...

    async def counts(self) -> dict[str, int]: ...

    async def pending_bytes_by_camera(self) -> dict[str, float]: ...

    async def done_work_by_camera(self) -> dict[str, tuple[float, float, float]]: ...

    async def check(self) -> None:
        """Raise if the store under us is no longer the one opened (replaced, deleted)."""
        ...

    async def close(self) -> None: ...
