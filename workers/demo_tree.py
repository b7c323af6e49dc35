"""The demo's recordings: a small multi-camera tree, with or without people, and its ROI file.

    python -m workers.demo_tree ROOT [--plain]

writes ROOT/videos/<camera>/<camera>_<stamp>.mp4 and ROOT/rois.toml, and prints how many recordings
there are. The people in them come from ultralytics' bundled photos, at times `demo_actors` gives,
so what the demo counts can be checked against who stood where.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from .scenes import LEFT_RIGHT_ROIS, Actor, load_sprites, write_scene

DEMO_CAMERAS = ("camera_35", "camera_22", "camera_07")


def write_video(path: Path, *, seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (320, 240)) -> None:
    """A small MP4 (mp4v) with a moving block: a recording without people."""
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    for i in range(int(seconds * fps)):
        frame = np.full((h, w, 3), 40, dtype=np.uint8)
        x = int((w - 40) * i / max(1, seconds * fps - 1))
        frame[h // 2 - 20:h // 2 + 20, x:x + 40] = (60, 180, 240)
        writer.write(frame)
    writer.release()


def _age(path: Path, recorded: datetime) -> None:
    finished = (recorded + timedelta(hours=1)).timestamp()
    os.utime(path, (finished, finished))  # long finished: past the settle time


def make_sample_tree(root: Path, *, cameras: tuple[str, ...] = DEMO_CAMERAS, per_camera: int = 4,
                     start: datetime = datetime(2025, 11, 14, 14, 0, 0), seconds: float = 2.0) -> list[Path]:
    """NVR-style names, root/camera_35/camera_35_20251114_140000.mp4, an hour apart; no people in them."""
    made = []
    for c, camera in enumerate(cameras):
        for i in range(per_camera):
            recorded = start + timedelta(hours=i, minutes=7 * c)
            path = root / camera / f"{camera}_{recorded:%Y%m%d_%H%M%S}.mp4"
            if not path.exists():
                write_video(path, seconds=seconds)
                _age(path, recorded)
            made.append(path)
    return made


def demo_actors(k: int) -> list[Actor]:
    """Who stands where in the k-th demo recording: the truth the demo's table can be checked against."""
    actors = [Actor("man", 0.08 + 0.03 * k, 0.5 + 0.5 * (k % 3), 4.0 + 0.5 * (k % 2))]
    if k % 3 != 2:
        actors.append(Actor("man", 0.62 + 0.02 * k, 2.0 + 0.5 * (k % 2), 6.5 - 0.5 * (k % 3)))
    return actors


def make_people_tree(root: Path, *, cameras: tuple[str, ...] = DEMO_CAMERAS, per_camera: int = 2,
                     start: datetime = datetime(2025, 11, 14, 12, 0, 0), seconds: float = 7.0) -> list[Path]:
    """Recordings in which people stand in the left and right halves of the floor at known times."""
    sprites = load_sprites()
    made = []
    for c, camera in enumerate(cameras):
        for i in range(per_camera):
            recorded = start + timedelta(hours=i, minutes=7 * c)
            path = root / camera / f"{camera}_{recorded:%Y%m%d_%H%M%S}.mp4"
            actors = demo_actors(c * per_camera + i)
            if not path.exists():
                write_scene(path, actors, seconds=seconds, sprites=sprites)
                _age(path, recorded)
            made.append(path)
    return made


def write_demo_rois(path: Path, cameras: tuple[str, ...] = DEMO_CAMERAS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(LEFT_RIGHT_ROIS.format(camera=c) for c in cameras))
    return path


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m workers.demo_tree", description=(__doc__ or "").splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--plain", action="store_true", help="recordings without people (for the stand-in worker)")
    args = p.parse_args(argv)
    videos = make_sample_tree(args.root / "videos") if args.plain else make_people_tree(args.root / "videos")
    write_demo_rois(args.root / "rois.toml")
    print(len(videos))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
