"""Decoding no more than the samples need: frames no other frame refers to are left undecoded, and the
clock, the sample times and the damage found are those of decoding every frame (ffprobe the peer)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from workers.decode import VideoSource
from workers.scenes import Actor, damage, encode_scene

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="the ffmpeg tools make and read the files")
ACTORS = (Actor("man", 0.1, 1.0, 8.0), Actor("man", 0.5, 3.0, 12.0, walk=0.02))


def probe_times(video: Path) -> tuple[set[float], str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "frame=pts_time,pict_type", "-of", "json", str(video)],
                         capture_output=True, text=True, check=True).stdout
    frames = json.loads(out)["frames"]
    return {round(float(f["pts_time"]), 4) for f in frames}, "".join(f["pict_type"] for f in frames)


def read(video: Path, skip: str, sample_fps: float = 2.0) -> tuple[list[float], VideoSource]:
    source = VideoSource(video)
    try:
        times = [s.t for s in source.samples(sample_fps, skip=skip, convert=False)]
    finally:
        source.close()
    return times, source


@pytest.mark.parametrize(("fps", "seconds"), [(25, 12.0), (15, 9.0)])
def test_skipping_b_frames_keeps_every_sample_a_real_frame_and_the_clock_unchanged(tmp_path, fps, seconds):
    video = encode_scene(tmp_path / "b.mp4", ACTORS, seconds=seconds, fps=fps, encoding="h264_bframes_mp4")
    truth, types = probe_times(video)
    assert "B" in types
    full, every = read(video, "off")
    skipped, fewer = read(video, "auto")
    assert fewer.report.skipping and not every.report.skipping
    assert fewer.report.frames_decoded < every.report.frames_decoded * 0.5  # two B-frames in three not decoded
    assert len(skipped) == len(full) == round(seconds * 2)
    assert all(round(t, 4) in truth for t in skipped)  # each sample is a frame ffprobe shows, at its time
    # Each sample is the first decoded frame of its half second: at most two frames later than decoding all.
    assert all(0 <= b - a <= 2.01 / fps for a, b in zip(full, skipped, strict=True))
    assert fewer.report.frame_interval == pytest.approx(every.report.frame_interval, abs=1e-4)
    assert fewer.report.end_time() == pytest.approx(every.report.end_time(), abs=1e-4)
    assert fewer.report.cover_end == pytest.approx(every.report.cover_end, abs=1e-4)
    assert not fewer.report.spans and not fewer.report.gaps and not fewer.report.discontinuities


def test_samples_one_or_two_frames_apart_decode_every_frame(tmp_path):
    video = encode_scene(tmp_path / "b.mp4", ACTORS, seconds=4, fps=10, encoding="h264_bframes_mp4")
    _, source = read(video, "auto", sample_fps=5.0)  # 2 frames a sample: nothing to leave out
    assert not source.report.skipping and source.report.frames_decoded == 40


@pytest.mark.parametrize("at", [0.45, 0.6])
def test_damage_is_found_the_same_with_b_frames_skipped(tmp_path, at):
    video = encode_scene(tmp_path / "b.mp4", ACTORS, seconds=20, fps=25, encoding="h264_bframes_mp4")
    damage(video, at=at, nbytes=60_000)
    _, every = read(video, "off")
    _, fewer = read(video, "auto")
    assert every.report.spans and fewer.report.spans
    assert fewer.report.damaged_seconds == pytest.approx(every.report.damaged_seconds, abs=0.5)
    assert fewer.report.spans[0].start == pytest.approx(every.report.spans[0].start, abs=0.5)
    lost_every = sum(s.frames_lost for s in every.report.spans)
    assert sum(s.frames_lost for s in fewer.report.spans) == pytest.approx(lost_every, rel=0.3, abs=5)


@pytest.mark.parametrize("keep", [25, 50])
def test_a_sparse_stretch_decodes_every_frame_so_no_time_goes_unseen(tmp_path, keep):
    # 25 fps with B-frames, thinned to one frame a second (two) between 4 s and 14 s, as a
    # motion-triggered recorder writes it: a skipped frame there would leave seconds without a frame.
    video = encode_scene(tmp_path / "b.mp4", ACTORS, seconds=18, fps=25, encoding="h264_bframes_mp4",
                         thin=(4.0, 14.0, keep))
    full, every = read(video, "off")
    skipped, fewer = read(video, "auto")
    assert fewer.report.skipping  # in the dense stretches
    assert fewer.report.gaps == every.report.gaps and not fewer.report.spans
    assert fewer.report.unobserved_seconds == pytest.approx(every.report.unobserved_seconds, abs=1e-6)
    assert len(skipped) == len(full)
    assert [a for a in skipped if 4.5 < a < 13.5] == [a for a in full if 4.5 < a < 13.5]  # sparse: the same frames
