"""Exactly once across a crash: a job found running after its scheduler died may have finished.

A worker writes summary.json last, naming the video it read (path, size, mtime), the job id and
the claim of its attempt. If that file is there, names this job's video as it is now, and was
written by the attempt in question (its claim; for a worker that does not say, written after the
attempt began), the result set is complete and the job is done: it is recorded so, never run again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supervisor.jobs.store import Job
from supervisor.protocol.results import SUMMARY, same_video, written_by

CLOCK_SLACK_SECONDS = 2.0  # the file's mtime and the store's start time come from different clocks


def finished_result(out_dir: Path, job: Job, claim: int) -> dict[str, Any] | None:
    """The worker's done record, rebuilt from `out_dir/summary.json`, when it is the attempt of `claim`'s;
    else None."""
    summary_path = out_dir / SUMMARY
    try:
        written = summary_path.stat().st_mtime
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or not same_video(summary.get("video"), job.path, job.size, job.mtime, job.id):
        return None
    by_this = written_by(summary["video"], claim)
    if by_this is False:
        return None  # another attempt's results (an earlier run, before a reprocess): run it again
    if by_this is None and job.started_at is not None and written < job.started_at - CLOCK_SLACK_SECONDS:
        return None  # an earlier run's results (a reprocess that was cut short): run it again
    damage = summary.get("damage") if isinstance(summary.get("damage"), dict) else {}
    return {"event": "done", "output": str(summary_path), "video_seconds": summary.get("processed_seconds"),
            "duration_limited": summary.get("duration_limited") is True,
            "damaged_seconds": damage.get("seconds", 0.0) if damage else 0.0}
