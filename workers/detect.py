"""The detection worker: one recording in, per-region people counts out.

    python -m workers.detect --video V --camera C --out DIR [--rois FILE] [--duration N]
                             [--model PATH] [--sample-fps 2] [--batch auto] [--device auto]
                             [--imgsz 640] [--conf 0.25] [--recorded-at ISO]

Writes DIR/counts.csv, DIR/events.jsonl and DIR/summary.json, each complete or
not at all. Speaks the supervisor's protocol: JSON progress lines on stdout, a
final {"event": "done", ...}, and exit codes 0 done, 65 bad input, 75 try again
later (CUDA out of memory, disk full), 78 bad configuration (ROI file, model),
143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .counting import Detections, OccupancyTracker, RegionCounter, canonical_names, wanted_class_ids
from .outputs import AtomicOutputs
from .rois import RoiError, load_rois

EX_OK, EX_DATAERR, EX_TEMPFAIL, EX_CONFIG, EX_TERM = 0, 65, 75, 78, 143
PROGRESS_INTERVAL = 0.5


class WorkerError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Stopped(BaseException):
    """Raised from the SIGTERM handler: unwinds at once, even out of a long computation."""


def _on_term(signum: int, frame: Any) -> None:
    raise Stopped


@dataclass(frozen=True, slots=True)
class VideoInfo:
    fps: float
    frames: int
    width: int
    height: int
    codec: str

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="workers.detect", description="Count people inside ROI polygons in a video.")
    p.add_argument("--video", required=True, type=Path)
    p.add_argument("--camera", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--rois", default="", help="ROI file; empty: count the whole frame")
    p.add_argument("--duration", type=float, default=0.0, help="only the first N seconds (0: all)")
    p.add_argument("--model", default=os.environ.get("VIDEO_SUPERVISOR_MODEL", "models/person.pt"))
    p.add_argument("--sample-fps", type=float, default=2.0)
    p.add_argument("--batch", default="auto", help="frames per inference call (auto: 8 on GPU, 1 on CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--debounce", type=float, default=1.0, help="gap (s) that ends an occupancy interval")
    p.add_argument("--recorded-at", default="", help="recording start (ISO); default: from the file name")
    args = p.parse_args(argv)
    if args.sample_fps <= 0 or args.imgsz < 32 or not 0 < args.conf < 1 or args.duration < 0:
        p.error("--sample-fps > 0, --imgsz >= 32, 0 < --conf < 1 and --duration >= 0 are required")
    return args


def recording_start(args: argparse.Namespace) -> datetime | None:
    if args.recorded_at:
        try:
            return datetime.fromisoformat(args.recorded_at)
        except ValueError:
            return None
    from supervisor.discovery import PathParser

    return PathParser().parse(Path(args.camera) / args.video.name)[1]


def open_video(path: Path) -> tuple[Any, VideoInfo]:
    # FFmpeg's own messages ("moov atom not found") would precede our one-line reason on stderr.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    if not path.is_file():
        raise WorkerError(EX_DATAERR, "no such video file")
    if path.stat().st_size == 0:
        raise WorkerError(EX_DATAERR, "the video file is empty")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise WorkerError(EX_DATAERR, f"cannot read the file: {exc.strerror or exc}") from exc
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise WorkerError(EX_DATAERR, "cannot open as a video (not a video, damaged, or an MP4 whose recorder "
                                      "stopped before writing its index)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
    codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ") or "unknown"
    if fps <= 0 or fps > 1000 or width <= 0 or height <= 0:
        cap.release()
        raise WorkerError(EX_DATAERR, f"no usable video stream (fps {fps:g}, size {width}x{height})")
    return cap, VideoInfo(fps, frames, width, height, codec)


class Timings:
    """Where the time went after the model was loaded: decoding, inference, everything else."""

    def __init__(self) -> None:
        self.decode = 0.0
        self.skip_decode = 0.0  # the part of `decode` spent on frames that were not sampled
        self.skipped = 0
        self.inference = 0.0
        self.load = 0.0
        self.started = time.perf_counter()

    def model_loaded(self) -> None:
        now = time.perf_counter()
        self.load = now - self.started
        self.started = now

    def as_dict(self, video_seconds: float, sampled: int) -> dict[str, float]:
        total = time.perf_counter() - self.started
        return {
            "model_load_seconds": round(self.load, 3),
            "total_seconds": round(total, 3), "decode_seconds": round(self.decode, 3),
            "skipped_frames": self.skipped, "skipped_decode_seconds": round(self.skip_decode, 4),
            "inference_seconds": round(self.inference, 3),
            "other_seconds": round(max(0.0, total - self.decode - self.inference), 3),
            "video_seconds_per_second": round(video_seconds / total, 3) if total > 0 else 0.0,
            "sampled_frames_per_second": round(sampled / total, 3) if total > 0 else 0.0,
        }


def sample_frames(cap: Any, info: VideoInfo, sample_fps: float, max_seconds: float,
                  timings: Timings) -> Iterator[tuple[int, float, Any]]:
    """Frames between samples are only grabbed (decoded just enough to advance), in a tight loop;
    sampled ones are converted too."""
    limit = round(max_seconds * info.fps) if max_seconds > 0 else None
    step = info.fps / sample_fps
    k, index = 0, 0
    grab = cap.grab
    while True:
        target = round(k * step)
        if limit is not None:
            target = min(target, limit)
        t0 = time.perf_counter()
        skipped = 0
        ended = False
        while index < target:
            if not grab():
                ended = True
                break
            index += 1
            skipped += 1
        spent = time.perf_counter() - t0
        timings.decode += spent
        timings.skip_decode += spent
        timings.skipped += skipped
        if ended or (limit is not None and index >= limit):
            break
        t0 = time.perf_counter()
        ok = grab()
        if ok:
            ok, frame = cap.retrieve()
        timings.decode += time.perf_counter() - t0
        if not ok:
            break
        yield index, index / info.fps, frame
        index += 1
        k += 1
    timings.frames_decoded = index  # type: ignore[attr-defined]


class FrameReader:
    """Decodes on its own thread, ahead of inference, so decoding overlaps the model's work.

    OpenCV releases the GIL while it decodes; the queue is small, so memory stays bounded.
    """

    _END = object()

    def __init__(self, frames: Iterator[tuple[int, float, Any]], depth: int) -> None:
        self._frames = frames
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(2, depth))
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._frames:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self.error = exc
        finally:
            while not self._stop.is_set():
                try:
                    self._queue.put(self._END, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def __iter__(self) -> Iterator[tuple[int, float, Any]]:
        while True:
            item = self._queue.get()
            if item is self._END:
                if self.error is not None:
                    raise self.error
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def configure_offline() -> Path:
    """No downloads, no installs, no telemetry, no writes under $HOME: set before ultralytics is imported."""
    cfg = os.environ.get("YOLO_CONFIG_DIR")
    if not cfg:
        base = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or tempfile.gettempdir()
        cfg = str(Path(base) / f"video-supervisor-ultralytics-{os.getuid()}")
    Path(cfg).mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.update({"YOLO_CONFIG_DIR": cfg, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0",
                       "YOLO_VERBOSE": "False", "HF_HUB_OFFLINE": "1"})
    return Path(cfg)


def resolve_device(requested: str) -> tuple[str, bool]:
    import torch

    if requested == "auto":
        return ("cuda:0", True) if torch.cuda.is_available() else ("cpu", False)
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise WorkerError(EX_TEMPFAIL, f"device {requested} requested but CUDA is not available")
    return requested, requested.startswith("cuda")


def load_model(path_text: str) -> tuple[Any, dict[int, str], dict[str, str], Path]:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise WorkerError(EX_CONFIG, f"model file {path} not found: place YOLO weights there (e.g. yolo11n.pt, or "
                                     "run `make models/person.pt` for the demo model), or pass --model; models "
                                     "are never downloaded at run time")
    class_map: dict[str, str] = {}
    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():
        try:
            class_map = dict(json.loads(sidecar.read_text()).get("class_map", {}))
        except (ValueError, AttributeError) as exc:
            raise WorkerError(EX_CONFIG, f"{sidecar}: not a valid model description ({exc})") from exc
    configure_offline()
    from ultralytics import YOLO, settings

    settings.update({"sync": False})
    try:
        model = YOLO(str(path), task="detect")
    except Exception as exc:  # ultralytics raises many kinds for a bad checkpoint
        raise WorkerError(EX_CONFIG, f"model file {path} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    names = canonical_names(model.names, class_map)
    return model, names, class_map, path


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def is_cuda_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


def run(args: argparse.Namespace) -> int:
    timings = Timings()
    try:
        regions = load_rois(Path(args.rois) if args.rois else None).regions_for(args.camera)
    except RoiError as exc:
        raise WorkerError(EX_CONFIG, str(exc)) from exc
    cap, info = open_video(args.video)
    try:
        return _process(args, cap, info, regions, timings)
    finally:
        cap.release()


def _process(args: argparse.Namespace, cap: Any, info: VideoInfo, regions: Any, timings: Timings) -> int:
    model, names, class_map, model_path = load_model(args.model)
    device, half = resolve_device(args.device)
    timings.model_loaded()
    batch = (8 if half else 1) if args.batch == "auto" else max(1, int(args.batch))
    wanted = sorted({c for r in regions for c in r.classes})
    class_ids = wanted_class_ids(names, wanted)
    if not class_ids:
        raise WorkerError(EX_CONFIG, f"model {model_path} has no class among {wanted} "
                                     f"(its classes: {sorted(set(names.values()))})")
    # Several model classes that mean the same thing (a fall model's Normal/Fall) must not double-count.
    agnostic = len({names[i] for i in class_ids}) < len(class_ids)
    counter = RegionCounter(regions)
    sample_seconds = 1.0 / min(args.sample_fps, info.fps)
    tracker = OccupancyTracker(regions, sample_seconds=sample_seconds, gap_seconds=args.debounce)
    start = recording_start(args)
    limit_frames = min(info.frames, round(args.duration * info.fps)) if args.duration else info.frames
    try:
        outputs = AtomicOutputs(args.out)
    except OSError as exc:
        raise WorkerError(EX_TEMPFAIL, f"cannot write results under {args.out}: {exc.strerror or exc}") from exc
    sampled = detections_total = 0
    readers: list[FrameReader] = []
    last_progress = 0.0
    last_t = 0.0
    try:
        counts_file = outputs.open("counts.csv")
        writer = csv.writer(counts_file)
        writer.writerow(["video_time_s", "recorded_time", *counter.names])
        pending: list[tuple[int, float, Any]] = []

        def flush() -> None:
            nonlocal sampled, detections_total
            t0 = time.perf_counter()
            results = model.predict([f for _, _, f in pending], imgsz=args.imgsz, conf=args.conf,
                                    classes=class_ids, device=device, half=half, verbose=False,
                                    agnostic_nms=agnostic)
            timings.inference += time.perf_counter() - t0
            for (_, t, _), result in zip(pending, results, strict=True):
                det = Detections.from_ultralytics(result, names)
                counts = counter.count(det, info.width, info.height)
                tracker.update(t, counts)
                detections_total += len(det)
                wall = (start + timedelta(seconds=t)).isoformat(timespec="milliseconds") if start else ""
                writer.writerow([f"{t:.3f}", wall, *counts])
            sampled += len(pending)
            pending.clear()

        reader = FrameReader(sample_frames(cap, info, args.sample_fps, args.duration, timings), depth=2 * batch)
        readers.append(reader)
        for index, t, frame in reader:
            pending.append((index, t, frame))
            last_t = t
            if len(pending) >= batch:
                flush()
            now = time.perf_counter()
            if now - last_progress >= PROGRESS_INTERVAL:
                last_progress = now
                emit({"event": "progress", "frame": index, "frames": limit_frames,
                      "fps": round(index / max(now - timings.started, 1e-6), 1)})
        if pending:
            flush()
        if sampled == 0:
            raise WorkerError(EX_DATAERR, "no frame could be decoded")
        frames_decoded = getattr(timings, "frames_decoded", 0)
        processed_seconds = frames_decoded / info.fps
        intervals = tracker.finish()
        events_file = outputs.open("events.jsonl")
        for iv in intervals:
            row = iv.as_dict()
            if start:
                row["start_time"] = (start + timedelta(seconds=iv.start)).isoformat(timespec="milliseconds")
                row["end_time"] = (start + timedelta(seconds=iv.end)).isoformat(timespec="milliseconds")
            events_file.write(json.dumps(row) + "\n")
        totals = tracker.totals()
        summary = {
            "video": str(args.video), "camera": args.camera,
            "recorded_at": start.isoformat() if start else None,
            "video_info": {"fps": round(info.fps, 3), "frames": info.frames, "width": info.width,
                           "height": info.height, "duration_seconds": round(info.duration, 3), "codec": info.codec},
            "processed_seconds": round(processed_seconds, 3), "frames_decoded": frames_decoded,
            "frames_sampled": sampled, "last_sample_time": round(last_t, 3),
            "model": {"path": str(model_path), "classes": sorted(set(names.values())), "class_map": class_map},
            "device": device, "half": half,
            "settings": {"sample_fps": args.sample_fps, "imgsz": args.imgsz, "conf": args.conf, "batch": batch,
                         "duration": args.duration, "debounce_seconds": args.debounce},
            "regions": {r.name: {**totals[r.name], "classes": list(r.classes),
                                 "polygon": [list(p) for p in r.points]} for r in regions},
            "intervals": len(intervals), "detections": detections_total,
            "timing": timings.as_dict(processed_seconds, sampled),
        }
        outputs.open("summary.json").write(json.dumps(summary, indent=2) + "\n")
        outputs.commit()
    except OSError as exc:
        outputs.abort()
        raise WorkerError(EX_TEMPFAIL, f"cannot write results under {args.out}: {exc.strerror or exc}") from exc
    except BaseException:
        outputs.abort()
        raise
    finally:
        for reader in readers:
            reader.close()  # before the capture is released under it
    emit({"event": "done", "output": str(args.out / "summary.json"), "video_seconds": round(processed_seconds, 3),
          "frames_sampled": sampled, "detections": detections_total,
          "regions": {name: t["person_seconds"] for name, t in totals.items()}})
    return EX_OK


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _on_term)
    args = parse_args(argv)
    try:
        return run(args)
    except WorkerError as exc:
        print(f"{args.video}: {exc}", file=sys.stderr)
        return exc.code
    except Stopped:
        print(f"{args.video}: stopped by SIGTERM; no results written", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        # Temporary files are gone and the capture is released: skip the interpreter's slow teardown of
        # torch, so a stop takes a fraction of a second however much the model loaded.
        os._exit(EX_TERM)
    except Exception as exc:
        if is_cuda_oom(exc):
            print(f"{args.video}: CUDA out of memory; will be retried", file=sys.stderr)
            return EX_TEMPFAIL
        raise


if __name__ == "__main__":
    sys.exit(main())
