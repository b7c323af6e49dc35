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

from .rois import Region, point_in_polygon

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
    sway = round(6 * math.sin(2.0 * t + actor.x * 10))
    x = min(max(0, int(actor.x * w) + sway), w - sw)
    return x, h - sh - 12


def feet(actor: Actor, sprites: dict[str, np.ndarray], t: float, size: tuple[int, int] = FRAME) -> tuple[float, float]:
    sprite = sprites[actor.sprite]
    x, y = _placement(actor, sprite, t, size)
    return (x + sprite.shape[1] / 2) / size[0], (y + sprite.shape[0]) / size[1]


def render(actors: Sequence[Actor], sprites: dict[str, np.ndarray], t: float, size: tuple[int, int] = FRAME) -> Any:
    w, h = size
    frame = np.empty((h, w, 3), dtype=np.uint8)
    frame[:] = (78, 92, 88)
    frame[int(h * 0.55):] = (96, 104, 110)  # a floor
    for actor in actors:
        if actor.present(t):
            sprite = sprites[actor.sprite]
            x, y = _placement(actor, sprite, t, size)
            frame[y:y + sprite.shape[0], x:x + sprite.shape[1]] = sprite
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

# Someone stands on the left from 1 s to 4 s; someone else on the right from 2.5 s to 5.5 s.
DEFAULT_ACTORS = (Actor("man", 0.10, 1.0, 4.0), Actor("woman", 0.66, 2.5, 5.5))
