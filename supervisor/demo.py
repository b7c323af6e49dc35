"""`video-supervisor demo`: generate a small multi-camera tree and process it, offline.

The recordings are real (small) MP4 files written with OpenCV; the worker is
the protocol-speaking stand-in (`workers.fake`), so the demo runs on any
machine without a GPU, model weights or network.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from .config import DiscoverySettings, GpuSettings, SchedulerSettings, Settings, WorkerSettings
from .store import JobStore

DEMO_CAMERAS = ("camera_35", "camera_22", "camera_07")


def write_video(path: Path, *, seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (320, 240)) -> None:
    """A small MP4 (mp4v) with a moving block, or plain bytes where OpenCV is missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import cv2
        import numpy as np
    except ImportError:
        path.write_bytes(os.urandom(4096))
        return
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(int(seconds * fps)):
        frame = np.full((h, w, 3), 40, dtype=np.uint8)
        x = int((w - 40) * i / max(1, seconds * fps - 1))
        frame[h // 2 - 20:h // 2 + 20, x:x + 40] = (60, 180, 240)
        writer.write(frame)
    writer.release()


def make_sample_tree(root: Path, *, cameras: tuple[str, ...] = DEMO_CAMERAS, per_camera: int = 4,
                     start: datetime = datetime(2025, 11, 14, 14, 0, 0), seconds: float = 2.0) -> list[Path]:
    """NVR-style names: root/camera_35/camera_35_20251114_140000.mp4, each an hour apart per camera."""
    made = []
    for c, camera in enumerate(cameras):
        for i in range(per_camera):
            recorded = start + timedelta(hours=i, minutes=7 * c)
            path = root / camera / f"{camera}_{recorded:%Y%m%d_%H%M%S}.mp4"
            if not path.exists():
                write_video(path, seconds=seconds)
                old = (recorded + timedelta(hours=1)).timestamp()
                os.utime(path, (old, old))  # finished long ago: past the settle time
            made.append(path)
    return made


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="video-supervisor demo", description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path("demo"), help="where the sample tree and results go")
    p.add_argument("--job-seconds", type=float, default=0.5, help="how long each stand-in job takes")
    p.add_argument("--max-parallel", type=int, default=4)
    args = p.parse_args(argv)
    root = args.dir.resolve()
    videos = make_sample_tree(root / "videos")
    settings = Settings(
        videos_dir=root / "videos", output_dir=root / "results", state_db=root / "state" / "jobs.sqlite3",
        log_dir=root / "logs", reprocess=True, source="demo",
        scheduler=SchedulerSettings(max_parallel=args.max_parallel),
        discovery=DiscoverySettings(settle_seconds=0.0),
        gpu=GpuSettings(probe="auto"),
        worker=WorkerSettings(
            command=("{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}",
                     "--out", "{out}", "--seconds", f"{args.job_seconds:g}"),
            retry_backoff_seconds=0.5,
        ),
    )
    from .cli import run_supervisor

    print(f"demo: {len(videos)} recordings from {len(DEMO_CAMERAS)} cameras in {settings.videos_dir}", flush=True)
    code = run_supervisor(dataclasses.replace(settings), daemon=False)
    store = JobStore.open(settings.state_db, readonly=True)
    try:
        jobs = store.jobs()
    finally:
        store.close()
    print(f"\n{'camera':<12} {'videos':>6} {'done':>5} {'dead':>5} {'avg s/job':>10}  first recording")
    for camera in sorted({j.camera for j in jobs}):
        mine = [j for j in jobs if j.camera == camera]
        done = [j for j in mine if j.state == "done"]
        avg = sum(j.duration_seconds or 0 for j in done) / len(done) if done else 0.0
        print(f"{camera:<12} {len(mine):>6} {len(done):>5} {sum(j.state == 'dead' for j in mine):>5} "
              f"{avg:>10.2f}  {min(j.recorded_at for j in mine):%Y-%m-%d %H:%M}")
    print(f"\nresults: {settings.output_dir}\nlogs:    {settings.log_dir}\nstore:   {settings.state_db}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
