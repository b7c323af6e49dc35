"""Worker speed, in one run, on the same videos, model and sample rate (2 samples a second).

For each input (a 720p mp4v file, and 1080p H.264 as NVRs write it, made with the ffmpeg tool):

    decode, frame index: OpenCV grab() between samples, grab+retrieve at frame index / average fps
                         (the worker's decode path before timestamps)
    decode, timestamps:  the worker's decode path (PyAV, PTS-sampled, through damage)
    baseline:            ultralytics' own stream, model.predict(source=video, stream=True, vid_stride=N)
    worker:              python -m workers.detect, end to end, model load reported apart

Prints video-seconds per wall-second for each, the ratio of the two decode paths (target: the
timestamp path no slower, ratio <= 1), the worker against the baseline, and the worker's time split.

    python bench/worker.py [--seconds 30] [--imgsz 640]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.scenes import Actor, encode_scene, write_scene

REPO = Path(__file__).resolve().parent.parent
SAMPLE_FPS = 2.0


def decode_by_index(video: Path) -> tuple[int, float]:
    """The earlier decode path: frame index / average fps, grab() for skipped frames."""
    import cv2

    t = time.perf_counter()
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    step = fps / SAMPLE_FPS
    k = index = sampled = 0
    while True:
        target = round(k * step)
        ended = False
        while index < target:
            if not cap.grab():
                ended = True
                break
            index += 1
        if ended or not cap.grab():
            break
        ok, _ = cap.retrieve()
        if not ok:
            break
        index += 1
        k += 1
        sampled += 1
    cap.release()
    return sampled, time.perf_counter() - t


def decode_by_timestamp(video: Path) -> tuple[int, float]:
    from workers.decode import VideoSource

    t = time.perf_counter()
    source = VideoSource(video)
    sampled = sum(1 for _ in source.samples(SAMPLE_FPS))
    source.close()
    return sampled, time.perf_counter() - t


def ultralytics_stream(video: Path, model_path: Path, imgsz: int, fps: float) -> tuple[int, float]:
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_VERBOSE="False")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp())
    from ultralytics import YOLO

    model = YOLO(str(model_path), task="detect")
    t = time.perf_counter()
    n = sum(1 for _ in model.predict(source=str(video), stream=True, vid_stride=round(fps / SAMPLE_FPS),
                                     imgsz=imgsz, verbose=False))
    return n, time.perf_counter() - t


def run_worker(video: Path, out: Path, model: Path, imgsz: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "workers.detect", f"--video={video}", "--camera=cam",
                           f"--out={out}", f"--model={model}", f"--imgsz={imgsz}"],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--model", type=Path, default=REPO / "models" / "person.pt")
    args = p.parse_args()
    if not args.model.is_file():
        print(f"bench/worker.py: {args.model} missing: run `make models/person.pt`")
        return 1
    actors = [Actor("man", 0.1, 2, args.seconds * 0.7), Actor("man", 0.6, args.seconds * 0.3, args.seconds - 1)]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        inputs = [("720p mp4v 25 fps", "mp4v", (1280, 720))]
        if shutil.which("ffmpeg"):
            inputs.append(("1080p H.264 25 fps", "h264", (1920, 1080)))
        else:
            print("(no ffmpeg tool: the 1080p H.264 row is skipped)")
        decoded = []
        # Decoding first, before this process imports torch (whose idle threads would share the cores).
        for label, codec, size in inputs:
            video = Path(d) / codec / "cam" / "cam_20251114_100000.mp4"
            if codec == "mp4v":
                write_scene(video, actors, seconds=args.seconds, fps=25, size=size)
            else:
                encode_scene(video, actors, seconds=args.seconds, fps=25, size=size, encoding="h264_mp4")
            # Best of five, alternating: the passes are short and noisy on a shared machine.
            old, new = [], []
            for _ in range(5):
                old.append(decode_by_index(video))
                new.append(decode_by_timestamp(video))
            decoded.append((label, codec, video, min(old, key=lambda r: r[1]), min(new, key=lambda r: r[1])))
        for label, codec, video, (old_n, old_s), (new_n, new_s) in decoded:
            base_n, base_s = ultralytics_stream(video, args.model, args.imgsz, 25.0)
            summary = run_worker(video, Path(d) / codec / "out", args.model, args.imgsz)
            rows.append((label, old_n, old_s, new_n, new_s, base_n, base_s, summary))
    print(f"worker benchmark: {args.seconds:g} s per input, model {args.model.name}, imgsz {args.imgsz}, "
          f"{SAMPLE_FPS:g} samples/s, CPU")
    print("| input | decode, frame index | decode, timestamps | ratio | baseline stream | worker | worker/baseline "
          "| model load |")
    print("|---|---|---|---|---|---|---|---|")
    for label, old_n, old_s, new_n, new_s, base_n, base_s, summary in rows:
        tm = summary["timing"]
        video_s = summary["processed_seconds"]
        worker_rate = tm["video_seconds_per_second"]
        base_rate = args.seconds / base_s
        print(f"| {label} | {args.seconds / old_s:.0f} video-s/s ({old_n} samples) "
              f"| {args.seconds / new_s:.0f} video-s/s ({new_n} samples) | {new_s / old_s:.2f} "
              f"| {base_rate:.2f} video-s/s ({base_n} frames) | {worker_rate:.2f} video-s/s ({video_s:g} s) "
              f"| {worker_rate / base_rate:.2f}x | {tm['model_load_seconds']:.1f} s |")
    for label, *_, summary in rows:
        tm = summary["timing"]
        total = tm["total_seconds"]
        print(f"{label}: worker time {total:.1f} s: decoding {100 * tm['decode_seconds'] / total:.1f}% "
              f"(on its reader thread, beside inference), inference {100 * tm['inference_seconds'] / total:.1f}%, "
              f"other {100 * tm['other_seconds'] / total:.1f}%")
    print("ratio: timestamp decode time / frame-index decode time (target <= 1: no slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
