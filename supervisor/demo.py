"""`video-supervisor demo`: generate a small multi-camera tree with people in it and count them.

The recordings are real MP4 files in which people from ultralytics' bundled
photos appear and leave; the supervisor runs the real detection worker on
them with the offline person model (`make models/person.pt`), then prints what
was counted per camera and region. `--worker fake` swaps in the stand-in
worker, for a machine without the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from .config import DiscoverySettings, GpuSettings, SchedulerSettings, Settings, WorkerSettings
from .store import JobState, JobStore

DEMO_CAMERAS = ("camera_35", "camera_22", "camera_07")
DEMO_MODEL = Path("models/person.pt")


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


def demo_actors(k: int) -> list[Any]:
    """Who stands where in the k-th demo recording: the truth the demo's table can be checked against."""
    from workers.scenes import Actor

    actors = [Actor("man", 0.08 + 0.03 * k, 0.5 + 0.5 * (k % 3), 4.0 + 0.5 * (k % 2))]
    if k % 3 != 2:
        actors.append(Actor("man", 0.62 + 0.02 * k, 2.0 + 0.5 * (k % 2), 6.5 - 0.5 * (k % 3)))
    return actors


def make_people_tree(root: Path, *, cameras: tuple[str, ...] = DEMO_CAMERAS, per_camera: int = 2,
                     start: datetime = datetime(2025, 11, 14, 12, 0, 0), seconds: float = 7.0) -> list[Path]:
    """Recordings in which people stand in the left and right halves of the floor at known times."""
    from workers.scenes import load_sprites, write_scene

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
    from workers.scenes import LEFT_RIGHT_ROIS

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(LEFT_RIGHT_ROIS.format(camera=c) for c in cameras))
    return path


def _print_table(store_path: Path, out: TextIO = sys.stdout) -> None:
    store = JobStore.open(store_path, readonly=True)
    try:
        jobs = store.jobs()
    finally:
        store.close()
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for job in jobs:
        if job.state is not JobState.DONE or not job.output or not Path(job.output).is_file():
            continue
        try:
            summary = json.loads(Path(job.output).read_text())
        except ValueError:
            continue
        for region, t in (summary.get("regions") or {}).items():
            row = rows.setdefault((job.camera, region), {"videos": 0, "occupied": 0.0, "person": 0.0, "peak": 0})
            row["videos"] += 1
            row["occupied"] += t.get("occupied_seconds", 0.0)
            row["person"] += t.get("person_seconds", 0.0)
            row["peak"] = max(row["peak"], t.get("peak_count", 0))
    print(f"\n{'camera':<11} {'region':<8} {'videos':>6} {'occupied s':>11} {'person-s':>9} {'peak':>5}", file=out)
    for (camera, region), r in sorted(rows.items()):
        print(f"{camera:<11} {region:<8} {r['videos']:>6} {r['occupied']:>11.1f} {r['person']:>9.1f} "
              f"{r['peak']:>5}", file=out)
    states: dict[str, int] = {}
    for job in jobs:
        states[str(job.state)] = states.get(str(job.state), 0) + 1
    print("jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())), file=out)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="video-supervisor demo", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path("demo"), help="where the sample tree and results go")
    p.add_argument("--worker", choices=("detect", "fake"), default="detect")
    p.add_argument("--model", type=Path, default=DEMO_MODEL)
    p.add_argument("--max-parallel", type=int, default=4)
    args = p.parse_args(argv)
    root = args.dir.resolve()
    if args.worker == "detect" and not args.model.is_file():
        print(f"video-supervisor demo: {args.model}: no model here; run `make models/person.pt` "
              "(or `python -m workers.fetch_model`), or use --worker fake", file=sys.stderr)
        return 78
    if args.worker == "detect":
        videos = make_people_tree(root / "videos")
        command = WorkerSettings().command
    else:
        videos = make_sample_tree(root / "videos")
        command = ("{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
                   "--seconds", "0.5")
    rois = write_demo_rois(root / "rois.toml")
    settings = Settings(
        videos_dir=root / "videos", output_dir=root / "results", state_db=root / "state" / "jobs.sqlite3",
        log_dir=root / "logs", rois_file=rois, reprocess=True, source="demo",
        scheduler=SchedulerSettings(max_parallel=args.max_parallel),
        discovery=DiscoverySettings(settle_seconds=0.0), gpu=GpuSettings(probe="auto"),
        worker=WorkerSettings(command=command, model=args.model.resolve(), retry_backoff_seconds=0.5),
    )
    from .cli import run_supervisor

    print(f"demo: {len(videos)} recordings from {len(DEMO_CAMERAS)} cameras in {settings.videos_dir}, "
          f"worker: {args.worker}", flush=True)
    code = run_supervisor(settings, daemon=False)
    if args.worker == "detect":
        _print_table(settings.state_db)
    print(f"\nresults: {settings.output_dir}\nlogs:    {settings.log_dir}\nstore:   {settings.state_db}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
