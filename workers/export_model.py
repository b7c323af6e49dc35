"""Export a .pt detector for the CPU engines, offline, once, at set-up time.

    python -m workers.export_model models/person.pt [--engines openvino onnxruntime]
    python -m workers.export_model models/person.pt --int8 --calibrate VIDEOS_DIR [--check DIR]

Writes `<model>.openvino/` (model.xml, model.bin) and `<model>.onnxruntime/` (model.onnx) beside the
.pt, each with `source.json` naming the SHA-256 of the .pt it was made from and the model's classes.
An export already made from the same .pt is kept; one made from another is remade. Nothing is
downloaded: ultralytics' exporters run with its network and auto-installs off. The networks take
any input size that is a multiple of 32 (the worker letterboxes as ultralytics does).

`--int8` also writes `<model>.openvino-int8/`: the OpenVINO model quantised to INT8 by NNCF's
post-training quantisation, calibrated on frames taken from the site's own recordings (`--calibrate`,
a folder searched for videos; no data set is downloaded), the detection head kept in floating point
as ultralytics does. Its counts are then compared with the FP32 export's on recordings (`--check`,
the calibration folder by default), the worker run on each with either engine, and the agreement is
written into its source.json: `auto` takes the INT8 model only where it agreed (see
`workers.agreement`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workers.agreement import Agreement
from workers.engines import (
    configure_offline,
    export_status,
    exported_path,
    letterbox,
    no_openvino_telemetry,
    source_digest,
)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".ts", ".m4v", ".webm")
INT8 = "openvino-int8"
REPO = Path(__file__).resolve().parent.parent

FORMATS = {"openvino": "openvino", "onnxruntime": "onnx"}


def export(model: Path, engine: str, digest: str) -> Path:
    """Export `model` for `engine` into its folder beside the .pt; returns the folder."""
    configure_offline()
    from ultralytics import YOLO, __version__

    target = exported_path(model, engine)
    with tempfile.TemporaryDirectory(dir=model.parent) as d:
        work = Path(d) / "model.pt"
        shutil.copyfile(model, work)  # ultralytics writes its exports beside the file it reads
        yolo = YOLO(str(work), task="detect")
        made = Path(yolo.export(format=FORMATS[engine], dynamic=True, imgsz=640, simplify=True, verbose=False))
        staged = Path(d) / "staged"
        staged.mkdir()
        if engine == "openvino":
            shutil.move(str(made / "model.xml"), staged / "model.xml")
            shutil.move(str(made / "model.bin"), staged / "model.bin")
        else:
            shutil.move(str(made), staged / "model.onnx")
        (staged / "source.json").write_text(json.dumps({
            "source": model.name, "sha256": digest, "engine": engine,
            "names": {str(k): v for k, v in yolo.names.items()}, "dynamic": True, "ultralytics": __version__,
        }, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)  # whole or not at all
    return target


def find_videos(folder: Path, limit: int = 0) -> list[Path]:
    """Recordings under `folder` (recursively, by suffix), spread evenly over the sorted list when more
    than `limit` (0: all)."""
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                   and not p.name.startswith("."))
    if limit and len(found) > limit:
        found = [found[round(i * (len(found) - 1) / (limit - 1))] for i in range(limit)] if limit > 1 else found[:1]
    return found


def calibration_frames(videos: Sequence[Path], count: int, imgsz: int) -> list[np.ndarray]:
    """About `count` frames spread evenly over the recordings, letterboxed as the worker feeds them
    (uint8, NCHW, to keep memory small; scaled to 0..1 when handed to the quantiser)."""
    from workers.decode import VideoSource
    from workers.errors import WorkerError

    per_video = max(1, math.ceil(count / max(1, len(videos))))
    frames: list[np.ndarray] = []
    for video in videos:
        try:
            source = VideoSource(video)
        except WorkerError as exc:
            print(f"{video}: skipped for calibration ({exc})", file=sys.stderr)
            continue
        try:
            duration = source.info.duration or 60.0
            rate = per_video / max(duration, 1.0)
            for taken, sample in enumerate(source.samples(rate), start=1):
                tensor, _, _ = letterbox(sample.image, imgsz)
                frames.append((tensor * 255.0).round().astype(np.uint8))
                if taken >= per_video:
                    break
        finally:
            source.close()
    return frames[:count] if len(frames) > count else frames


def _head_scope(ov_model: Any) -> Any:
    """The detection head's operations, kept in floating point (boxes and scores lose too much in INT8):
    the last Sigmoid's module and its DFL, as ultralytics' own INT8 export chooses them."""
    import nncf

    operations = ov_model.get_ordered_ops()
    sigmoids = [op.get_friendly_name() for op in operations if op.get_type_name() == "Sigmoid"]
    if not sigmoids:
        return None
    head = sigmoids[-1].split("/", 1)[0]
    return nncf.IgnoredScope(names=[op.get_friendly_name() for op in operations
                                    if op.get_type_name() == "Sigmoid"
                                    or op.get_friendly_name().startswith((f"{head}/", f"{head}.dfl"))])


def export_int8(model: Path, calibrate: Sequence[Path], *, frames: int = 300, imgsz: int = 640,
                check: Sequence[Path] | None = None, check_seconds: float = 600.0,
                digest: str | None = None) -> dict[str, Any]:
    """Quantise `model`'s OpenVINO export to INT8 on frames of the `calibrate` recordings, write it to
    `<model>.openvino-int8/`, then compare its counts with the FP32 export's on the `check` recordings
    (default: the calibration ones; at most `check_seconds` of each) and record that agreement in its
    source.json. Makes the FP32 OpenVINO export first where it is missing or stale. Returns source.json."""
    digest = digest or source_digest(model)
    if export_status(model, "openvino", digest) is not None:
        export(model, "openvino", digest)
    if not calibrate:
        raise ValueError("no recordings to calibrate on")
    images = calibration_frames(calibrate, frames, imgsz)
    if not images:
        raise ValueError("no frame could be decoded from the calibration recordings")
    no_openvino_telemetry()
    import logging

    import nncf
    import openvino

    logging.getLogger("nncf").setLevel(logging.WARNING)  # else a line for each operation left unquantised

    fp32 = exported_path(model, "openvino")
    ov_model = openvino.Core().read_model(str(fp32 / "model.xml"))
    dataset = nncf.Dataset(images, lambda image: image.astype(np.float32) / 255.0)
    quantised = nncf.quantize(ov_model, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(images),
                              ignored_scope=_head_scope(ov_model))
    target = exported_path(model, INT8)
    names = json.loads((fp32 / "source.json").read_text())["names"]
    meta: dict[str, Any] = {
        "source": model.name, "sha256": digest, "engine": INT8, "names": names, "dynamic": True,
        "nncf": nncf.__version__, "openvino": openvino.__version__,
        "calibration": {"recordings": [str(p) for p in calibrate], "frames": len(images), "imgsz": imgsz},
        "agreement": None,
    }
    with tempfile.TemporaryDirectory(dir=model.parent) as d:
        staged = Path(d) / "staged"
        staged.mkdir()
        openvino.save_model(quantised, str(staged / "model.xml"), compress_to_fp16=False)
        _write_json(staged / "source.json", meta)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)  # whole or not at all; `auto` passes it over until the agreement is in
    agreement = compare_engines(model, check if check is not None else calibrate, "openvino", INT8,
                                seconds=check_seconds, imgsz=imgsz)
    meta["agreement"] = agreement.as_dict()
    _write_json(target / "source.json", meta)
    return meta


def compare_engines(model: Path, videos: Sequence[Path], reference: str, other: str, *, seconds: float = 0.0,
                    imgsz: int = 640) -> Agreement:
    """The worker (ungated) on each recording with either engine, their region totals compared."""
    agreement = Agreement()
    with tempfile.TemporaryDirectory() as d:
        for i, video in enumerate(videos):
            runs = [_count(video, Path(d) / f"{i}-{engine}", model, engine, seconds, imgsz)
                    for engine in (reference, other)]
            if runs[0] is not None and runs[1] is not None:
                agreement.add(video.name, runs[0], runs[1])
    return agreement


def _count(video: Path, out: Path, model: Path, engine: str, seconds: float, imgsz: int) -> dict[str, Any] | None:
    proc = subprocess.run([sys.executable, "-m", "workers.detect", f"--video={video}", "--camera=check",
                           f"--out={out}", f"--model={model}", f"--engine={engine}", f"--imgsz={imgsz}",
                           f"--duration={seconds:g}", "--motion-gate=off"],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        print(f"{video}: not compared ({proc.stderr.strip().splitlines()[-1:] or proc.returncode})", file=sys.stderr)
        return None
    regions: dict[str, Any] = json.loads((out / "summary.json").read_text())["regions"]
    return regions


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _iter_lines(meta: dict[str, Any]) -> Iterator[str]:
    agreement = meta["agreement"] or {}
    yield f"calibrated on {meta['calibration']['frames']} frames of {len(meta['calibration']['recordings'])} recordings"
    verdict = "agrees" if agreement.get("within_tolerance") else "DISAGREES"
    yield (f"counts against FP32 on {agreement.get('recordings', 0)} recordings: {verdict} "
           f"(person-seconds {agreement.get('totals', {}).get('person_seconds')} against "
           f"{agreement.get('reference_totals', {}).get('person_seconds')})")
    for line in agreement.get("differences", [])[:10]:
        yield f"  {line}"
    yield ("`auto` will take it" if agreement.get("within_tolerance")
           else "`auto` will keep the FP32 model (`--engine openvino-int8` still insists)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--engines", nargs="+", choices=sorted(FORMATS), default=list(FORMATS))
    p.add_argument("--int8", action="store_true", help="also make the INT8 OpenVINO model (needs --calibrate)")
    p.add_argument("--calibrate", type=Path, help="a folder of the site's recordings to take calibration frames from")
    p.add_argument("--check", type=Path, help="recordings to compare INT8 counts with FP32 on (default: --calibrate)")
    p.add_argument("--frames", type=int, default=300, help="calibration frames, spread over the recordings")
    p.add_argument("--max-recordings", type=int, default=20, help="recordings taken from each folder, spread evenly")
    p.add_argument("--check-seconds", type=float, default=600.0, help="seconds of each check recording compared")
    args = p.parse_args(argv)
    if not args.model.is_file():
        print(f"{args.model}: no such model file", file=sys.stderr)
        return 78
    if args.int8 and (args.calibrate is None or not args.calibrate.is_dir()):
        print("--int8 needs --calibrate FOLDER: recordings of the site's own cameras", file=sys.stderr)
        return 78
    digest = source_digest(args.model)
    for engine in args.engines:
        if export_status(args.model, engine, digest) is None:
            print(f"{exported_path(args.model, engine)}: up to date")
            continue
        print(f"{export(args.model, engine, digest)}: made from {args.model}")
    if args.int8:
        calibrate = find_videos(args.calibrate, args.max_recordings)
        check = find_videos(args.check, args.max_recordings) if args.check else calibrate
        if not calibrate or not check:
            print(f"no recordings under {args.calibrate if not calibrate else args.check}", file=sys.stderr)
            return 78
        meta = export_int8(args.model, calibrate, frames=args.frames, check=check, check_seconds=args.check_seconds,
                           digest=digest)
        print(f"{exported_path(args.model, INT8)}: made from {args.model}")
        for line in _iter_lines(meta):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
