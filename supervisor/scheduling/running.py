"""An attempt under way, as the scheduler knows it while its worker runs (nothing of it is stored).

The job runner makes one for each attempt it starts and keeps it until the attempt's outcome is in
the store; lease renewals, the recording of the outcome and the supervisor's figures read it. It
stands apart from all of them so that each can name it without importing the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.jobs.model import Job
from supervisor.observe.job_logs import JobLog
from supervisor.observe.snapshot import RunningView
from supervisor.process.launcher import WorkerHandle
from supervisor.scheduling.slots import GpuId


@dataclass(slots=True)
class RunningJob:
    """What is known of a job while its worker runs (not stored). The worker writes into `staging`, a
    folder of its attempt's own; only while the claim (`job.claim_token`) is held is it published at
    `output_dir` (the result folder, `key` under the output root)."""

    job: Job
    gpu: GpuId
    run: WorkerHandle
    started_at: float
    output_dir: Path
    key: str
    staging: Path
    progress: dict[str, Any] = field(default_factory=dict)
    output_log: JobLog | None = None  # what its worker says, for `video-supervisor log JOB`
    lease_lost: bool = False  # another scheduler took the job over: nothing of this attempt is recorded
    recording: bool = False  # its outcome is on its way to the store

    @property
    def token(self) -> int:
        return self.job.claim_token

    def view(self) -> RunningView:
        return RunningView(self.job, self.gpu, self.started_at, self.output_dir, dict(self.progress))
