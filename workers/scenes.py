"""Synthetic camera recordings with real people in them, and what they contain.

People are cut from the photos ultralytics ships (`assets/bus.jpg`) and
composited into a scene where they appear, sway a little, and leave, so a
real person detector finds them. Each actor's feet position is known, which
gives the ground truth: how many people stand in each region at any time.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from supervisor.protocol.geometry import point_in_polygon
from supervisor.protocol.rois import Region

# (top, bottom, left, right) of single, unoccluded people in bus.jpg, feet included.
SPRITES = {"man": (380, 900, 200, 355), "woman": (250, 895, 650, 810)}
SCALE = 0.55
FRAME = (960, 540)


@dataclass(frozen=True, slots=True)
class Actor:
    sprite: str
    x: float  # left edge, as a fraction of the frame width
    enter: float  # seconds
    leave: float
    cut: float = 0.0  # the fraction of the person below the frame's bottom edge (0: feet visible)
    walk: float = 0.0  # frame widths a second the person moves right (negative: left) from `x` at `enter`
    sway: float = 6.0  # pixels the person sways either way while standing

    def present(self, t: float) -> bool:
        return self.enter <= t < self.leave


def assets_dir() -> Path:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        raise RuntimeError("ultralytics is not installed: its bundled photos are needed for people scenes")
    return Path(spec.origin).parent / "assets"


def load_sprites() -> dict[str, np.ndarray]:
    import cv2

    bus = cv2.imread(str(assets_dir() / "bus.jpg"))
    if bus is None:
        raise RuntimeError(f"cannot read {assets_dir() / 'bus.jpg'}")
    out = {}
    for name, (top, bottom, left, right) in SPRITES.items():
        out[name] = cv2.resize(bus[top:bottom, left:right], None, fx=SCALE, fy=SCALE)
    return out


def _placement(actor: Actor, sprite: np.ndarray, t: float, size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    sh, sw = sprite.shape[:2]
    sway = round(actor.sway * math.sin(2.0 * t + actor.x * 10))
    left = actor.x + actor.walk * max(0.0, t - actor.enter)
    x = min(max(0, int(left * w) + sway), w - sw)
    if actor.cut > 0:
        return x, h - round(sh * (1.0 - actor.cut))
    return x, h - sh - 12


def feet(actor: Actor, sprites: dict[str, np.ndarray], t: float, size: tuple[int, int] = FRAME) -> tuple[float, float]:
    """Where the person stands as a detector sees it: a box cut by the frame's edge ends at the edge."""
    sprite = sprites[actor.sprite]
    x, y = _placement(actor, sprite, t, size)
    return (x + sprite.shape[1] / 2) / size[0], min(1.0, (y + sprite.shape[0]) / size[1])


def render(actors: Sequence[Actor], sprites: dict[str, np.ndarray], t: float, size: tuple[int, int] = FRAME) -> Any:
    w, h = size
    frame = np.empty((h, w, 3), dtype=np.uint8)
    frame[:] = (78, 92, 88)
    frame[int(h * 0.55):] = (96, 104, 110)  # a floor
    for actor in actors:
        if actor.present(t):
            sprite = sprites[actor.sprite]
            x, y = _placement(actor, sprite, t, size)
            visible = min(sprite.shape[0], h - y)
            frame[y:y + visible, x:x + sprite.shape[1]] = sprite[:visible]
    return frame


def write_scene(path: Path, actors: Sequence[Actor], *, seconds: float, fps: int = 10,
                size: tuple[int, int] = FRAME, sprites: dict[str, np.ndarray] | None = None) -> Path:
    """An MP4 (mp4v: OpenCV's wheels cannot encode H.264) written under a temporary name, then renamed."""
    import cv2

    sprites = sprites or load_sprites()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {tmp}")
    for i in range(round(seconds * fps)):
        writer.write(render(actors, sprites, i / fps, size))
    writer.release()
    os.replace(tmp, path)
    return path


# Recorder formats made with the ffmpeg command-line tool: (file suffix, ffmpeg output arguments).
ENCODINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "h264_mp4": (".mp4", ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")),
    # As recorders that use B-frames write it (two between reference frames, none of them a reference).
    "h264_bframes_mp4": (".mp4", ("-c:v", "libx264", "-preset", "ultrafast", "-x264-params",
                                  "bframes=2:b-pyramid=none:b-adapt=0", "-pix_fmt", "yuv420p")),
    "hevc_mkv": (".mkv", ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
                          "-pix_fmt", "yuv420p")),
    "h264_ts": (".ts", ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mpegts")),
    "mjpeg_avi": (".avi", ("-c:v", "mjpeg", "-q:v", "4", "-pix_fmt", "yuvj420p")),
    "h264_mov": (".mov", ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")),
}


def encode_scene(path: Path, actors: Sequence[Actor], *, seconds: float, fps: float = 10,
                 size: tuple[int, int] = FRAME, encoding: str = "h264_mp4", rotate: int = 0,
                 thin: tuple[float, float, int] | None = None, sprites: dict[str, np.ndarray] | None = None,
                 ffmpeg: str = "ffmpeg", extra: Sequence[str] = (), noise: float = 0.0) -> Path:
    """A recording as a camera's recorder makes one, encoded by the ffmpeg tool from rendered frames.

    `rotate` (90, 180, 270, -90: degrees counterclockwise, FFmpeg's display-matrix convention) stores the
    frames turned the other way and tags the stream with the display matrix that turns them upright
    again, as phones and some cameras do. `thin = (start, end, k)` keeps only every
    k-th frame between start and end seconds, with their true timestamps: a variable-frame-rate file.
    `extra`: more output options (e.g. `-output_ts_offset`). `noise`: sensor noise, the standard
    deviation in grey levels of a pattern that changes every frame (an empty room still flickers). A key
    frame every two seconds, as NVRs write them.
    """
    import subprocess

    sprites = sprites or load_sprites()
    suffix, codec_args = ENCODINGS[encoding]
    if path.suffix != suffix:
        raise ValueError(f"{path}: {encoding} recordings end in {suffix}")
    if rotate % 90:
        raise ValueError(f"rotate={rotate}: a multiple of 90 degrees")
    turns = (rotate // 90) % 4
    stored = size if turns % 2 == 0 else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{stored[0]}x{stored[1]}", "-r", f"{fps:g}", "-i", "-", *codec_args, "-g", str(round(2 * fps))]
    if thin is not None:
        start, end, k = thin
        cmd += ["-vf", f"select='not(between(t,{start},{end}))+not(mod(n,{k}))'", "-fps_mode", "vfr"]
    cmd += [*extra, str(tmp)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for i in range(round(seconds * fps)):
            # Stored turned the other way, so that the display matrix's turn shows it upright.
            frame = render(actors, sprites, i / fps, size)
            if noise > 0:
                frame = _add_noise(frame, noise, i)
            proc.stdin.write(np.ascontiguousarray(np.rot90(frame, -turns)).tobytes())
    finally:
        proc.stdin.close()
        err = ""
        if proc.stderr is not None:
            err = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"ffmpeg failed ({code}) making {path}: {err.strip()}")
    if rotate:
        # The display matrix is written by a stream copy (ffmpeg 5 ignores it while encoding).
        tagged = tmp.with_name(f".{path.stem}.rot{path.suffix}")
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(tmp), "-c", "copy",
                        "-metadata:s:v:0", f"rotate={rotate}", str(tagged)], check=True, capture_output=True)
        os.replace(tagged, tmp)
    os.replace(tmp, path)
    return path


_NOISE: dict[tuple[int, int, float], list[tuple[np.ndarray, np.ndarray]]] = {}


def _add_noise(frame: np.ndarray, sigma: float, index: int) -> np.ndarray:
    """Frame plus one of a few fixed Gaussian noise patterns (seeded: the same recording every time)."""
    import cv2

    h, w = frame.shape[:2]
    key = (h, w, sigma)
    if key not in _NOISE:
        rng = np.random.default_rng(11)
        patterns = []
        for _ in range(7):
            n = np.clip(rng.normal(0.0, sigma, (h, w, 3)), -255, 255).astype(np.int16)
            patterns.append((np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)))
        _NOISE[key] = patterns
    up, down = _NOISE[key][index % len(_NOISE[key])]
    out: np.ndarray = cv2.subtract(cv2.add(frame, up), down)
    return out


def damage(path: Path, *, at: float, nbytes: int, seed: int = 7) -> None:
    """Overwrite `nbytes` at fraction `at` of the file with random bytes: a recording damaged in the middle."""
    rng = np.random.default_rng(seed)
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(int(size * at))
        f.write(rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes())


def expected_counts(actors: Sequence[Actor], regions: Sequence[Region], t: float,
                    sprites: dict[str, np.ndarray], size: tuple[int, int] = FRAME) -> list[int]:
    """Ground truth: people whose feet are inside each region at time t."""
    out = []
    for region in regions:
        n = 0
        for actor in actors:
            if actor.present(t) and point_in_polygon(*feet(actor, sprites, t, size), region.points):
                n += 1
        out.append(n)
    return out


LEFT_RIGHT_ROIS = """\
# Two regions: the left and the right half of the floor.
[cameras.{camera}]
[[cameras.{camera}.regions]]
name = "left"
points = [[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]]

[[cameras.{camera}.regions]]
name = "right"
points = [[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]
"""

# Someone stands on the left from 1 s to 4 s; someone else on the right from 2.5 s to 5.5 s. (The photo's
# man: the "woman" crop holds a sliver of a second person, which detectors often find as well.)
DEFAULT_ACTORS = (Actor("man", 0.10, 1.0, 4.0), Actor("man", 0.60, 2.5, 5.5))


def expected_intervals(actors: Sequence[Actor], region: Region, *, seconds: float, fps: float,
                       sprites: dict[str, np.ndarray], size: tuple[int, int] = FRAME) -> list[tuple[float, float]]:
    """Ground truth: when the region had somebody in it, from every frame of the recording."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    frames = round(seconds * fps)
    for i in range(frames + 1):
        t = i / fps
        occupied = i < frames and expected_counts(actors, [region], t, sprites, size)[0] > 0
        if occupied and start is None:
            start = t
        elif not occupied and start is not None:
            out.append((start, t))
            start = None
    return out
