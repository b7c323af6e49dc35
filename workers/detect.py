"""The detection worker: one recording in, per-region people counts out.

    python -m workers.detect --video=V --camera=C --out=DIR [--rois=FILE] [--duration=N]
                             [--model=PATH] [--engine=auto] [--sample-fps=2] [--batch=auto] [--device=auto]
                             [--imgsz=640] [--conf=0.25] [--max-frame-gap=2]
                             [--recorded-at=ISO or START/END]
                             [--motion-gate=on] [--motion-threshold=6] [--motion-max-reuse=10]
                             [--skip-frames=off] [--decode=auto]

Writes DIR/counts.csv, DIR/events.jsonl and DIR/summary.json, each complete or
not at all. Every time in them comes from the frames' presentation timestamps.
Speaks the supervisor's protocol: JSON progress lines on stdout, a final
{"event": "done", ...}, and exit codes 0 done (damage, if any, is reported in
the summary and the done event), 65 nothing decodable, 75 try again later (CUDA
out of memory, disk full), 78 bad configuration (ROI file, model), 143 stopped
by SIGTERM.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from supervisor.protocol import ENGINES, EX_CONFIG, EX_DATAERR, EX_OK, EX_TEMPFAIL, EX_TERM, results
from supervisor.protocol.hours import HourBuckets, HourRow
from supervisor.protocol.lifeline import die_with_parent
from supervisor.protocol.names import parse_recorded
from supervisor.protocol.rois import RoiError, check_frame_size, load_rois
from workers import engines
from workers.counting import Detections, Interval, OccupancyTracker, RegionCounter, wanted_class_ids
from workers.decode import DecodeReport, Sample, VideoInfo, VideoSource
from workers.errors import WorkerError
from workers.model_files import model_files
from workers.motion import THUMB_WIDTH, MotionGate, MotionSettings
from workers.outputs import AtomicOutputs, UnsafeOutput
from workers.reader import FrameReader
from workers.recording_time import RecordingTime

PROGRESS_INTERVAL = 0.5
DEFAULT_MOTION = MotionSettings(enabled=True)  # as [worker] motion_gate; see README, Benchmarks


class Stopped(BaseException):
    """Raised from the SIGTERM handler: unwinds at once, even out of a long computation."""


def _on_term(signum: int, frame: Any) -> None:
    raise Stopped


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
    p.add_argument("--engine", default="auto", choices=ENGINES,
                   help="auto: torch on a CUDA GPU, else the fastest exported CPU engine (openvino, onnxruntime)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--debounce", type=float, default=1.0,
                   help="seconds with nobody (counted as samples in a row) that end an occupancy interval")
    p.add_argument("--max-frame-gap", type=float, default=2.0,
                   help="seconds one frame may stand for when frames are sparse; beyond, the time is unknown")
    p.add_argument("--motion-gate", choices=("on", "off"), default="on" if DEFAULT_MOTION.enabled else "off",
                   help="run the network only on samples where the picture changed since the last inferred one; "
                        "others reuse its detections")
    p.add_argument("--motion-threshold", type=float, default=DEFAULT_MOTION.threshold,
                   help="mean grey-level difference (0-255) in one cell of the small grey picture that is motion")
    p.add_argument("--motion-max-reuse", type=float, default=DEFAULT_MOTION.max_reuse_seconds,
                   help="seconds of video after which a sample is inferred whatever moved")
    p.add_argument("--decode", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to decode: cuda is NVDEC through FFmpeg (falls back to the CPU where unavailable); "
                        "auto: cuda when inference runs on a CUDA GPU")
    p.add_argument("--skip-frames", choices=("auto", "off"), default="off",
                   help="auto: where samples are 3 or more frames apart and frames come densely, leave frames no "
                        "other frame refers to (B-frames) undecoded (a sample may then be up to two frames "
                        "later than the first of its slot); off: decode every frame")
    p.add_argument("--recorded-at", default="",
                   help="recording start, or start/end (ISO 8601); default: from the file name, else the "
                        "file's mtime minus its duration (marked estimated)")
    args = p.parse_args(argv)
    if args.sample_fps <= 0 or args.imgsz < 32 or not 0 < args.conf < 1 or args.duration < 0 \
            or args.max_frame_gap <= 0 or args.motion_threshold <= 0 or args.motion_max_reuse <= 0:
        p.error("--sample-fps > 0, --imgsz >= 32, 0 < --conf < 1, --duration >= 0, --max-frame-gap > 0, "
                "--motion-threshold > 0 and --motion-max-reuse > 0 are required")
    try:
        parse_recorded(args.recorded_at)
    except ValueError as exc:
        p.error(f"--recorded-at: {exc}")
    return args


class Timings:
    """Where the time went after the model was loaded: decoding (on the reader thread), inference, the rest."""

    def __init__(self) -> None:
        self.inference = 0.0
        self.load = 0.0
        self.started = time.perf_counter()

    def model_loaded(self) -> None:
        now = time.perf_counter()
        self.load = now - self.started
        self.started = now

    def as_dict(self, report: DecodeReport, video_seconds: float, sampled: int,
                waited: float) -> dict[str, float]:
        """`decode_seconds`: the reader thread's busy time, beside inference; `waiting_for_frames_seconds`:
        the part of it the worker had to wait for (decoding that inference did not hide)."""
        total = time.perf_counter() - self.started
        return {
            "model_load_seconds": round(self.load, 3),
            "total_seconds": round(total, 3), "decode_seconds": round(report.decode_seconds, 3),
            "waiting_for_frames_seconds": round(waited, 3),
            "frames_decoded": report.frames_decoded,
            "read_bytes": report.read_bytes, "read_wait_seconds": round(report.read_seconds, 3),
            "read_mb_per_second": round(report.read_bytes / 2**20 / report.read_seconds, 1)
            if report.read_seconds > 0 else 0.0,
            "inference_seconds": round(self.inference, 3),
            "other_seconds": round(max(0.0, total - waited - self.inference), 3),
            "video_seconds_per_second": round(video_seconds / total, 3) if total > 0 else 0.0,
            "sampled_frames_per_second": round(sampled / total, 3) if total > 0 else 0.0,
        }




def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def is_cuda_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


def run(args: argparse.Namespace) -> int:
    timings = Timings()
    try:
        rois = load_rois(Path(args.rois) if args.rois else None)
        regions = rois.regions_for(args.camera)
    except RoiError as exc:
        raise WorkerError(EX_CONFIG, str(exc)) from exc
    identity = video_identity(args.video)
    # Decided before the model loads (the source's size is checked against the ROIs first): a CUDA
    # device asked for, or `auto` with a GPU there, decodes on NVDEC too.
    wants_nvdec = args.decode == "cuda" or (args.decode == "auto" and (args.device.startswith("cuda") or (
        args.device == "auto" and args.engine in ("auto", "torch") and engines.gpu_present())))
    source = VideoSource(args.video, hwaccel="cuda" if wants_nvdec else "")
    try:
        try:
            check_frame_size(regions, source.info.width, source.info.height, args.camera, rois.source)
        except RoiError as exc:
            raise WorkerError(EX_CONFIG, str(exc)) from exc
        return _process(args, source, regions, timings, identity)
    finally:
        source.close()


def video_identity(path: Path) -> dict[str, Any]:
    """What summary.json names the recording by, so a result set can be checked against its video later."""
    try:
        return results.video_identity(path)
    except OSError as exc:
        raise WorkerError(EX_DATAERR, f"cannot read the file: {exc.strerror or exc}") from exc


def _process(args: argparse.Namespace, source: VideoSource, regions: Any, timings: Timings,
             identity: dict[str, Any]) -> int:
    info = source.info
    model_path, class_map = model_files(args.model)
    choice = engines.choose(args.engine, args.device, model_path)
    model = engines.load(choice, model_path, class_map, args.imgsz)
    names, device, half = model.names, model.device, model.half
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
    # A file with fewer frames a second than samples asked for gets one sample per frame.
    sample_fps = min(args.sample_fps, info.fps) if info.fps > 0 else args.sample_fps
    # Decoding already ends a sample's time at any gap longer than --max-frame-gap; the cap is a backstop.
    tracker = OccupancyTracker(regions, close_after=OccupancyTracker.samples_for(args.debounce, sample_fps),
                               max_weight=max(args.max_frame_gap, 2.0 / sample_fps))
    when = RecordingTime.resolve(args.recorded_at, args.video, args.camera)
    expected_end = min(args.duration, info.duration or args.duration) if args.duration else (info.duration or 0.0)
    try:
        outputs = AtomicOutputs(args.out)
    except UnsafeOutput as exc:
        raise WorkerError(EX_DATAERR, f"refusing to write results: {exc.strerror}") from exc
    except OSError as exc:
        raise WorkerError(EX_TEMPFAIL, f"cannot write results under {args.out}: {exc.strerror or exc}") from exc
    sampled = detections_total = 0
    readers: list[FrameReader] = []
    last_progress = 0.0
    report = source.report
    try:
        # Written at the end, when an estimated start is known: two short rows a second.
        rows: list[tuple[float, list[int]]] = []
        # Samples in order, each with whether it is inferred; a reused one takes the detections of the
        # inferred sample before it, which may still be waiting in this batch.
        pending: list[tuple[Sample, bool]] = []
        last_found: list[Detections] = []
        gate = MotionGate(MotionSettings(args.motion_gate == "on", args.motion_threshold, args.motion_max_reuse),
                          regions=tuple(regions))

        def flush() -> None:
            nonlocal sampled, detections_total
            images = [s.image for s, infer in pending if infer]
            found: list[Detections] = []
            if images:
                t0 = time.perf_counter()
                found = model.predict(images, conf=args.conf, classes=class_ids, agnostic=agnostic)
                timings.inference += time.perf_counter() - t0
            results_left = iter(found)
            for sample, infer in pending:
                if infer:
                    last_found[:] = [next(results_left)]
                det = last_found[0] if last_found else Detections.empty()
                sample.release()
                counts = counter.count(det)
                tracker.update(sample.t, counts, prev_end=sample.prev_end, break_before=sample.break_before)
                detections_total += len(det)
                rows.append((sample.t, counts))
            sampled += len(pending)
            pending.clear()

        gated = gate.settings.enabled
        # What became of each sample since the last progress line: "i" inferred, "r" reused, in order.
        decisions: list[str] = []
        decided_from: float | None = None

        def progress(position: float, now: float) -> None:
            nonlocal decided_from
            emit({"event": "progress", "position_seconds": round(position, 3),
                  "duration_seconds": round(expected_end, 3), "frame": report.frames_decoded,
                  "frames": round(expected_end * info.fps) if info.fps else 0,
                  "fps": round(report.frames_decoded / max(now - timings.started, 1e-6), 1),
                  "sample": "inferred" if decisions[-1] == "i" else "reused",
                  "samples": "".join(decisions), "samples_from_seconds": round(decided_from or 0.0, 3),
                  "samples_inferred": gate.inferred, "samples_reused": gate.reused,
                  "read_bytes": report.read_bytes, "read_wait_seconds": round(report.read_seconds, 3)})
            decisions.clear()
            decided_from = None

        reader = FrameReader(source.samples(sample_fps, args.duration, args.max_frame_gap,
                                            thumb_width=THUMB_WIDTH if gated else 0, convert=not gated,
                                            skip=args.skip_frames),
                             depth=2 * batch)
        readers.append(reader)
        waiting = 0  # samples in `pending` to be inferred
        for sample in reader:
            infer = gate.decide(sample.t, sample.thumb, break_before=sample.break_before)
            if not infer:
                sample.release()  # its picture is never needed: free the decoder's frame at once
            pending.append((sample, infer))
            waiting += infer
            if waiting >= batch or not waiting:
                flush()
                waiting = 0
            decisions.append("i" if infer else "r")
            decided_from = sample.t if decided_from is None else decided_from
            now = time.perf_counter()
            if now - last_progress >= PROGRESS_INTERVAL:
                last_progress = now
                progress(sample.t, now)
        if decisions:
            progress(report.last_t or 0.0, time.perf_counter())
        if pending:
            flush()
        refuse_if_not_a_recording(report)
        covered = args.duration if report.limited else report.end_time()
        intervals = tracker.finish(report.cover_end)
        gate.finish(report.cover_end)
        # The whole recording's length: with --duration, what the file says beyond the part read.
        when.settle(max(covered, info.duration or 0.0) if report.limited else covered)
        if when.warning:
            print(f"{args.video}: warning: {when.warning}", file=sys.stderr)
            emit({"event": "warning", "message": when.warning})
        writer = csv.writer(outputs.open("counts.csv"))
        writer.writerow(["video_time_s", "recorded_time_estimated" if when.estimated else "recorded_time",
                         *counter.names])
        writer.writerows([f"{t:.3f}", when.at(t), *counts] for t, counts in rows)
        events_file = outputs.open("events.jsonl")
        for iv in intervals:
            row = iv.as_dict()
            if when.start:
                row["start_time"], row["end_time"] = when.at(iv.start), when.at(iv.end)
            events_file.write(json.dumps(row) + "\n")
        totals = tracker.totals()
        hours = hour_rows(when, tracker, intervals, report)
        damage = {"damaged": bool(report.spans), "seconds": round(report.damaged_seconds, 3),
                  "decode_errors": report.decode_errors, "spans": [span.as_dict() for span in report.spans]}
        summary = {
            "video": identity, "camera": args.camera,
            "recorded_at": when.start.isoformat() if when.start else None, "recording_time": when.as_dict(),
            "video_info": video_info_dict(info),
            "processed_seconds": round(covered, 3), "duration_limited": report.limited,
            "frames_decoded": report.frames_decoded, "frames_sampled": sampled,
            "samples_inferred": gate.inferred, "samples_reused": gate.reused, "motion": gate.as_dict(),
            "first_sample_time": round(report.first_t or 0.0, 3), "last_sample_time": round(report.last_t or 0.0, 3),
            "damage": damage,
            "clock": {"frame_interval": round(report.frame_interval, 4),
                      "discontinuities": [d.as_dict() for d in report.discontinuities],
                      "unobserved_seconds": round(report.unobserved_seconds, 3),
                      "unobserved": [g.as_dict() for g in report.gaps],
                      "observed_seconds": round(tracker.observed_seconds, 3)},
            "model": {"path": str(model_path), "classes": sorted(set(names.values())), "class_map": class_map},
            "device": device, "half": half, "engine": engines.describe(model, choice, timings.load),
            "settings": {"sample_fps": sample_fps, "imgsz": args.imgsz, "conf": args.conf, "batch": batch,
                         "duration": args.duration, "debounce_seconds": args.debounce,
                         "debounce_samples": tracker.close_after, "max_frame_gap": args.max_frame_gap,
                         "skip_frames": args.skip_frames, "non_reference_frames_skipped": report.skipping,
                         "decoder": source.decoder, "decoder_note": source.decoder_note or None},
            "regions": {r.name: {**totals[r.name], "classes": list(r.classes),
                                 "polygon": None if r.whole_frame else [list(p) for p in r.points]}
                        for r in regions},
            "intervals": len(intervals), "detections": detections_total,
            "hours": [row.as_dict() for row in hours],
            "timing": timings.as_dict(report, covered, sampled, reader.waited),
            **gpu_memory(device),
        }
        # Written last: its presence means the whole result set is there.
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
            reader.close()  # before the container is closed under it
    emit({"event": "done", "output": str(args.out / "summary.json"), "video_seconds": round(covered, 3),
          "duration_limited": report.limited, "damaged_seconds": damage["seconds"],
          "damaged_spans": len(report.spans), "discontinuities": len(report.discontinuities),
          "frames_sampled": sampled, "samples_inferred": gate.inferred, "samples_reused": gate.reused,
          "detections": detections_total,
          "model_load_seconds": round(timings.load, 3), "engine": model.name,
          "engine_fallback": choice.reason if choice.fallback else None,
          "regions": {name: t["person_seconds"] for name, t in totals.items()}})
    return EX_OK


def hour_rows(when: RecordingTime, tracker: OccupancyTracker, intervals: Sequence[Interval],
              report: DecodeReport) -> list[HourRow]:
    """People by hour of recorded time, for the store's aggregates; none without a recording time."""
    if when.start is None:
        return []
    buckets = HourBuckets(when.start, [r.name for r in tracker.regions])
    for t, seconds, counts in tracker.settled:
        buckets.sample(t, seconds, counts)
    for iv in intervals:
        buckets.interval(iv.region, iv.start, iv.end)
    for span in report.spans:
        buckets.damage(span.start, span.end)
    return buckets.rows()


def refuse_if_not_a_recording(report: DecodeReport) -> None:
    """Nothing decodable, a single picture, or frames that all share one time: no recording to count."""
    errors = f" ({report.decode_errors} decoding errors)" if report.decode_errors else ""
    if report.frames_decoded == 0:
        raise WorkerError(EX_DATAERR, "no frame could be decoded" + errors)
    if report.frames_decoded == 1:
        raise WorkerError(EX_DATAERR, ("only one frame could be decoded" + errors) if report.spans or errors
                          else "a single image, not a recording (one frame)")
    if report.last_t == report.first_t:
        raise WorkerError(EX_DATAERR, f"no duration: all {report.frames_decoded} frames carry the same time")


def gpu_memory(device: str) -> dict[str, Any]:
    """Peak GPU memory of this worker (what the memory-admission policy needs), on CUDA only."""
    if not device.startswith("cuda"):
        return {}
    import torch

    return {"gpu_memory": {"max_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20),
                           "max_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20)}}


def video_info_dict(info: VideoInfo) -> dict[str, Any]:
    return {"fps": round(info.fps, 3), "width": info.width, "height": info.height,
            "duration_seconds": round(info.duration, 3) if info.duration is not None else None,
            "codec": info.codec, "container": info.container, "rotation": info.rotation}


def main(argv: Sequence[str] | None = None) -> int:
    die_with_parent()
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
