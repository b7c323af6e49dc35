"""The rules of recording a scan, as a table: one pure plan that both engines apply."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from supervisor.jobs.discovery import VideoFile
from supervisor.jobs.model import JobState
from supervisor.jobs.sync_plan import KnownRow, plan_sync


def video(size: int = 100, mtime: float = 1000.0) -> VideoFile:
    return VideoFile("cam", datetime(2025, 11, 14, 10), Path("/v/cam/a.mp4"), size, mtime)


@pytest.mark.parametrize(("state", "covered", "found", "reprocess", "duration", "expected"), [
    (None, None, video(), False, 0.0, "insert"),
    (JobState.QUEUED, None, video(), False, 0.0, None),
    (JobState.DONE, None, video(), False, 0.0, None),  # done whole: stays done
    (JobState.DONE, None, video(size=200), False, 0.0, "refresh"),  # the file changed
    (JobState.DEAD, None, video(mtime=2000.0), False, 0.0, "refresh"),
    (JobState.RUNNING, None, video(size=200), True, 0.0, None),  # running: seen again next scan
    (JobState.DONE, None, video(), True, 0.0, "requeue"),
    (JobState.DEAD, None, video(), True, 0.0, "requeue"),
    (JobState.FAILED, None, video(), True, 0.0, None),  # waiting for its retry already
    (JobState.DONE, 60.0, video(), False, 0.0, "requeue"),  # done for its first minute; the whole is asked
    (JobState.DONE, 60.0, video(), False, 120.0, "requeue"),
    (JobState.DONE, 60.0, video(), False, 30.0, None),  # covers what is asked
])
def test_what_a_scan_does_to_each_video(state, covered, found, reprocess, duration, expected):
    known = {} if state is None else {str(found.path): KnownRow(7, 100, 1000.0, state, covered)}
    plan = plan_sync(known, [found], reprocess=reprocess, duration=duration)
    got = ("insert" if plan.insert else "refresh" if plan.refresh else "requeue" if plan.requeue else None)
    assert got == expected
    if expected == "requeue":
        assert plan.requeue == [(7, state)]  # the state the engine re-checks before it writes


def test_only_the_writes_that_took_effect_are_in_the_result():
    plan = plan_sync({}, [video()], reprocess=False, duration=0.0)
    plan.note_inserted("/v/cam/a.mp4", 3)
    plan.note_requeued(9)
    result = plan.result()
    assert (result.new, result.new_paths, result.changed, result.requeued) == ([3], ["/v/cam/a.mp4"], [], [9])
