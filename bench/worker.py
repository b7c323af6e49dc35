"""Worker speed: a naive loop, the worker, and decode-only, on the same video and model, in one run.

    (a) naive: cap.read() and model(frame) on every frame (measured on the first --naive-frames)
    (b) the worker (python -m workers.detect) at its default sample rate
    (c) cap.grab() over the whole file: the physical limit of decoding

Prints frames/s of each, the worker's video-seconds per wall-second, and its time split into
decoding, inference and everything else. Targets: the worker >= 5x the naive loop; everything
that is neither decoding nor inference < 5% of the worker's time; skipped frames cost no more
than grab-only decoding of them.

    python bench/worker.py [--seconds 60] [--size 1280x720] [--fps 25] [--imgsz 640]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.scenes import Actor, write_scene

REPO = Path(__file__).resolve().parent.parent


def grab_only(video: Path) -> tuple[int, float]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    n, t = 0, time.perf_counter()
    while cap.grab():
        n += 1
    elapsed = time.perf_counter() - t
    cap.release()
    return n, elapsed


def sampling_only(video: Path, sample_fps: float = 2.0) -> tuple[int, float]:
    """The worker's own frame loop without the model: what skipping frames costs by itself."""
    from workers.detect import Timings, open_video, sample_frames

    cap, info = open_video(video)
    timings = Timings()
    for _ in sample_frames(cap, info, sample_fps, 0.0, timings):
        pass
    cap.release()
    return timings.skipped, timings.skip_decode


def read_rate(video: Path, frames: int) -> float:
    """Seconds per frame of cap.read() (grab + convert)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    t = time.perf_counter()
    n = 0
    while n < frames and cap.read()[0]:
        n += 1
    cap.release()
    return (time.perf_counter() - t) / max(n, 1)


def naive(video: Path, model_path: Path, frames: int, imgsz: int) -> tuple[int, float]:
    import cv2

    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_VERBOSE="False")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp())
    from ultralytics import YOLO

    model = YOLO(str(model_path), task="detect")
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    model.predict(frame, imgsz=imgsz, verbose=False)  # warm-up, as the worker's first batch pays it too
    n, t = 0, time.perf_counter()
    while n < frames:
        ok, frame = cap.read()
        if not ok:
            break
        model.predict(frame, imgsz=imgsz, verbose=False)
        n += 1
    elapsed = time.perf_counter() - t
    cap.release()
    return n, elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--naive-frames", type=int, default=100)
    p.add_argument("--model", type=Path, default=REPO / "models" / "person.pt")
    args = p.parse_args()
    if not args.model.is_file():
        print(f"bench/worker.py: {args.model} missing: run `make models/person.pt`")
        return 1
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        video = Path(d) / "cam" / "cam_20251114_100000.mp4"
        t = time.perf_counter()
        actors = [Actor("man", 0.1, 5, 40), Actor("woman", 0.6, 20, 55)]
        write_scene(video, actors, seconds=args.seconds, fps=args.fps, size=(w, h))
        made = time.perf_counter() - t
        # Best of three for the short decode-only passes: they are noisy on a shared machine.
        total_frames, grab_s = min((grab_only(video) for _ in range(3)), key=lambda r: r[1])
        per_read = min(read_rate(video, 200) for _ in range(3))
        alone_skipped, alone_skip_s = min((sampling_only(video) for _ in range(3)), key=lambda r: r[1])
        proc = subprocess.run([sys.executable, "-m", "workers.detect", "--video", str(video), "--camera", "cam",
                               "--out", str(Path(d) / "out"), "--model", str(args.model), "--imgsz", str(args.imgsz)],
                              capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            print(proc.stderr)
            return 1
        summary = json.loads((Path(d) / "out" / "summary.json").read_text())
        naive_n, naive_s = naive(video, args.model, args.naive_frames, args.imgsz)
    tm = summary["timing"]
    worker_fps = summary["frames_decoded"] / tm["total_seconds"]
    naive_fps = naive_n / naive_s
    sampled = summary["frames_sampled"]
    print(f"worker benchmark: {args.seconds:g} s of {w}x{h} at {args.fps} fps ({total_frames} frames, mp4v, "
          f"made in {made:.1f} s), model {args.model.name}, imgsz {args.imgsz}, CPU")
    print(f"  (c) grab only, whole file   {total_frames / grab_s:8.1f} frames/s  ({grab_s:.2f} s)")
    print(f"  (a) naive read+predict      {naive_fps:8.2f} frames/s  (first {naive_n} frames, {naive_s:.1f} s)")
    print(f"  (b) worker, 2 samples/s     {worker_fps:8.2f} frames/s  ({tm['total_seconds']:.1f} s, model load "
          f"{tm['model_load_seconds']:.1f} s not counted)")
    print(f"  worker / naive = {worker_fps / naive_fps:.1f}x (target >= 5)")
    print(f"  worker: {tm['video_seconds_per_second']:.2f} video-seconds per wall-second")
    total = tm["total_seconds"]
    print(f"  worker time: decoding {tm['decode_seconds']:.2f} s ({100 * tm['decode_seconds'] / total:.1f}%), "
          f"inference {tm['inference_seconds']:.2f} s ({100 * tm['inference_seconds'] / total:.1f}%), "
          f"other {tm['other_seconds']:.2f} s ({100 * tm['other_seconds'] / total:.1f}%, target < 5%)")
    per_grab = grab_s / total_frames
    alone = alone_skip_s / max(alone_skipped, 1)
    in_worker = tm["skipped_decode_seconds"] / max(tm["skipped_frames"], 1)
    print(f"  skipped frames ({alone_skipped}): {1000 * alone:.3f} ms each in the worker's frame loop alone vs "
          f"{1000 * per_grab:.3f} ms grab-only (ratio {alone / per_grab:.2f}, target <= 1)")
    per_sampled = (tm["decode_seconds"] - tm["skipped_decode_seconds"]) / max(sampled, 1)
    print(f"    ... {1000 * in_worker:.3f} ms each while inference runs beside it on the other core "
          f"(ratio {in_worker / per_grab:.2f}); sampled frames {1000 * per_sampled:.2f} ms each "
          f"(read(): {1000 * per_read:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
