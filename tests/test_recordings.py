"""The worker on real recordings made by the ffmpeg tool, against the truth of how each was made.

H.264 MP4, HEVC MKV, MPEG-TS, MJPEG AVI, MOV, variable frame rate, 29.97 fps, a display-matrix
rotation, people cut off by the frame's bottom edge, a file damaged in the middle. Every
recording is a scene whose actors' feet are known at every instant.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from supervisor.protocol.rois import Region, load_rois
from tests.fakes import REPO
from workers.scenes import (
    LEFT_RIGHT_ROIS,
    Actor,
    damage,
    encode_scene,
    expected_counts,
    expected_intervals,
    load_sprites,
)

MODEL = REPO / "models" / "person.pt"
SAMPLE_PERIOD = 0.5  # the worker's default 2 samples a second

# End to end, with real processes (a real detector, a wheel build, a booted systemd): minutes on a busy
# 2-core machine, not the two a unit test gets.
pytestmark = pytest.mark.timeout(900)


# Someone on the left from 0.5 s to 3.5 s, someone on the right from 2 s to 5 s: both at once in between.
# (The photo's man: the model finds him once in every frame, wherever he stands.)
ACTORS = (Actor("man", 0.10, 0.5, 3.5), Actor("man", 0.60, 2.0, 5.0))
# Both cut off by the bottom edge: their boxes end on the frame's last row.
CUT_ACTORS = (Actor("man", 0.10, 0.5, 3.5, cut=0.3), Actor("man", 0.60, 2.0, 5.0, cut=0.3))
# One stays a long time, across the damaged stretch.
LONG_ACTORS = (Actor("man", 0.10, 1.0, 19.0), Actor("man", 0.60, 2.0, 7.0))
BOTTOM_ROIS = """\
[cameras.cam]
[[cameras.cam.regions]]
name = "floor_edge"
points = [[0.0, 0.8], [1.0, 0.8], [1.0, 1.0], [0.0, 1.0]]
"""


@dataclass(frozen=True)
class Recording:
    name: str
    encoding: str
    actors: tuple[Actor, ...] = ACTORS
    seconds: float = 6.0
    fps: float = 10
    rotate: int = 0
    thin: tuple[float, float, int] | None = None
    rois: str = LEFT_RIGHT_ROIS
    damaged: tuple[float, float] | None = None  # seconds of the file overwritten with garbage


RECORDINGS = [
    Recording("h264_mp4", "h264_mp4", fps=25),
    Recording("hevc_mkv", "hevc_mkv", fps=29.97),
    Recording("mpeg_ts", "h264_ts"),
    Recording("mjpeg_avi", "mjpeg_avi"),
    Recording("h264_mov", "h264_mov"),
    Recording("vfr_mp4", "h264_mp4", fps=25, thin=(1.5, 4.5, 6)),
    Recording("rotated_mp4", "h264_mp4", rotate=90),
    Recording("cut_off_whole_frame", "h264_mp4", actors=CUT_ACTORS, rois=""),
    Recording("cut_off_edge_region", "h264_mp4", actors=CUT_ACTORS, rois=BOTTOM_ROIS),
    Recording("damaged_mp4", "h264_mp4", actors=LONG_ACTORS, seconds=20, damaged=(9.0, 10.0)),
    Recording("damaged_ts", "h264_ts", actors=LONG_ACTORS, seconds=20, damaged=(9.0, 10.0)),
]


@dataclass
class Result:
    recording: Recording
    video: Path
    out: Path
    proc: subprocess.CompletedProcess[str]
    regions: tuple[Region, ...] = field(default_factory=tuple)

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.out / "summary.json").read_text())

    def rows(self) -> list[dict[str, str]]:
        return list(csv.DictReader((self.out / "counts.csv").read_text().splitlines()))

    def intervals(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.out / "events.jsonl").read_text().splitlines()]


def _damage_seconds(video: Path, start: float, end: float) -> None:
    """Overwrite the packets of [start, end) seconds with random bytes."""
    import av

    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        positions = [(float(p.pts * stream.time_base), p.pos) for p in c.demux(stream)
                     if p.pts is not None and p.pos is not None and p.pos >= 0]
    inside = [pos for t, pos in positions if start <= t < end]
    first, last = min(inside), max(inside)
    damage(video, at=first / video.stat().st_size, nbytes=last - first + 1)


def _without(intervals: list[tuple[float, float]], gaps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Truth as far as it can be seen: an interval crossing a damaged stretch is two, one on each side."""
    out = []
    for start, end in intervals:
        for gap_start, gap_end in gaps:
            if start < gap_start and gap_end < end:
                out.append((start, gap_start))
                start = gap_end
        out.append((start, end))
    return out


def _run_worker(video: Path, out: Path, rois: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "workers.detect", f"--video={video}", "--camera=cam", f"--out={out}",
            f"--model={MODEL}", *extra]
    if rois:
        args.append(f"--rois={rois}")
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=600)


def _make_and_run(rec: Recording, root: Path) -> Result:
    folder = root / rec.name
    suffix = {"h264_mp4": ".mp4", "hevc_mkv": ".mkv", "h264_ts": ".ts", "mjpeg_avi": ".avi",
              "h264_mov": ".mov"}[rec.encoding]
    video = encode_scene(folder / "cam" / f"cam_20251114_100000{suffix}", rec.actors, seconds=rec.seconds,
                         fps=rec.fps, encoding=rec.encoding, rotate=rec.rotate, thin=rec.thin)
    if rec.damaged:
        _damage_seconds(video, *rec.damaged)
    regions: tuple[Region, ...] = load_rois(None).regions_for("cam")
    rois = ""
    if rec.rois:
        (folder / "rois.toml").write_text(rec.rois.format(camera="cam"))
        rois = str(folder / "rois.toml")
        regions = load_rois(Path(rois)).regions_for("cam")
    proc = _run_worker(video, folder / "out", rois)
    return Result(rec, video, folder / "out", proc, regions)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing: `make test` fetches it (python -m workers.fetch_model)")
    if shutil.which("ffmpeg") is None:
        pytest.fail("the ffmpeg tool is missing: `make test` installs it (Debian: ffmpeg)")
    root = tmp_path_factory.mktemp("recordings")
    # Two workers at a time: each runs inference on one core.
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda r: _make_and_run(r, root), RECORDINGS))
    return {r.recording.name: r for r in done}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", [r.name for r in RECORDINGS])
def test_counts_and_occupancy_match_how_the_recording_was_made(results: dict[str, Result], name: str) -> None:
    res = results[name]
    rec = res.recording
    assert res.proc.returncode == 0, res.proc.stderr
    sprites = load_sprites()
    rows = res.rows()
    summary = res.summary
    damaged = [(s["start"], s["end"]) for s in summary["damage"]["spans"]]

    def in_damage(t: float) -> bool:
        return any(a - SAMPLE_PERIOD <= t <= b + SAMPLE_PERIOD for a, b in damaged)

    # Samples are one per half second of presentation time, whatever the frame rate: each is the first
    # frame of its half second (in the thinned stretch of a variable-rate file, frames are further apart).
    times = [float(row["video_time_s"]) for row in rows]
    spacing = (rec.thin[2] if rec.thin else 1) / rec.fps
    for t in times:
        assert min(abs(t - k * SAMPLE_PERIOD) for k in range(int(rec.seconds / SAMPLE_PERIOD) + 1)) < spacing + 1e-6
    names = [r.name for r in res.regions]
    mismatches = []
    for row, t in zip(rows, times, strict=True):
        want = expected_counts(rec.actors, res.regions, t, sprites)
        got = [int(row[n]) for n in names]
        if got != want and not in_damage(t):
            mismatches.append((t, got, want))
    assert len(mismatches) <= 1, mismatches  # a real model on real photos: one miss allowed
    for region in res.regions:
        truth = _without(expected_intervals(rec.actors, region, seconds=rec.seconds, fps=rec.fps, sprites=sprites),
                         damaged)
        got = [(iv["start"], iv["end"]) for iv in res.intervals() if iv["region"] == region.name]
        assert len(got) == len(truth), (region.name, got, truth)
        for (gs, ge), (ts, te) in zip(got, truth, strict=True):
            assert abs(gs - ts) <= SAMPLE_PERIOD + 1e-6 and abs(ge - te) <= SAMPLE_PERIOD + 1e-6, (got, truth)
        peak = max((expected_counts(rec.actors, [region], i / rec.fps, sprites)[0]
                    for i in range(round(rec.seconds * rec.fps))), default=0)
        assert summary["regions"][region.name]["peak_count"] == peak, region.name
    if not rec.damaged:
        assert summary["damage"] == {"damaged": False, "seconds": 0, "decode_errors": 0, "spans": []}
        assert summary["processed_seconds"] == pytest.approx(rec.seconds, abs=0.2)


def test_a_rotated_recording_is_counted_upright(results: dict[str, Result]) -> None:
    info = results["rotated_mp4"].summary["video_info"]
    assert (info["width"], info["height"], info["rotation"]) == (960, 540, 90)


def test_people_cut_off_by_the_bottom_edge_are_counted(results: dict[str, Result]) -> None:
    for name in ("cut_off_whole_frame", "cut_off_edge_region"):
        regions = results[name].summary["regions"]
        assert [r["peak_count"] for r in regions.values()] == [2], name
        assert next(iter(regions.values()))["person_seconds"] == pytest.approx(6.0, abs=1.0)


def test_a_damaged_recording_is_read_to_its_end_with_the_damage_reported(results: dict[str, Result]) -> None:
    res = results["damaged_mp4"]
    summary = res.summary
    damage_ = summary["damage"]
    assert damage_["damaged"] is True and damage_["decode_errors"] > 0
    [span] = damage_["spans"]
    # The garbage covers 9-10 s; decoding resumes at the next key frame (one every 2 s).
    assert 8.5 <= span["start"] <= 9.5 and 10.0 <= span["end"] <= 12.5 and span["frames_lost"] >= 10
    readable = res.recording.seconds - span["seconds"]
    sampled_after = [float(r["video_time_s"]) for r in res.rows() if float(r["video_time_s"]) > span["end"]]
    assert sampled_after and max(sampled_after) >= res.recording.seconds - 1.0  # read through to the end
    covered = len(res.rows()) * SAMPLE_PERIOD
    assert covered >= 0.95 * readable
    done = json.loads(res.proc.stdout.strip().splitlines()[-1])
    assert done["event"] == "done" and done["damaged_seconds"] == damage_["seconds"] > 0


def test_sample_times_come_from_timestamps_on_a_variable_frame_rate_file(results: dict[str, Result]) -> None:
    summary = results["vfr_mp4"].summary
    # The container's average rate is well under the 25 fps the file was made at; times are still true.
    assert summary["video_info"]["fps"] < 20
    assert summary["processed_seconds"] == pytest.approx(6.0, abs=0.2)


def test_an_mp4_whose_recorder_was_killed_exits_65_with_one_line(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("the ffmpeg tool is missing: `make test` installs it (Debian: ffmpeg)")
    video = tmp_path / "cam" / "cam_20251114_100000.mp4"
    video.parent.mkdir(parents=True)
    # A recorder writing a plain MP4 in real time, killed before it could write the index.
    recorder = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                                 "testsrc=size=640x360:rate=25", "-t", "60", "-c:v", "libx264", "-preset",
                                 "ultrafast", str(video)], stdin=subprocess.DEVNULL)
    try:
        while not video.exists() or video.stat().st_size < 20_000:
            assert recorder.poll() is None, "the recorder ended early"
            subprocess.run(["sleep", "0.1"], check=True)
    finally:
        recorder.kill()
        recorder.wait()
    proc = subprocess.run([sys.executable, "-m", "workers.detect", f"--video={video}", "--camera=cam",
                           f"--out={tmp_path / 'out'}", f"--model={tmp_path / 'never-loaded.pt'}"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 65, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"{video}: ") and "index" in line
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.parametrize("name", ["h264_mp4", "vfr_mp4", "cut_off_edge_region"])
def test_the_torch_engine_gives_the_same_counts_as_the_cpu_engine(results: dict[str, Result], name: str,
                                                                   tmp_path: Path) -> None:
    res = results[name]
    assert json.loads((res.out / "summary.json").read_text())["engine"]["name"] == "openvino"
    rois = str(res.out.parent / "rois.toml") if res.recording.rois else ""
    proc = _run_worker(res.video, tmp_path / "torch", rois, "--engine=torch")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "torch" / "counts.csv").read_text() == (res.out / "counts.csv").read_text()
    assert (tmp_path / "torch" / "events.jsonl").read_text() == (res.out / "events.jsonl").read_text()


def test_a_damaged_ts_keeps_true_times_after_the_damage(results: dict[str, Result]) -> None:
    res = results["damaged_ts"]
    damage_ = res.summary["damage"]
    assert damage_["damaged"] and len(damage_["spans"]) == 1
    [span] = damage_["spans"]
    # The garbage covers the packets stamped 9-10 s; a TS muxer writes them up to a second or two ahead of
    # their time, and the demuxer drops, silently, whatever they cut through: a gap in the timestamps.
    assert 6.0 <= span["start"] <= 10.0 and span["end"] <= 12.5 and 0.5 <= span["seconds"] <= 6.0
    assert span["reason"].startswith("frames missing")
    after = [float(r["video_time_s"]) for r in res.rows() if float(r["video_time_s"]) > span["end"]]
    # Every sample after the damage sits on its true half second: no shift by the frames lost.
    assert after and all(abs(t * 2 - round(t * 2)) < 0.05 for t in after)
    assert max(after) >= res.recording.seconds - 1.0


def test_a_file_whose_frames_end_before_its_stated_duration_is_reported_damaged(tmp_path: Path) -> None:
    whole = encode_scene(tmp_path / "whole" / "cam_20251114_100000.mkv", (Actor("man", 0.1, 1, 19),), seconds=20,
                         encoding="hevc_mkv")
    cut = tmp_path / "cam" / "cam_20251114_100000.mkv"
    cut.parent.mkdir()
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])  # copied off a camera's card that was pulled too soon
    proc = _run_worker(cut, tmp_path / "out", "")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    [span] = summary["damage"]["spans"]
    assert span["reason"] == "the frames end before the container's duration" and span["end"] == 20.0
    assert 5.0 < span["start"] < 15.0 and summary["processed_seconds"] == pytest.approx(span["start"], abs=0.2)
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    assert done["damaged_seconds"] == span["seconds"] > 2.0
