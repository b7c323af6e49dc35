"""A progress display for a once run on a terminal: one overall bar and a line per running job.

Only when stdout is a terminal; under systemd, in pipes and in CI nothing is
drawn and no escape code is written: the JSON lines alone.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from supervisor.logs import is_terminal
from supervisor.observe.observers import Observer

if TYPE_CHECKING:
    from supervisor.jobs.model import JobState
    from supervisor.observe.snapshot import RunningView, Snapshot
    from supervisor.process.runner import Outcome


def wanted(stream: TextIO | None = None) -> bool:
    return is_terminal(stream)


class ProgressBar(Observer):
    def __init__(self, stream: TextIO | None = None) -> None:
        self.console = Console(file=stream or sys.stdout)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"), TimeRemainingColumn(), console=self.console, transient=True,
        )
        self._overall: TaskID | None = None
        self._jobs: dict[int, TaskID] = {}
        self._video_seconds = 0.0

    async def start(self, snapshot: Snapshot) -> None:
        total = snapshot.outstanding + snapshot.completed
        self._overall = self.progress.add_task("videos", total=total, extra="")
        self.progress.start()

    async def stop(self) -> None:
        self.progress.stop()

    def job_started(self, rj: RunningView) -> None:
        name = rj.job.path.name
        self._jobs[rj.job.id] = self.progress.add_task(f"  {rj.job.camera} {name}", total=100, extra="")

    def job_finished(self, rj: RunningView, outcome: Outcome, state: JobState) -> None:
        task = self._jobs.pop(rj.job.id, None)
        if task is not None:
            self.progress.remove_task(task)
        if self._overall is not None and str(state) in ("done", "dead"):
            if outcome.done is not None and outcome.done.video_seconds is not None:
                self._video_seconds += outcome.done.video_seconds
            self.progress.advance(self._overall)
            self.progress.update(self._overall, extra=f"{self._video_seconds / 3600:.2f} video-h")

    def tick(self, snap: Snapshot) -> None:
        for job_id, task in self._jobs.items():
            rj = snap.running_job(job_id)
            if rj is None:
                continue
            fields: dict[str, Any] = {}
            fps = rj.progress.get("fps")
            if isinstance(fps, (int, float)):
                fields["extra"] = f"{fps:.1f} fps"
            pct = rj.percent()
            self.progress.update(task, completed=pct or 0.0, **fields)
        if self._overall is not None:
            total = snap.outstanding + snap.completed + snap.dead
            self.progress.update(self._overall, total=max(total, 1))
