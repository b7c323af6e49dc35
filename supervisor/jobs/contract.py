"""What the scheduler needs of a job store, and what the commands read of one, whatever engine keeps it.

`JobStoreEngine` is the scheduler's side: every call is awaited, none blocks the loop.
`JobReader` is the read-only side the commands and the daemon's page use: blocking calls on a
connection of their own, beside a running scheduler. jobs/connect.py opens either for a path or a URL.

An engine raises `StoreUnavailable` for trouble that passes (a full or read-only disk, a lock held
too long, a server restarting): the scheduler waits and tries again. Anything else it raises is a
store it cannot trust, and the run stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.model import Job, JobState, SyncResult, Takeover
from supervisor.jobs.people import PeopleQuery
from supervisor.protocol.hours import HourRow


class JobStoreEngine(Protocol):
    """Every write of an attempt is fenced by its claim: `claim` hands out a token (the job's claim
    generation), and `mark_done`, `mark_failed` and `requeue_interrupted` apply only while that claim is
    still the job's (and, on a shared store, still this scheduler's), returning False otherwise. A
    scheduler that lost a claim (paused past its lease, cut off from the server) can thus never record
    an outcome over the one that took the job on, nor turn a done job back into a queued one."""

    shared: bool  # several schedulers use it at once (their retries are everyone's to pick up)
    in_flight: int  # calls under way (on its thread, or at the server): what a clock moved by hand waits for

    @property
    def describe(self) -> str:
        """Where the store is, for logs: a path, or a URL without its password."""
        ...

    async def recover_running(self) -> list[Takeover]:
        """At start: jobs left running by a scheduler that is gone, now held by this one (on a shared store the
        lease changes owner), for the exactly-once check; each then becomes done or is requeued, fenced."""
        ...

    async def reclaim_expired(self) -> list[Takeover]:
        """Now and then: jobs of a scheduler that stopped renewing its claims, judged by the store's own
        clock (shared stores); held by this one, as recover_running's are."""
        ...

    async def renew(self, claims: Mapping[int, int]) -> set[int]:
        """Extend this scheduler's claims ({job id: token}); the ids it still holds. One missing was taken
        over: its attempt is void, and its worker must be stopped at once."""
        ...

    async def publish_status(self, status: dict[str, Any]) -> None:
        """Say what this scheduler runs and how its GPUs are, for `status` on any host (shared stores)."""
        ...

    async def get(self, job_id: int) -> Job: ...

    async def jobs(self, states: Iterable[JobState] | None = None) -> list[Job]: ...

    async def jobs_by_id(self, ids: Iterable[int]) -> list[Job]: ...

    async def sync(self, videos: list[VideoFile], *, reprocess: bool, now: float, duration: float) -> SyncResult:
        """Record what a scan found, by the rules of sync_plan.py: new videos queued, changed ones (size or
        mtime) queued again, done ones queued again when `reprocess`, or when they cover less than `duration`
        asks. A running job is left alone (seen again at the next scan).

        It may take a while on a big tree, so it runs beside the scheduler's other calls, never in front of
        them (SQLite: on a connection and a thread of its own; PostgreSQL: awaited on the loop), and commits
        every SYNC_CHUNK rows: a sync cut short keeps what it committed, and the next scan does the rest
        (every write is an insert-or-ignore or re-checks the row's state). The result names only the writes
        that took effect. A store found deleted or replaced raises StoreError before anything is written."""
        ...

    async def claim(self, job_id: int, *, now: float, result_key: str | None = None) -> Job | None:
        """Start an attempt of a ready job (one write), recording its result folder unless it has one; the
        job as claimed, its claim_token naming this attempt; None when it is not ready any more;
        ResultFolderTaken when another job holds that folder."""
        ...

    async def mark_done(self, job_id: int, *, token: int | None, now: float, duration: float, output: str | None,
                        video_seconds: float | None, covered_seconds: float | None,
                        damaged_seconds: float, hours: Sequence[HourRow] = ()) -> bool:
        """The attempt of claim `token` finished, with its people by hour (replacing an earlier attempt's), in
        one transaction; False when that claim is no longer held (nothing written)."""
        ...

    async def record_people(self, job_id: int, hours: Sequence[HourRow]) -> bool:
        """A done job's people by hour, filled in from its result files; False when it is not done."""
        ...

    async def retry(self, job_ids: Iterable[int] = (), *, dead: bool = False, cameras: Iterable[str] = ()
                    ) -> list[Job]:
        """Queue jobs again, attempts from zero (never a running one): `job_ids`, or with `dead` every job
        given up on (of `cameras`, when named). Flagged so a scheduler's next scan takes them up."""
        ...

    async def retry_requested(self) -> list[Job]:
        """Jobs queued again by `retry` that no scheduler has claimed since."""
        ...

    async def without_people(self, limit: int = 1000, *, after: int = 0) -> list[Job]:
        """Done jobs whose people by hour the store does not have yet (done before it kept them), by id from
        `after`."""
        ...

    async def mark_failed(self, job_id: int, *, token: int | None, now: float, error: str, exit_code: int | None,
                          retry_at: float | None) -> bool:
        """`token` None: a job that never ran (still ready) is given up on."""
        ...

    async def requeue_interrupted(self, job_id: int, *, token: int) -> bool:
        """Back to queued, the attempt not counted; only a running job still under claim `token`."""
        ...

    async def counts(self) -> dict[str, int]: ...

    async def pending_bytes_by_camera(self) -> dict[str, float]: ...

    async def done_work_by_camera(self) -> dict[str, tuple[float, float, float]]: ...

    async def check(self, *, idle: bool = False) -> None:
        """Raise if the store under us is no longer the one opened (replaced, deleted); housekeeping that
        keeps it whole (`idle`: the run has nothing to do, a good moment for it)."""
        ...

    async def close(self) -> None: ...


class JobReader(Protocol):
    """The read-only look at a store, for `--list`, `status`, `report`, `store copy` and the daemon's page:
    blocking calls on a connection of its own, safe beside a running scheduler."""

    def jobs(self, states: Iterable[JobState] | None = None) -> list[Job]:
        """Every job (of `states`), oldest recording first."""
        ...

    def by_path(self) -> dict[str, Job]: ...

    def counts(self) -> dict[str, int]:
        """Jobs by state, every state named."""
        ...

    def damage_totals(self) -> tuple[int, float, int]:
        """(videos done with damage, their undecodable seconds, videos done for their first seconds only)."""
        ...

    def pending_bytes_by_camera(self) -> dict[str, float]: ...

    def ready_count_by_camera(self) -> dict[str, int]: ...

    def done_work_by_camera(self, since: float | None = None) -> dict[str, tuple[float, float, float]]:
        """{camera: (processing seconds, bytes, video seconds)} over done jobs: what speed is learnt from."""
        ...

    def recent_failures(self, limit: int = 5) -> list[Job]: ...

    def finished_since(self, since: float | None) -> list[Job]: ...

    def finished_figures(self, since: float | None) -> list[tuple[Any, ...]]:
        """What `report` sums of each job done or given up on since `since` (report.Finished's columns)."""
        ...

    def people(self, query: PeopleQuery, period: str = "hour") -> list[dict[str, Any]]:
        """People per camera, region and period (people.PERIODS), summed over every recording."""
        ...

    def people_rows(self) -> list[dict[str, Any]]:
        """Every people row as kept, with its recording's path (for `store copy`)."""
        ...

    def daemons(self, within: float = 60.0) -> list[dict[str, Any]]:
        """The schedulers that beat within `within` seconds, for `status` on any host (none for a store
        that only one scheduler uses: its status file says what it runs)."""
        ...

    def close(self) -> None: ...
