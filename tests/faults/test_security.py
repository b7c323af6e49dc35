"""Promise: whoever writes the videos directory cannot make the daemon write outside its output
directory, read outside the videos directory, or pass anything but one argument to the worker."""

from __future__ import annotations

import os

import pytest

from supervisor.config import Settings
from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore
from supervisor.protocol.names import PathParser
from supervisor.scheduling.result_folders import job_output_dir, result_key
from tests.fakes import make_settings, make_video, read_runs
from tests.test_scheduling import run_sup


def test_an_output_folder_symlinked_elsewhere_is_refused_and_nothing_is_written_there(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "results").mkdir()
    os.symlink(elsewhere, tmp_path / "results" / "cam")  # planted by someone who can write results/
    s = make_settings(tmp_path)
    code, _ = run_sup(s)
    assert code == 1
    store = JobStore.open(s.state_db, readonly=True)
    [job] = store.jobs()
    store.close()
    assert job.state is JobState.DEAD and "is a symlink" in job.last_error
    assert list(elsewhere.iterdir()) == [] and read_runs(tmp_path / "runs.jsonl") == []


def test_camera_ids_cannot_climb_out_of_the_output_directory(tmp_path):
    root = tmp_path / "results"
    assert job_output_dir(root, "cam/v.mp4") == (root / "cam" / "v.mp4").resolve()
    for key in ("..", "../..", "/etc", "cam/../../x.mp4"):
        try:
            job_output_dir(root, key)
        except ValueError:
            continue
        raise AssertionError(f"{key!r} was accepted")
    videos = tmp_path / "videos"
    assert result_key(videos, videos / "cam" / "2025-11-14" / "14-30-00.mp4") == "cam/2025-11-14/14-30-00.mp4"
    with pytest.raises(ValueError, match="not under the videos directory"):
        result_key(videos, tmp_path / "elsewhere" / "v.mp4")
    # A pattern that would capture a path as the camera id finds none.
    parser = PathParser(r"(?P<camera>.+)/(?P<timestamp>\d{14})")
    assert parser.parse(__import__("pathlib").Path("../../etc/20251114100000.mp4"))[0] is None


def test_metrics_listen_on_localhost_by_default():
    assert Settings().metrics.listen.startswith("127.0.0.1:")
