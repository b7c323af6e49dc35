"""The worker on recordings made the way recorders and phones make them, against truth and a peer.

Sideways phone video (display rotation either way), MPEG-TS segments whose timestamps
restart or leap, motion-triggered frame rates, an audio track longer than the video,
files that end mid-interval, and files that are not recordings at all. Each recording
is made with the ffmpeg tool from a scene whose truth is known at every instant, and
each case has a second variant (another length, rate or position) held to the same
expectations, so no constant fits one file.

Every result is also checked against a peer nobody here wrote: ffprobe's own frame
times (the samples are real frames, the discontinuities real jumps, nothing else
jumps), and ultralytics' own `predict` on the same frames as the ffmpeg tool decodes
and autorotates them, counting box bottom-centres in the same polygon with OpenCV's
point test.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from supervisor.protocol.rois import Region, load_rois
from tests.fakes import REPO
from workers.scenes import (
    FRAME,
    LEFT_RIGHT_ROIS,
    Actor,
    encode_scene,
    expected_counts,
    expected_intervals,
    load_sprites,
)

MODEL = REPO / "models" / "person.pt"
SAMPLE_PERIOD = 0.5
FF = ("ffmpeg", "-hide_banner", "-loglevel", "error", "-y")


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]  # writes the recording into a folder, returns its path
    actors: tuple[Actor, ...]  # truth, on the recording's one clock
    seconds: float  # of video
    fps: float  # the rate the scene was rendered at (truth's resolution)
    discontinuities: tuple[str, ...] = ()  # their kinds, in order
    sample_period: float = SAMPLE_PERIOD  # the longest time between samples anywhere in the file


@dataclass
class Run:
    case: Case
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


def _shifted(actors: tuple[Actor, ...], by: float) -> tuple[Actor, ...]:
    return tuple(Actor(a.sprite, a.x, a.enter + by, a.leave + by, a.cut) for a in actors)


def _segments(first: tuple[Actor, ...], second: tuple[Actor, ...], lengths: tuple[float, float], fps: float,
              jump: float | None) -> Callable[[Path], Path]:
    """Two TS segments joined byte for byte (`cat`, as recorders and HLS parts make them): the second's
    timestamps start again from where the first's did, or `jump` seconds later than its end."""
    def make(folder: Path) -> Path:
        a = encode_scene(folder / "a.ts", first, seconds=lengths[0], fps=fps, encoding="h264_ts")
        extra = ("-output_ts_offset", f"{lengths[0] + jump:g}") if jump is not None else ()
        b = encode_scene(folder / "b.ts", _shifted(second, -lengths[0]), seconds=lengths[1], fps=fps,
                         encoding="h264_ts", extra=extra)
        video = folder / "cam" / "cam_20251114_100000.ts"
        video.parent.mkdir(parents=True)
        video.write_bytes(a.read_bytes() + b.read_bytes())
        return video
    return make


def _scene(suffix: str, encoding: str, actors: tuple[Actor, ...], seconds: float, fps: float,
           **kw: Any) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        return encode_scene(folder / "cam" / f"cam_20251114_100000{suffix}", actors, seconds=seconds, fps=fps,
                            encoding=encoding, **kw)
    return make


def _with_longer_audio(encoding: str, suffix: str, actors: tuple[Actor, ...], seconds: float, fps: float,
                       longer: float) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        silent = encode_scene(folder / f"video{suffix}", actors, seconds=seconds, fps=fps, encoding=encoding)
        video = folder / "cam" / f"cam_20251114_100000{suffix}"
        video.parent.mkdir(parents=True)
        subprocess.run([*FF, "-i", str(silent), "-f", "lavfi", "-i", f"sine=duration={seconds + longer:g}",
                        "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(video)],
                       check=True, capture_output=True)
        return video
    return make


THREE = (Actor("man", 0.05, 0.0, 99.0), Actor("man", 0.30, 0.0, 99.0), Actor("man", 0.62, 0.0, 99.0))
COMING_AND_GOING = (Actor("man", 0.10, 0.5, 3.5), Actor("man", 0.35, 1.0, 5.5), Actor("man", 0.60, 2.0, 5.0))
LATER_CROWD = (Actor("man", 0.08, 11.0, 19.0), Actor("man", 0.33, 12.0, 18.0), Actor("man", 0.65, 10.5, 20.0))
BOTH_HALVES = (Actor("man", 0.10, 1.0, 4.5), Actor("man", 0.55, 7.0, 13.0), Actor("man", 0.30, 8.0, 12.0))

CASES = [
    Case("rotated_minus_90", _scene(".mp4", "h264_mp4", COMING_AND_GOING, 6, 10, rotate=-90), COMING_AND_GOING, 6, 10),
    Case("rotated_plus_90", _scene(".mp4", "h264_mp4", _shifted(COMING_AND_GOING, 1.0), 8, 15, rotate=90),
         _shifted(COMING_AND_GOING, 1.0), 8, 15),
    Case("ts_restart", _segments((), LATER_CROWD, (10, 10), 10, None), LATER_CROWD, 20, 10, ("restart",)),
    Case("ts_restart_uneven", _segments(BOTH_HALVES, BOTH_HALVES, (6, 8), 15, None), BOTH_HALVES, 14, 15,
         ("restart",)),
    Case("ts_jump_100", _segments((), LATER_CROWD, (10, 10), 10, 100.0), LATER_CROWD, 20, 10, ("jump",)),
    Case("ts_jump_50", _segments(BOTH_HALVES, BOTH_HALVES, (8, 6), 15, 50.0), BOTH_HALVES, 14, 15, ("jump",)),
    # 25 fps, then the recorder writes one frame a second (or every two) while nothing moves, then 25 again.
    Case("sparse_1fps", _scene(".mp4", "h264_mp4", THREE, 20, 25, thin=(5.0, 15.0, 25)), THREE, 20, 25,
         sample_period=1.0),
    Case("sparse_half_fps", _scene(".mkv", "hevc_mkv", (*THREE[:2], Actor("man", 0.62, 0.0, 16.0)), 18, 25,
                                   thin=(3.0, 13.0, 50)),
         (*THREE[:2], Actor("man", 0.62, 0.0, 16.0)), 18, 25, sample_period=2.0),
    Case("mkv_audio_6s_longer", _with_longer_audio("hevc_mkv", ".mkv", COMING_AND_GOING, 6, 10, 6.0),
         COMING_AND_GOING, 6, 10),
    Case("mkv_audio_3s_longer", _with_longer_audio("hevc_mkv", ".mkv", _shifted(COMING_AND_GOING, 1.5), 9, 12, 3.0),
         _shifted(COMING_AND_GOING, 1.5), 9, 12),
    Case("ends_mid_visit", _scene(".mp4", "h264_mp4", (Actor("man", 0.2, 1.0, 99.0),), 5.0, 25),
         (Actor("man", 0.2, 1.0, 99.0),), 5.0, 25),
    Case("ends_mid_visit_30fps", _scene(".mp4", "h264_mp4", (Actor("man", 0.6, 2.5, 99.0),), 7.3, 30),
         (Actor("man", 0.6, 2.5, 99.0),), 7.3, 30),
]


def _run_worker(video: Path, out: Path, rois: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.detect", f"--video={video}", "--camera=cam",
                           f"--out={out}", f"--model={MODEL}", f"--rois={rois}", *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def _make_and_run(case: Case, root: Path) -> Run:
    folder = root / case.name
    folder.mkdir()
    video = case.make(folder)
    rois = folder / "rois.toml"
    rois.write_text(LEFT_RIGHT_ROIS.format(camera="cam"))
    proc = _run_worker(video, folder / "out", rois)
    return Run(case, video, folder / "out", proc, load_rois(rois).regions_for("cam"))


def _need_tools() -> None:
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing: `make test` fetches it (python -m workers.fetch_model)")
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            pytest.fail(f"the {tool} tool is missing: `make test` installs it (Debian: ffmpeg)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    _need_tools()
    root = tmp_path_factory.mktemp("formats")
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda c: _make_and_run(c, root), CASES))
    return {r.case.name: r for r in done}


# The peer: ffprobe's frames, the ffmpeg tool's decoding, ultralytics' own predict, OpenCV's polygon test.

def ffprobe_times(video: Path) -> list[float]:
    """Every video frame's presentation time, in display order, from the stream's start."""
    start = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=start_time",
                            "-of", "csv=p=0", str(video)], capture_output=True, text=True, check=True).stdout
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
                          "-of", "csv=p=0", str(video)], capture_output=True, text=True, check=True).stdout
    origin = float(start.split()[0].split(",")[0])  # a TS lists the stream once per program too
    return [float(line.split(",")[0]) - origin for line in out.split() if line.strip()]


def ffmpeg_frames(video: Path, indices: list[int], size: tuple[int, int] = FRAME) -> list[np.ndarray]:
    """The frames at these display-order indices as the ffmpeg tool decodes them, autorotated upright."""
    select = "+".join(f"eq(n\\,{i})" for i in indices)
    raw = subprocess.run([*FF, "-i", str(video), "-vf", f"select={select}", "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "bgr24", "-"], capture_output=True, check=True).stdout
    w, h = size
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    assert len(frames) == len(indices), f"ffmpeg gave {len(frames)} frames for {len(indices)}"
    return list(frames)


_PEER: Any = None


def peer_counts(frames: list[np.ndarray], regions: tuple[Region, ...]) -> list[list[int]]:
    """ultralytics' own predict (the .pt model, torch), people's box bottom-centres in each polygon."""
    global _PEER
    import cv2

    if _PEER is None:
        os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_VERBOSE="False")
        from ultralytics import YOLO

        _PEER = YOLO(str(MODEL))
    out = []
    for result in _PEER.predict(frames, imgsz=640, conf=0.25, agnostic_nms=True, device="cpu", verbose=False):
        h, w = result.orig_shape
        feet = [((x1 + x2) / 2 / w, y2 / h) for x1, _, x2, y2 in result.boxes.xyxy.tolist()]
        row = []
        for region in regions:
            polygon = np.array(region.points, dtype=np.float32).reshape(-1, 1, 2)
            row.append(sum(cv2.pointPolygonTest(polygon, (float(x), float(y)), False) >= 0 for x, y in feet))
        out.append(row)
    return out


def one_clock(stamps: list[float], discontinuities: list[dict[str, Any]]) -> list[float]:
    """ffprobe's times on one clock, joined where the worker said the file's timestamps jumped; checks
    that each such join is a real jump between two adjacent frames, and that nothing else jumps."""
    joins = {(round(d["stamp_before"], 2), round(d["stamp_after"], 2)) for d in discontinuities}
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    typical = float(np.median(steps))
    out = [stamps[0]]
    found = set()
    for i, step in enumerate(steps):
        pair = (round(stamps[i], 2), round(stamps[i + 1], 2))
        if pair in joins:
            found.add(pair)
            out.append(out[-1] + typical)
        else:
            assert 0 < step <= 2.5, f"ffprobe shows a jump the worker did not report: {pair}"
            out.append(out[-1] + step)
    assert found == joins, f"reported joins that are no jump in ffprobe's frames: {joins - found}"
    return out


def truth_person_seconds(case: Case, region: Region, sprites: dict[str, np.ndarray]) -> float:
    frames = round(case.seconds * case.fps)
    return sum(expected_counts(case.actors, [region], i / case.fps, sprites)[0] for i in range(frames)) / case.fps


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_counts_times_and_clock_match_the_truth_and_the_peer(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    case = run.case
    assert run.proc.returncode == 0, run.proc.stderr
    summary = run.summary
    sprites = load_sprites()
    # Nothing was lost, so nothing is damage: not a restart, a leap, sparse frames or a longer audio track.
    assert summary["damage"] == {"damaged": False, "seconds": 0, "decode_errors": 0, "spans": []}
    assert [d["kind"] for d in summary["clock"]["discontinuities"]] == list(case.discontinuities)
    assert summary["clock"]["unobserved_seconds"] == 0
    assert summary["processed_seconds"] == pytest.approx(case.seconds, abs=0.1)
    rows = run.rows()
    names = [r.name for r in run.regions]
    times = [float(row["video_time_s"]) for row in rows]
    got = [[int(row[n]) for n in names] for row in rows]

    # Truth: the people each sample shows, when each region was occupied, person-seconds and peaks.
    wrong = [(t, g) for t, g in zip(times, got, strict=True)
             if g != expected_counts(case.actors, run.regions, t, sprites)]
    assert len(wrong) <= 1, wrong
    intervals = run.intervals()
    for region in run.regions:
        truth = expected_intervals(case.actors, region, seconds=case.seconds, fps=case.fps, sprites=sprites)
        mine = [(iv["start"], iv["end"]) for iv in intervals if iv["region"] == region.name]
        assert len(mine) == len(truth), (region.name, mine, truth)
        for (gs, ge), (ts, te) in zip(mine, truth, strict=True):
            assert abs(gs - ts) <= case.sample_period + 1e-6 and abs(ge - te) <= case.sample_period + 1e-6, \
                (region.name, mine, truth)
            assert ge <= summary["processed_seconds"] + 1e-6  # never past the video's end
        totals = summary["regions"][region.name]
        want = truth_person_seconds(case, region, sprites)
        assert totals["person_seconds"] == pytest.approx(want, rel=0.05, abs=0.05), region.name
        peak = max((expected_counts(case.actors, [region], i / case.fps, sprites)[0]
                    for i in range(round(case.seconds * case.fps))), default=0)
        assert totals["peak_count"] == peak, region.name

    # The peer: the samples are ffprobe's frames on one clock, and ultralytics counts the same people there.
    clock = one_clock(ffprobe_times(run.video), summary["clock"]["discontinuities"])
    assert len(clock) == summary["frames_decoded"]
    indices = []
    for t in times:
        k = int(np.argmin([abs(c - t) for c in clock]))
        assert abs(clock[k] - t) < 1e-3, f"sample at {t} s is no frame of ffprobe's ({clock[k]})"
        indices.append(k)
    peer = peer_counts(ffmpeg_frames(run.video, indices), run.regions)
    disagree = [(t, g, p) for t, g, p in zip(times, got, peer, strict=True) if g != p]
    assert len(disagree) <= 1, disagree
    # Each sample stands for the time to the next one (ffprobe's times), the last to the video's end.
    ends = [*times[1:], clock[-1] + float(np.median(np.diff(clock)))]
    for i, region in enumerate(run.regions):
        peer_seconds = sum(p[i] * (end - t) for p, t, end in zip(peer, times, ends, strict=True))
        assert summary["regions"][region.name]["person_seconds"] == pytest.approx(peer_seconds, rel=0.05, abs=0.05)


@pytest.mark.parametrize("name", ["rotated_minus_90", "rotated_plus_90"])
def test_a_sideways_recording_is_turned_as_ffmpeg_turns_it(runs: dict[str, Run], name: str) -> None:
    from workers.decode import VideoSource

    run = runs[name]
    info = run.summary["video_info"]
    assert (info["width"], info["height"]) == FRAME and info["rotation"] in (90, 270)
    source = VideoSource(run.video)
    try:
        sample = next(iter(source.samples(2.0)))
    finally:
        source.close()
    [reference] = ffmpeg_frames(run.video, [0])
    difference = np.abs(sample.image.astype(int) - reference.astype(int)).mean()
    assert difference < 2.0, f"the upright frame differs from ffmpeg's autorotated one by {difference:.1f} a pixel"


def test_a_longer_audio_track_is_no_damage_and_the_video_ends_where_its_frames_do(runs: dict[str, Run]) -> None:
    for name in ("mkv_audio_6s_longer", "mkv_audio_3s_longer"):
        summary = runs[name].summary
        assert summary["video_info"]["duration_seconds"] > runs[name].case.seconds + 2  # the container says so
        assert summary["processed_seconds"] == pytest.approx(runs[name].case.seconds, abs=0.1)
        done = json.loads(runs[name].proc.stdout.strip().splitlines()[-1])
        assert done["damaged_seconds"] == 0 and done["video_seconds"] == summary["processed_seconds"]


@pytest.mark.parametrize(("name", "make"), [
    ("jpeg_named_mp4", lambda d: _still(d, "frame.jpg", "cam_20251114_100000.mp4")),
    ("png_named_mkv", lambda d: _still(d, "frame.png", "cam_20251114_100000.mkv")),
    ("one_frame_mp4", lambda d: encode_scene(d / "cam" / "cam_20251114_100000.mp4", (), seconds=0.1, fps=10)),
])
def test_a_still_picture_is_refused_as_not_a_recording(tmp_path: Path, name: str, make: Callable[[Path], Path]) -> None:
    _need_tools()
    video = make(tmp_path)
    rois = tmp_path / "rois.toml"
    rois.write_text(LEFT_RIGHT_ROIS.format(camera="cam"))
    proc = _run_worker(video, tmp_path / "out", rois)
    assert proc.returncode == 65, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"{video}: ") and "a single image, not a recording" in line, line
    assert not (tmp_path / "out" / "summary.json").exists()


def _still(folder: Path, picture: str, name: str) -> Path:
    source = folder / picture
    subprocess.run([*FF, "-f", "lavfi", "-i", f"testsrc=size={FRAME[0]}x{FRAME[1]}:rate=1", "-frames:v", "1",
                    str(source)], check=True, capture_output=True)
    video = folder / "cam" / name
    video.parent.mkdir(parents=True)
    shutil.copyfile(source, video)
    return video


def test_recording_times_from_start_end_names_and_from_mtime_reach_every_result(tmp_path: Path) -> None:
    """Through the whole program, run once: `--list`, the order of work, and every result's times."""
    import time
    from datetime import datetime

    from tests.fakes import cli, cli_env

    _need_tools()
    videos = tmp_path / "videos"
    someone = (Actor("man", 0.3, 0.0, 99.0),)
    made = {
        # Named by start and end: the start counts, the end checks the duration (6 s, as named).
        "span": encode_scene(videos / "camera_37" / "2025-11-14" / "14-30-00_14-30-06.mp4", someone, seconds=6),
        "dahua": encode_scene(videos / "dahua" / "2025-11-14" / "001" / "dav" / "14" /
                              "14.27.00-14.27.04[M][0@0][0].mp4", someone, seconds=4),
        # A 15-minute name on a 4-second file: used, with a warning.
        "wrong_end": encode_scene(videos / "camera_38" / "20251114" / "143000-144500.mp4", someone, seconds=4),
        # No time in the name: closed by the recorder at 14:25:06, 6 s long, so it began at 14:25:00.
        "clip": encode_scene(videos / "camera_9" / "clip_0001.mp4", someone, seconds=6),
    }
    for video in made.values():  # finished recordings, not ones a recorder may still be writing
        os.utime(video, (time.time() - 3600, time.time() - 3600))
    closed = datetime(2025, 11, 14, 14, 25, 6).timestamp()
    os.utime(made["clip"], (closed, closed))
    out, logs = tmp_path / "out", tmp_path / "logs"
    common = ("--videos-dir", str(videos), "--state-db", str(tmp_path / "jobs.db"), "--log-dir", str(logs))
    listed = subprocess.run(cli(*common, "--list"), capture_output=True, text=True, env=cli_env(), cwd=REPO,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[-1]: line for line in listed.stdout.splitlines() if line.startswith("  ")}
    assert "2025-11-14 14:30:00 " in lines[str(made["span"])]
    assert "2025-11-14 14:27:00 " in lines[str(made["dahua"])]
    assert "2025-11-14 14:30:00 " in lines[str(made["wrong_end"])]
    assert "2025-11-14 14:25:06*" in lines[str(made["clip"])]  # the mtime, marked as no time of its name
    run = subprocess.run(cli(*common, "--output-dir", str(out)), capture_output=True, text=True, env=cli_env(),
                         cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr

    def result(name: str) -> tuple[dict[str, Any], list[str]]:
        folder = out / made[name].relative_to(videos)
        counts = (folder / "counts.csv").read_text().splitlines()
        return json.loads((folder / "summary.json").read_text())["recording_time"], counts

    span, counts = result("span")
    assert (span["start"], span["named_end"], span["estimated"], span["warning"]) == (
        "2025-11-14T14:30:00", "2025-11-14T14:30:06", False, None)
    assert counts[0].startswith("video_time_s,recorded_time,") and counts[1].split(",")[1] == "2025-11-14T14:30:00.000"
    dahua, _ = result("dahua")
    assert (dahua["start"], dahua["named_end"]) == ("2025-11-14T14:27:00", "2025-11-14T14:27:04")
    wrong, _ = result("wrong_end")
    assert wrong["start"] == "2025-11-14T14:30:00" and "900 s" in wrong["warning"]
    journal = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    [warned] = [e for e in journal if e["event"] == "worker_warning"]
    assert warned["level"] == "warning" and warned["message"] == wrong["warning"]
    assert warned["video"] == str(made["wrong_end"])
    clip, counts = result("clip")
    assert (clip["start"], clip["estimated"]) == ("2025-11-14T14:25:00", True)
    assert counts[0].startswith("video_time_s,recorded_time_estimated,")
    assert counts[1].split(",")[1] == "2025-11-14T14:25:00.000"


def test_a_restart_right_after_a_segment_cut_short_still_reads_the_next_segment(tmp_path: Path) -> None:
    """A recorder killed mid-segment, then a new segment appended: the join is damaged and restarts."""
    from workers.decode import VideoSource

    _need_tools()
    segment = tmp_path / "segment.ts"
    subprocess.run([*FF, "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "5", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "50", "-f", "mpegts", str(segment)],
                   check=True, capture_output=True)
    data = segment.read_bytes()
    joined = tmp_path / "joined.ts"
    joined.write_bytes(data[: int(len(data) * 0.8) // 188 * 188 + 100] + data)  # cut inside a TS packet
    source = VideoSource(joined)
    try:
        times = [s.t for s in source.samples(2.0)]
    finally:
        source.close()
    report = source.report
    [join] = report.discontinuities
    assert join.stamp_after < join.stamp_before and 3.0 < join.at < 5.0
    # The whole second segment, on one clock that never goes back.
    assert times == sorted(times) and report.end_time() == pytest.approx(join.at + 5.0 - join.stamp_after, abs=0.1)
    assert report.frames_decoded >= 125 + 0.7 * 125


def _ts(path: Path, *args: str, seconds: float = 6.0) -> Path:
    subprocess.run([*FF, "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", f"{seconds:g}", *args,
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "50", "-f", "mpegts",
                    str(path)], check=True, capture_output=True)
    return path


def _read(video: Path) -> Any:
    from workers.decode import VideoSource

    source = VideoSource(video)
    try:
        list(source.samples(2.0))
    finally:
        source.close()
    return source.report


def test_a_constant_bitrate_ts_that_drops_frames_is_not_damaged(tmp_path: Path) -> None:
    """Null packets pad a constant-bitrate TS between frames: their bytes are no sign of data lost."""
    _need_tools()
    report = _read(_ts(tmp_path / "cbr.ts", "-vf", "select='not(between(t,2,2.2))'", "-fps_mode", "vfr",
                       "-muxrate", "2000000"))
    assert report.spans == [] and report.end_time() == pytest.approx(6.0, abs=0.05)


def test_a_restart_to_earlier_times_than_the_first_is_not_a_file_cut_short(tmp_path: Path) -> None:
    """A camera counting from power-on reboots mid-file: its second part is stamped before its first."""
    _need_tools()
    late = _ts(tmp_path / "late.ts", "-output_ts_offset", "100")
    early = _ts(tmp_path / "early.ts", "-output_ts_offset", "50")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(late.read_bytes() + early.read_bytes())
    report = _read(joined)
    assert [d.stamp_after < d.stamp_before for d in report.discontinuities] == [True]
    assert report.spans == [] and report.end_time() == pytest.approx(12.0, abs=0.1)
