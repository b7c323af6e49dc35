"""A day of recordings, in one run: the baseline, the worker as it was, and the worker that infers less.

Makes a recording per camera (`--minutes` each, an hour by default; 1080p H.264 at `--fps`, as an NVR
writes it, with sensor noise) from a day-like plan: idle stretches of an empty room, people seated
still, busy stretches of people walking in and out (`workers.day_scene`). Then, one after another on
the same recordings:

    baseline          ultralytics' own model.predict(source=video, stream=True, vid_stride=N) at the same
                      2 samples a second, on the first `--baseline-minutes` of each recording
    ungated           the worker as it was: every sample inferred, every frame decoded (FP32 OpenVINO
                      on the CPU; torch half, batch 8 on CUDA)
    gated             motion-gated inference, non-reference frames left undecoded
    int8, int8 gated  the same on the INT8 OpenVINO export (CPU; where one is beside the model)

For each: video-seconds per wall-second over all cameras (model loads included: each recording is a
job of its own), samples inferred and reused, where the time went, and the counts' agreement with the
ungated run (every camera's occupied seconds and person-seconds within 2 %, peak equal). Also decoding
alone, every frame against non-reference frames skipped, at 1080p and 4K, and with `--parallel 1 2 4`
the total rate with that many workers at once (where it stops growing, the machine is saturated).

    python bench/day.py [--cameras 3] [--minutes 60] [--fps 12] [--device cpu|cuda] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.agreement import Agreement
from workers.day_scene import day_actors
from workers.engines import export_status
from workers.scenes import Actor, encode_scene

REPO = Path(__file__).resolve().parent.parent
SAMPLE_FPS = 2.0


@dataclass
class Run:
    """One configuration of the worker over every camera's recording."""

    label: str
    args: tuple[str, ...]
    summaries: list[dict[str, Any]] = field(default_factory=list)
    wall: float = 0.0

    @property
    def video_seconds(self) -> float:
        return sum(s["processed_seconds"] for s in self.summaries)

    def total(self, key: str) -> float:
        return sum(float(s["timing"][key]) for s in self.summaries)

    def count(self, key: str) -> int:
        return sum(int(s.get(key, 0)) for s in self.summaries)


def make_recordings(folder: Path, cameras: int, seconds: float, fps: float, size: tuple[int, int],
                    encoding: str) -> list[Path]:
    """One recording per camera, made once per set of parameters (kept in `folder` for later runs)."""
    videos = []
    for cam in range(1, cameras + 1):
        video = folder / f"day-{seconds:g}s-{fps:g}fps-{size[0]}x{size[1]}-{encoding}" / f"cam{cam}" / \
            f"cam{cam}_20251114_080000.mp4"
        if not video.is_file():
            started = time.perf_counter()
            encode_scene(video, day_actors(seconds, seed=cam), seconds=seconds, fps=fps, size=size,
                         encoding=encoding, noise=2.0)
            print(f"made {video.name} ({seconds:g} s) in {time.perf_counter() - started:.0f} s", flush=True)
        videos.append(video)
    return videos


def run_worker(video: Path, out: Path, model: Path, extra: Sequence[str]) -> dict[str, Any]:
    camera = video.parent.name
    proc = subprocess.run([sys.executable, "-m", "workers.detect", f"--video={video}", f"--camera={camera}",
                           f"--out={out}", f"--model={model}", *extra], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(f"worker failed on {video} ({' '.join(extra)}): {proc.stderr.strip()}")
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def run_interleaved(runs: Sequence[Run], videos: Sequence[Path], work: Path, model: Path, base_seconds: float,
                    fps: float) -> tuple[float, float]:
    """Each recording through every run in turn, then the baseline: a machine whose load drifts (a shared
    one) weighs on all of them alike. Returns the baseline's (video seconds, wall seconds)."""
    base_video = base_wall = 0.0
    for i, video in enumerate(videos):
        for run in runs:
            started = time.perf_counter()
            run.summaries.append(run_worker(video, work / run.label.replace(" ", "-") / str(i), model, run.args))
            run.wall += time.perf_counter() - started
        seconds, wall = baseline(video, model, base_seconds, fps)
        base_video, base_wall = base_video + seconds, base_wall + wall
        rates = [f"{r.label} {r.summaries[-1]['timing']['video_seconds_per_second']:.2f}" for r in runs]
        print(f"{video.parent.name}: {', '.join(rates)}, baseline {seconds / wall:.2f} video-s/s", flush=True)
    return base_video, base_wall


def baseline(video: Path, model: Path, seconds: float, fps: float) -> tuple[float, float]:
    """ultralytics' own streaming predictor on the first `seconds` of a recording: (video s, wall s), its
    model load included, as the worker's."""
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_VERBOSE="False")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp())
    from ultralytics import YOLO

    stride = max(1, round(fps / SAMPLE_FPS))
    frames = int(seconds * fps / stride)
    started = time.perf_counter()
    yolo = YOLO(str(model), task="detect")
    n = 0
    for _ in yolo.predict(source=str(video), stream=True, vid_stride=stride, verbose=False):
        n += 1
        if n >= frames:
            break
    return n * stride / fps, time.perf_counter() - started


def decode_rates(folder: Path, seconds: float) -> list[tuple[str, float, float, int, int]]:
    """Decoding alone at 2 samples a second, every frame against non-reference frames left undecoded."""
    from workers.decode import VideoSource

    rows = []
    actors = (Actor("man", 0.1, 1.0, seconds - 2), Actor("man", -0.05, 2.0, seconds, walk=0.05, sway=0.0))
    for label, size in (("1080p", (1920, 1080)), ("4K", (3840, 2160))):
        for encoding in ("h264_mp4", "h264_bframes_mp4"):
            video = folder / f"decode-{label}-{encoding}-{seconds:g}.mp4"
            if not video.is_file():
                encode_scene(video, actors, seconds=seconds, fps=25, size=size, encoding=encoding, noise=2.0)
            best: dict[str, tuple[float, int]] = {}
            for _ in range(3):  # best of three, alternating: a shared machine is noisy
                for skip in ("off", "auto"):
                    source = VideoSource(video)
                    t = time.perf_counter()
                    for _sample in source.samples(SAMPLE_FPS, skip=skip):
                        pass
                    elapsed = time.perf_counter() - t
                    source.close()
                    if skip not in best or elapsed < best[skip][0]:
                        best[skip] = (elapsed, source.report.frames_decoded)
            rows.append((f"{label} H.264 25 fps, {'B-frames' if 'bframes' in encoding else 'P-frames only'}",
                         seconds / best["off"][0], seconds / best["auto"][0], best["off"][1], best["auto"][1]))
    return rows


def parallel_rates(videos: Sequence[Path], work: Path, model: Path, extra: Sequence[str],
                   levels: Sequence[int]) -> list[tuple[int, float]]:
    """Total video-seconds per second with `n` workers at once, each on a recording of its own."""
    rows = []
    for n in levels:
        jobs = [videos[i % len(videos)] for i in range(n)]
        started = time.perf_counter()
        outs = [work / f"parallel-{n}" / str(i) for i in range(n)]
        with ThreadPoolExecutor(n) as pool:
            summaries = list(pool.map(run_worker, jobs, outs, [model] * n, [extra] * n))
        rows.append((n, sum(s["processed_seconds"] for s in summaries) / (time.perf_counter() - started)))
        print(f"ran {n} at once: {rows[-1][1]:.2f} video-s/s", flush=True)
    return rows


def agreement(run: Run, reference: Run) -> Agreement:
    result = Agreement()
    for ref, got in zip(reference.summaries, run.summaries, strict=True):
        result.add(ref["camera"], ref["regions"], got["regions"])
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=3)
    p.add_argument("--minutes", type=float, default=60.0, help="of recording per camera")
    p.add_argument("--fps", type=float, default=12.0)
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--encoding", default="h264_mp4", help="a workers.scenes encoding (h264_bframes_mp4: B-frames)")
    p.add_argument("--baseline-minutes", type=float, default=0.0,
                   help="minutes of each recording the baseline runs on (0: all; it is the slowest by far)")
    p.add_argument("--model", type=Path, default=REPO / "models" / "person.pt")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (torch half precision, batch 8, NVDEC)")
    p.add_argument("--parallel", type=int, nargs="*", default=[], help="workers at once, e.g. 1 2 4 8")
    p.add_argument("--decode-seconds", type=float, default=20.0, help="length of the decode-only clips (0: none)")
    p.add_argument("--keep", type=Path, help="a folder to keep the recordings in between runs")
    args = p.parse_args()
    if not args.model.is_file():
        print(f"bench/day.py: {args.model} missing: run `make models/person.pt`")
        return 1
    width, height = (int(v) for v in args.size.split("x"))
    seconds = args.minutes * 60
    cuda = args.device.startswith("cuda")
    with tempfile.TemporaryDirectory() as d:
        folder = args.keep or Path(d)
        folder.mkdir(parents=True, exist_ok=True)
        videos = make_recordings(folder, args.cameras, seconds, args.fps, (width, height), args.encoding)
        decoding = decode_rates(folder, args.decode_seconds) if args.decode_seconds > 0 else []
        if cuda:
            engine = ("--engine=torch", f"--device={args.device}", "--batch=8")
            configs = [("ungated", (*engine, "--motion-gate=off", "--skip-frames=off", "--decode=cpu")),
                       ("gated", (*engine, "--motion-gate=on", "--skip-frames=auto", "--decode=cuda"))]
        else:
            configs = [("ungated", ("--engine=openvino", "--motion-gate=off", "--skip-frames=off")),
                       ("gated", ("--engine=openvino", "--motion-gate=on", "--skip-frames=auto"))]
            int8 = export_status(args.model, "openvino-int8")
            if int8 is None:
                configs += [("int8", ("--engine=openvino-int8", "--motion-gate=off", "--skip-frames=auto")),
                            ("int8 gated", ("--engine=openvino-int8", "--motion-gate=on", "--skip-frames=auto"))]
            else:
                print(f"(no INT8 rows: {int8}; make one with python -m workers.export_model {args.model} --int8 "
                      "--calibrate DIR)")
        work = Path(d) / "out"
        runs = [Run(label, extra) for label, extra in configs]
        base_video, base_wall = run_interleaved(runs, videos, work, args.model,
                                                (args.baseline_minutes * 60) or seconds, args.fps)
        levels = parallel_rates(videos, work, args.model, configs[1][1], args.parallel) if args.parallel else []
    report(args, runs, (base_video, base_wall), decoding, levels, cuda)
    return 0


def report(args: argparse.Namespace, runs: Sequence[Run], base: tuple[float, float],
           decoding: Sequence[tuple[str, float, float, int, int]], levels: Sequence[tuple[int, float]],
           cuda: bool) -> None:
    base_rate = base[0] / base[1]
    ungated = runs[0]
    ungated_rate = ungated.video_seconds / ungated.wall
    print(f"\nday bench: {args.cameras} cameras x {args.minutes:g} min of {args.size} {args.encoding} at "
          f"{args.fps:g} fps, model {args.model.name}, {SAMPLE_FPS:g} samples/s, "
          f"{args.device} ({len(os.sched_getaffinity(0))} cores)")
    if decoding:
        print("\ndecoding alone, video-seconds per wall-second (best of three)")
        print("| input | every frame | non-reference frames skipped | x | frames decoded |")
        print("|---|---|---|---|---|")
        for label, every, skipped, n_every, n_skipped in decoding:
            print(f"| {label} | {every:.0f} | {skipped:.0f} | {skipped / every:.2f} | {n_every} -> {n_skipped} |")
    print("\n| run | video-s/s | x ungated | x baseline | samples inferred | reused | inference | decode busy "
          "| waiting | counts against ungated |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| baseline: ultralytics stream, vid_stride ({base[0] / 60:.1f} min in all) | {base_rate:.2f} "
          f"| {base_rate / ungated_rate:.2f} | 1.00 | | | | | | |")
    for run in runs:
        rate = run.video_seconds / run.wall
        inferred, reused = run.count("samples_inferred"), run.count("samples_reused")
        busy = run.wall or 1.0
        if run is ungated:
            verdict = "(reference)"
        else:
            agreed = agreement(run, ungated)
            verdict = ("agree" if agreed.agrees else "DIFFER: " + "; ".join(agreed.differences[:3])) + (
                f" (occupied {100 * agreed.relative('occupied_seconds'):+.1f} %, person-s "
                f"{100 * agreed.relative('person_seconds'):+.1f} %)")
        print(f"| {run.label} | {rate:.2f} | {rate / ungated_rate:.2f} | {rate / base_rate:.2f} | {inferred} "
              f"| {reused} | {100 * run.total('inference_seconds') / busy:.0f} % "
              f"| {100 * run.total('decode_seconds') / busy:.0f} % "
              f"| {100 * run.total('waiting_for_frames_seconds') / busy:.0f} % | {verdict} |")
    print("\ninference, decode busy (the reader thread, beside inference), waiting (for decoded frames): shares of "
          "the run's wall time, model loads included in the wall time")
    if levels:
        print(f"\nworkers at once ({runs[1].label}{', CUDA' if cuda else ''}), total video-seconds per second")
        print("| workers | video-s/s | x one worker |")
        print("|---|---|---|")
        for n, rate in levels:
            print(f"| {n} | {rate:.2f} | {rate / levels[0][1]:.2f} |")
        saturated = next((n for (n, rate), (_, before) in zip(levels[1:], levels, strict=False)
                          if rate < before * 1.1), None)
        print(f"saturated at {saturated} workers (less than 10 % more than the level before)" if saturated
              else "not saturated at the levels tried")


if __name__ == "__main__":
    sys.exit(main())
