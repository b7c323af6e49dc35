"""One path to "done": the worker's done event and a result set found after a crash are the same typed
object, and the same decision turns either into what the store records."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from supervisor.config import WorkerSettings
from supervisor.jobs.model import Job, JobState
from supervisor.process.runner import Outcome, OutcomeKind
from supervisor.protocol.events import DoneEvent, parse_line
from supervisor.protocol.results import video_identity
from supervisor.scheduling.outcomes import Verdict, decide
from supervisor.scheduling.recovery import finished_result, recovered_outcome


def _job(video: Path, **fields: object) -> Job:
    st = video.stat()
    base = dict(id=7, camera="cam", path=video, recorded_at=datetime(2025, 11, 14, 10), size=st.st_size,
                mtime=st.st_mtime, state=JobState.RUNNING, attempts=1, last_error=None, last_exit_code=None,
                discovered_at=0.0, not_before=None, started_at=100.0, finished_at=None, duration_seconds=None,
                output=None, video_seconds=None, claim_token=3)
    base.update(fields)
    return Job(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("line", "event"), [
    ('{"event": "done", "output": "/r/summary.json"}', {"event": "done", "output": "/r/summary.json"}),
    ('{"event": 3}', None),
    ('[1, 2]', None),
    ("{not json", None),
    ("plain output", None),
])
def test_only_json_objects_with_a_text_event_are_events(line, event):
    assert parse_line(line) == event


def test_a_done_event_reads_what_it_says_and_ignores_what_has_the_wrong_type():
    done = DoneEvent.from_event({"event": "done", "output": "/r/summary.json", "video_seconds": 60,
                                 "duration_limited": True, "damaged_seconds": 1.5, "damaged_spans": 2,
                                 "engine": "openvino", "engine_fallback": None})
    assert done == DoneEvent("/r/summary.json", 60.0, True, 1.5, 2, "openvino", None)
    assert done.covered_seconds == 60.0
    odd = DoneEvent.from_event({"event": "done", "video_seconds": "60", "duration_limited": "yes",
                                "damaged_seconds": True, "damaged_spans": 1.5})
    assert odd == DoneEvent() and odd.covered_seconds is None


def test_a_bare_done_event_is_a_done_job_with_its_result_folder_as_output():
    d = decide(Outcome(OutcomeKind.SUCCEEDED, 0, done=DoneEvent()), _job(Path(__file__)), WorkerSettings(), "/r/x")
    assert (d.verdict, d.output, d.video_seconds, d.covered_seconds, d.damaged_seconds) == (
        Verdict.DONE, "/r/x", None, None, 0.0)


def test_a_result_set_found_after_a_crash_decides_as_its_done_event_would(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 10)
    job = _job(video)
    identity = video_identity(video, {"VIDEO_SUPERVISOR_JOB_ID": "7", "VIDEO_SUPERVISOR_CLAIM": "3"})
    (tmp_path / "out").mkdir()
    summary = tmp_path / "out" / "summary.json"
    summary.write_text(json.dumps({"video": identity, "processed_seconds": 30.0, "duration_limited": True,
                                   "damage": {"seconds": 2.0}}))
    found = finished_result(tmp_path / "out", job, 3)
    assert found == DoneEvent(str(summary), 30.0, True, 2.0)
    assert finished_result(tmp_path / "out", job, 4) is None  # another attempt's results
    printed = DoneEvent.from_event({"event": "done", "output": str(summary), "video_seconds": 30.0,
                                    "duration_limited": True, "damaged_seconds": 2.0})
    outcome = recovered_outcome(found, job, now=160.0)
    assert outcome.duration == 60.0
    worker = WorkerSettings()
    assert decide(outcome, job, worker, "") == decide(Outcome(OutcomeKind.SUCCEEDED, 0, done=printed), job, worker, "")
