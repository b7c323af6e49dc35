"""Motion-gated inference: the gate's rules on hand-made pictures, and the worker on real H.264 recordings,
gated against ungated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import REPO
from workers.motion import MotionGate, MotionSettings, cell_differences, thumbnail
from workers.scenes import LEFT_RIGHT_ROIS, Actor, encode_scene

MODEL = REPO / "models" / "person.pt"
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg tool makes the recordings")


def grey(value: int = 90, size: tuple[int, int] = (540, 960)) -> np.ndarray:
    return np.full(size, value, dtype=np.uint8)


def test_thumbnail_averages_noise_away_but_keeps_a_person_sized_change():
    rng = np.random.default_rng(3)
    still = thumbnail(grey())
    noisy = thumbnail(np.clip(90 + rng.normal(0, 4, (540, 960)), 0, 255).astype(np.uint8))
    person = grey()
    person[300:500, 400:460] = 30  # a dark figure, 60 x 200 pixels
    assert still.shape == (90, 160)
    assert cell_differences(noisy, still).max() < 2.0
    assert cell_differences(thumbnail(person), still).max() > 20.0


def test_cells_at_the_edge_are_averaged_over_their_own_pixels():
    current = np.zeros((10, 10), dtype=np.float32)
    current[8:, 8:] = 12.0  # the 2 x 2 corner cell left over by 8-pixel cells
    means = cell_differences(current, np.zeros_like(current))
    assert means.shape == (2, 2) and means[1, 1] == pytest.approx(12.0) and means[0, 0] == 0.0


@pytest.mark.parametrize(("case", "expected"), [
    ("first", True), ("same picture", False), ("a cell changed", True), ("another size", True),
    ("after a break", True), ("max reuse reached", True), ("gate off", True),
])
def test_gate_rules(case, expected):
    on = MotionSettings(enabled=case != "gate off", threshold=6.0, max_reuse_seconds=10.0)
    gate = MotionGate(on)
    base = thumbnail(grey())
    if case != "first":
        assert gate.decide(0.0, base) is True
    picture, t, broke = base, 0.5, False
    if case == "a cell changed":
        changed = grey()
        changed[0:60, 0:60] = 200
        picture = thumbnail(changed)
    elif case == "another size":
        picture = thumbnail(grey(size=(720, 1280)), 120)
    elif case == "after a break":
        broke = True
    elif case == "max reuse reached":
        t = 10.0
    assert gate.decide(t, picture, break_before=broke) is expected


def test_slow_change_adds_up_against_the_last_inferred_picture_not_the_last_sample():
    gate = MotionGate(MotionSettings(enabled=True, threshold=6.0, max_reuse_seconds=1000.0))
    decisions = []
    for step in range(20):
        picture = grey()
        picture[0:120, 0:120] = 90 + 2 * step  # two grey levels brighter each sample: never 6 in one step
        decisions.append(gate.decide(step * 0.5, thumbnail(picture)))
    assert decisions[0] and decisions.count(True) >= 6  # 2 levels a step: inferred every third sample
    assert gate.inferred + gate.reused == 20 and gate.reasons["motion"] == decisions.count(True) - 1


def test_reused_spans_end_where_the_next_inferred_sample_or_the_video_begins():
    gate = MotionGate(MotionSettings(enabled=True, threshold=6.0, max_reuse_seconds=2.0))
    still = thumbnail(grey())
    for i in range(10):
        gate.decide(i * 0.5, still)
    gate.finish(5.0)
    # Inferred at 0, 2, 4 s (every 2 s): reused 0.5-2, 2.5-4 and 4.5 to the end.
    assert gate.spans == [[0.5, 2.0], [2.5, 4.0], [4.5, 5.0]]
    assert (gate.inferred, gate.reused, gate.reasons["interval"]) == (3, 7, 2)


def detect(video: Path, out: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "workers.detect", "--video", str(video), "--camera", "cam",
                           "--out", str(out), "--model", str(MODEL), *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary: dict = json.loads((out / "summary.json").read_text())
    summary["progress"] = [json.loads(line) for line in proc.stdout.splitlines()]
    return summary


# An empty room, someone who stands a while, an empty room, two people who walk across: 40 s.
IDLE_AND_BUSY = (Actor("man", 0.2, 6.0, 16.0, sway=3.0), Actor("man", -0.05, 24.0, 36.0, walk=0.1, sway=0.0),
                 Actor("man", 0.95, 27.0, 39.0, walk=-0.08, sway=0.0))


@needs_ffmpeg
@pytest.mark.parametrize(("seconds", "regions"), [(40.0, False), (33.0, True)])
def test_gated_counts_equal_ungated_counts_on_an_idle_and_busy_recording(tmp_path, seconds, regions):
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing: `make test` fetches it")
    video = encode_scene(tmp_path / "cam" / "cam_20251114_100000.mp4", IDLE_AND_BUSY, seconds=seconds, fps=10,
                         noise=2.0)
    rois = tmp_path / "rois.toml"
    rois.write_text(LEFT_RIGHT_ROIS.format(camera="cam") if regions else "")
    ungated = detect(video, tmp_path / "off", "--motion-gate=off", f"--rois={rois if regions else ''}")
    gated = detect(video, tmp_path / "on", "--motion-gate=on", f"--rois={rois if regions else ''}")
    samples = round(seconds * 2)
    assert ungated["samples_inferred"] == samples and ungated["samples_reused"] == 0
    assert gated["samples_inferred"] + gated["samples_reused"] == samples == gated["frames_sampled"]
    assert gated["samples_reused"] >= samples // 3  # the empty room and the one who stands still
    assert gated["motion"]["enabled"] is True and gated["motion"]["reused_spans"]
    assert list(gated["regions"]) == (["left", "right"] if regions else ["frame"])
    for name, off in ungated["regions"].items():
        on = gated["regions"][name]
        assert on["peak_count"] == off["peak_count"] >= 1
        assert on["person_seconds"] == pytest.approx(off["person_seconds"], rel=0.02)
        assert on["occupied_seconds"] == pytest.approx(off["occupied_seconds"], rel=0.02)
    assert (gated["motion"]["cells_watched"] is not None) is regions
    # The progress lines say what became of every sample, in order, and the running totals.
    progress = [e for e in gated["progress"] if e["event"] == "progress"]
    assert progress and all(e["sample"] in ("inferred", "reused") for e in progress)
    decisions = "".join(e["samples"] for e in progress)
    assert len(decisions) == samples and decisions.count("i") == gated["samples_inferred"]
    assert decisions[0] == "i" and (progress[-1]["samples_inferred"], progress[-1]["samples_reused"]) == (
        gated["samples_inferred"], gated["samples_reused"])
    done = gated["progress"][-1]
    assert (done["samples_inferred"], done["samples_reused"]) == (gated["samples_inferred"], gated["samples_reused"])


@needs_ffmpeg
@pytest.mark.parametrize("max_reuse", [4.0, 6.0])
def test_someone_no_threshold_sees_is_found_within_the_forced_interval(tmp_path, max_reuse):
    # A threshold no change reaches: only the forced inferences see the person who comes in at 3.3 s.
    video = encode_scene(tmp_path / "cam" / "cam_20251114_100000.mp4", (Actor("man", 0.4, 3.3, 30.0),),
                         seconds=20, fps=10)
    summary = detect(video, tmp_path / "out", "--motion-gate=on", "--motion-threshold=255",
                     f"--motion-max-reuse={max_reuse}")
    rows = (tmp_path / "out" / "counts.csv").read_text().splitlines()[1:]
    first_seen = min(float(r.split(",")[0]) for r in rows if int(r.split(",")[-1]) > 0)
    assert 3.3 <= first_seen <= 3.3 + max_reuse
    assert summary["motion"]["inferred_because"]["motion"] == 0
    assert summary["samples_inferred"] == pytest.approx(20 / max_reuse, abs=1)


@needs_ffmpeg
def test_reused_samples_take_the_detections_of_the_inferred_sample_before_them_in_any_batch(tmp_path):
    video = encode_scene(tmp_path / "cam" / "cam_20251114_100000.mp4",
                         (Actor("man", 0.2, 2.0, 9.0, sway=0.0), Actor("man", -0.05, 5.0, 14.0, walk=0.1, sway=0.0)),
                         seconds=16, fps=10, noise=2.0)
    one = detect(video, tmp_path / "one", "--motion-gate=on", "--batch=1")
    three = detect(video, tmp_path / "three", "--motion-gate=on", "--batch=3")
    assert one["samples_reused"] > 0 and one["motion"]["reused_spans"] == three["motion"]["reused_spans"]
    assert (tmp_path / "one" / "counts.csv").read_text() == (tmp_path / "three" / "counts.csv").read_text()


def test_with_regions_drawn_only_motion_in_or_next_to_them_counts():
    from supervisor.protocol.rois import Region

    floor_left = Region("left", ((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)))
    gate = MotionGate(MotionSettings(enabled=True, threshold=6.0, max_reuse_seconds=100.0), regions=(floor_left,))
    gate.decide(0.0, thumbnail(grey()))
    clock = grey()
    clock[10:40, 860:950] = 250  # a burnt-in clock, top right: far from the region
    assert gate.decide(0.5, thumbnail(clock)) is False
    walker = grey()
    walker[300:520, 100:160] = 30  # someone on the left of the floor
    assert gate.decide(1.0, thumbnail(walker)) is True
    assert gate.as_dict()["cells_watched"] < 0.7 * 12 * 20  # about half the 12 x 20 cells, and a margin


def test_a_camera_counted_over_the_whole_frame_watches_every_cell():
    gate = MotionGate(MotionSettings(enabled=True, threshold=6.0, max_reuse_seconds=100.0))
    gate.decide(0.0, thumbnail(grey()))
    clock = grey()
    clock[10:40, 860:950] = 250
    assert gate.decide(0.5, thumbnail(clock)) is True and gate.as_dict()["cells_watched"] is None
