"""The detection worker end to end: a generated scene with real people, the offline person model."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.protocol.rois import load_rois
from tests.fakes import REPO, write_bad_video
from workers.scenes import DEFAULT_ACTORS, LEFT_RIGHT_ROIS, expected_counts, load_sprites, write_scene

MODEL = REPO / "models" / "person.pt"


@pytest.fixture(scope="module")
def model() -> Path:
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing: `make test` fetches it (python -m workers.fetch_model)")
    return MODEL


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("scene")
    video = write_scene(d / "cam" / "cam_20251114_100000.mp4", DEFAULT_ACTORS, seconds=7)
    rois = d / "rois.toml"
    rois.write_text(LEFT_RIGHT_ROIS.format(camera="cam"))
    return video, rois


def detect(video: Path, out: Path, *extra: str, model: Path = MODEL, env: dict | None = None,
           prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    cmd = [*prefix, sys.executable, "-m", "workers.detect", "--video", str(video), "--camera", "cam",
           "--out", str(out), "--model", str(model), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_counts_people_in_each_region_as_the_scene_contains(scene, model, tmp_path):
    video, rois = scene
    proc = detect(video, tmp_path / "out", "--rois", str(rois))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["output"] == str(tmp_path / "out" / "summary.json")
    assert any(e["event"] == "progress" and e["duration_seconds"] == 7.0 for e in events)
    # What it read of the file, for the videos share's health: every byte of it, and the time it took.
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["read_bytes"] for e in progress] == sorted(e["read_bytes"] for e in progress)
    timings = json.loads((tmp_path / "out" / "summary.json").read_text())["timing"]
    assert 0.9 * video.stat().st_size <= timings["read_bytes"] <= video.stat().st_size
    assert 0 < timings["read_wait_seconds"] <= timings["total_seconds"]
    regions = load_rois(rois).regions_for("cam")
    sprites = load_sprites()
    rows = list(csv.DictReader((tmp_path / "out" / "counts.csv").read_text().splitlines()))
    assert len(rows) == 14  # 7 s at 2 samples a second
    matches = 0
    for row in rows:
        t = float(row["video_time_s"])
        want = expected_counts(DEFAULT_ACTORS, regions, t, sprites)
        matches += [int(row["left"]), int(row["right"])] == want
    assert matches >= 13, rows  # the real model on real photos: allow one miss in 14
    assert rows[2]["recorded_time"] == "2025-11-14T10:00:01.000"  # recording start (from the name) + offset
    intervals = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    spans = {iv["region"]: (iv["start"], iv["end"]) for iv in intervals}
    assert set(spans) == {"left", "right"} and len(intervals) == 2  # debounced: one visit, one interval
    assert spans["left"] == pytest.approx((1.0, 4.0), abs=0.51)
    assert spans["right"] == pytest.approx((2.5, 5.5), abs=0.51)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["video_info"]["width"] == 960 and summary["frames_sampled"] == 14
    assert summary["regions"]["left"]["peak_count"] == 1
    assert summary["regions"]["left"]["person_seconds"] == pytest.approx(3.0, abs=0.51)
    assert summary["model"]["classes"] == ["person"] and summary["device"] == "cpu"
    t = summary["timing"]
    # Decoding runs on its own thread, beside inference: each is part of the total, not their sum.
    assert 0 < t["inference_seconds"] <= t["total_seconds"] and 0 < t["decode_seconds"] <= t["total_seconds"]
    assert t["frames_decoded"] == 70 and summary["frames_decoded"] == 70
    assert summary["video"]["path"] == str(video) and summary["video"]["size"] == video.stat().st_size
    assert summary["damage"]["damaged"] is False
    assert sorted(os.listdir(tmp_path / "out")) == ["counts.csv", "events.jsonl", "summary.json"]


def test_duration_limits_the_part_processed(scene, model, tmp_path):
    video, _ = scene
    proc = detect(video, tmp_path / "out", "--duration", "3")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["processed_seconds"] == 3.0 and summary["last_sample_time"] < 3.0
    assert list(summary["regions"]) == ["frame"]  # no ROI file: the whole frame


@pytest.mark.parametrize("kind", ["empty", "random", "text", "truncated", "directory", "missing"])
def test_bad_videos_exit_65_with_one_line_naming_the_file(scene, tmp_path, kind):
    video, _ = scene
    bad = write_bad_video(tmp_path, f"bad_{kind}", kind, good=video)
    proc = detect(bad, tmp_path / "out", model=tmp_path / "never-loaded.pt")
    assert proc.returncode == 65, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{bad}: ")
    assert not (tmp_path / "out" / "summary.json").exists()


def test_missing_model_exits_78_and_says_where_to_put_one(scene, tmp_path):
    video, _ = scene
    proc = detect(video, tmp_path / "out", model=tmp_path / "yolo11n.pt")
    assert proc.returncode == 78
    assert f"model file {tmp_path / 'yolo11n.pt'} not found" in proc.stderr
    assert "never downloaded" in proc.stderr


def test_bad_roi_file_exits_78(scene, tmp_path):
    video, _ = scene
    rois = tmp_path / "rois.toml"
    rois.write_text('[cameras.cam]\n[[cameras.cam.regions]]\nname = "x"\npoints = [[0,0],[1,1]]\n')
    proc = detect(video, tmp_path / "out", "--rois", str(rois))
    assert proc.returncode == 78 and "at least 3 points" in proc.stderr


def test_results_that_cannot_be_written_are_a_transient_failure(scene, model, tmp_path):
    video, _ = scene
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    proc = detect(video, blocker / "out", "--duration", "1")
    assert proc.returncode == 75, proc.stderr
    assert "cannot write results" in proc.stderr


def test_sigterm_stops_the_worker_promptly_and_leaves_no_partial_result(model, tmp_path):
    video = write_scene(tmp_path / "cam" / "cam_20251114_100000.mp4", DEFAULT_ACTORS, seconds=60, fps=5)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "workers.detect", "--video", str(video), "--camera", "cam",
                             "--out", str(out), "--model", str(model)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "progress" and event["frame"] > 0:
                break
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)  # a bound only a worker ignoring SIGTERM reaches, not a busy machine
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        stderr = proc.stderr.read()
        proc.stderr.close()
    assert code == 143, stderr
    assert os.listdir(out) == []  # neither results nor temporary files


@pytest.mark.parametrize("engine", ["torch", "openvino", "onnxruntime"])
def test_runs_fully_offline_and_writes_nothing_under_home(scene, model, tmp_path, engine):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a private network namespace needs root and unshare")
    video, rois = scene
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    for name in ("YOLO_CONFIG_DIR", "YOLO_OFFLINE", "XDG_CACHE_HOME"):
        env.pop(name, None)
    started = time.monotonic()
    # No network at all in here: a download attempt would fail (or hang until a timeout).
    proc = detect(video, tmp_path / "out", "--rois", str(rois), f"--engine={engine}", env=env,
                  prefix=("unshare", "--net", "--"))
    assert proc.returncode == 0, proc.stderr
    assert list(home.iterdir()) == []
    assert time.monotonic() - started < 60


def test_a_pixel_roi_for_another_picture_shape_exits_78_naming_region_and_sizes(scene, tmp_path):
    video, _ = scene  # 960x540
    rois = tmp_path / "rois.toml"
    rois.write_text('[cameras.cam]\nframe_size = [1440, 1080]\n[[cameras.cam.regions]]\nname = "till"\n'
                    'points = [[0, 540], [720, 540], [720, 1080], [0, 1080]]\n')
    proc = detect(video, tmp_path / "out", "--rois", str(rois), model=tmp_path / "never-loaded.pt")
    assert proc.returncode == 78, proc.stderr
    line = proc.stderr.strip()
    assert "region 'till'" in line and "1440x1080" in line and "960x540" in line and len(line.splitlines()) == 1


def test_a_camera_named_like_an_option_is_taken_as_a_value(scene, model, tmp_path):
    video, _ = scene
    proc = subprocess.run([sys.executable, "-m", "workers.detect", f"--video={video}", "--camera=-x",
                           f"--out={tmp_path / 'out'}", f"--model={model}", "--duration=1"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["camera"] == "-x"
