"""Worker speed, in one run, on the same videos, model and sample rate (2 samples a second).

For each input (a 720p mp4v file, and 1080p H.264 as NVRs write it, made with the ffmpeg tool):

    (b) decode only:     the worker's decode path (PyAV, PTS-sampled, through damage), against
                         OpenCV grab()/retrieve at frame index / average fps (the path it replaced)
    (a) baseline:        ultralytics' own stream, model.predict(source=video, stream=True, vid_stride=N),
                         what a user would write instead
    (c) the worker:      python -m workers.detect end to end, once per inference engine (torch,
                         onnxruntime, openvino); model load reported apart

Prints video-seconds per wall-second for each, the worker per engine against the baseline (target
>= 1.5x for the CPU engine `auto` picks), the worker's time split, the decoding it had to wait for
(target < 10 % at 1080p), and the model load time.

    python bench/worker.py [--seconds 30] [--imgsz 640] [--engines torch onnxruntime openvino]
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


def run_worker(video: Path, out: Path, model: Path, imgsz: int, engine: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "workers.detect", f"--video={video}", "--camera=cam",
                           f"--out={out}", f"--model={model}", f"--imgsz={imgsz}", f"--engine={engine}"],
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
    p.add_argument("--engines", nargs="+", default=["torch", "onnxruntime", "openvino"])
    args = p.parse_args()
    if not args.model.is_file():
        print(f"bench/worker.py: {args.model} missing: run `make models/person.pt`")
        return 1
    actors = [Actor("man", 0.1, 2, args.seconds * 0.7), Actor("man", 0.6, args.seconds * 0.3, args.seconds - 1)]
    rows: list[Any] = []
    with tempfile.TemporaryDirectory() as d:
        inputs = [("720p mp4v 25 fps", "mp4v", (1280, 720))]
        if shutil.which("ffmpeg"):
            inputs.append(("1080p H.264 25 fps", "h264", (1920, 1080)))
        else:
            print("(no ffmpeg tool: the 1080p H.264 row is skipped)")
        decoded: list[tuple[str, str, Path, tuple[int, float], tuple[int, float]]] = []
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
            runs = {engine: run_worker(video, Path(d) / codec / engine, args.model, args.imgsz, engine)
                    for engine in args.engines}
            rows.append((label, old_n, old_s, new_n, new_s, base_n, base_s, runs))
    print(f"worker benchmark: {args.seconds:g} s per input, model {args.model.name}, imgsz {args.imgsz}, "
          f"{SAMPLE_FPS:g} samples/s, CPU ({len(os.sched_getaffinity(0))} cores)")
    print("\n(b) decoding only, video-seconds per wall-second")
    print("| input | frame index (before) | timestamps (now) | time ratio now/before |")
    print("|---|---|---|---|")
    for label, old_n, old_s, new_n, new_s, *_ in rows:
        print(f"| {label} | {args.seconds / old_s:.0f} ({old_n} samples) | {args.seconds / new_s:.0f} "
              f"({new_n} samples) | {new_s / old_s:.2f} |")
    print("\n(a) baseline and (c) the worker, video-seconds per wall-second")
    print("| input | run | video-s/s | x baseline | inference | decode thread busy | waiting for frames "
          "| model load |")
    print("|---|---|---|---|---|---|---|---|")
    for label, *_, _base_n, base_s, runs in rows:
        base_rate = args.seconds / base_s
        print(f"| {label} | (a) ultralytics stream, vid_stride | {base_rate:.2f} | 1.00 | | | | |")
        for engine, summary in runs.items():
            tm = summary["timing"]
            total = tm["total_seconds"]
            rate = tm["video_seconds_per_second"]
            print(f"| {label} | (c) worker, {engine} | {rate:.2f} | {rate / base_rate:.2f} "
                  f"| {100 * tm['inference_seconds'] / total:.1f} % | {100 * tm['decode_seconds'] / total:.1f} % "
                  f"| {100 * tm['waiting_for_frames_seconds'] / total:.1f} % | {tm['model_load_seconds']:.2f} s |")
    print("\ndecode thread busy: decoding on its own thread, beside inference; waiting for frames: the part "
          "of the worker's time it waited for a decoded frame (decoding inference did not hide)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
