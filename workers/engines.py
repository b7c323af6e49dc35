"""Inference engines behind one small interface: frames in, `Detections` out.

- torch: ultralytics' own predictor (CUDA with half precision and batching when a GPU is there).
- openvino, onnxruntime: the same network exported offline at set-up (`video-supervisor model export`),
  kept beside the .pt and keyed by the hash of its source. Their pre- and post-processing is ours,
  written to match ultralytics' (letterbox to a multiple of 32, NMS at IoU 0.7): boxes agree with the
  torch engine's within a pixel or two. Neither imports torch, so a job starts in a fraction of the time.

`auto` takes torch on a CUDA GPU, and on the CPU the fastest exported engine there is (OpenVINO, then
ONNX Runtime), with every usable core; without an exported model it takes torch and says why.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from supervisor.protocol import ENGINES, EX_CONFIG, EX_TEMPFAIL
from workers.counting import Detections, canonical_names
from workers.errors import WorkerError

# Fastest first, as measured by bench/worker.py and bench/day.py. The INT8 export is taken only where its
# counts matched the FP32 export's on the site's recordings when it was made (its source.json says).
CPU_PREFERENCE = ("openvino-int8", "openvino", "onnxruntime")
QUANTIZED = frozenset({"openvino-int8"})
STRIDE = 32
PAD_VALUE = 114
IOU_THRESHOLD = 0.7
MAX_DETECTIONS = 300
MAX_WH = 7680.0  # class offset for per-class NMS, as ultralytics does it


class Engine(Protocol):
    name: str
    device: str
    half: bool
    names: dict[int, str]  # canonical class names by class id

    def predict(self, images: Sequence[np.ndarray], *, conf: float, classes: Sequence[int],
                agnostic: bool) -> list[Detections]:
        ...


@dataclass(frozen=True, slots=True)
class Choice:
    """Which engine runs, on what, and why: written into summary.json."""

    engine: str
    device: str
    reason: str
    fallback: bool = False  # `auto` wanted a faster engine and could not have it


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) or 1


def exported_path(model: Path, engine: str) -> Path:
    """Where set-up puts the model exported for `engine`: beside the .pt."""
    return model.with_name(f"{model.name}.{engine}")


def source_digest(model: Path) -> str:
    h = hashlib.sha256()
    with open(model, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_status(model: Path, engine: str, digest: str | None = None) -> str | None:
    """None when an export for `engine` made from this very .pt is there; else why not."""
    folder = exported_path(model, engine)
    meta = folder / "source.json"
    if not meta.is_file():
        return f"no {engine} model at {folder} (made at set-up: video-supervisor model export {model})"
    try:
        recorded = json.loads(meta.read_text()).get("sha256")
    except (OSError, ValueError) as exc:
        return f"{meta}: unreadable ({exc})"
    if recorded != (digest or source_digest(model)):
        return f"{folder} was made from another {model.name}; remake it: video-supervisor model export {model}"
    return None


def agreement_status(model: Path, engine: str) -> str | None:
    """None when a quantised export's counts matched the FP32 export's on the recordings it was checked on
    (recorded in its source.json when it was made); else why `auto` must not take it."""
    if engine not in QUANTIZED:
        return None
    meta = exported_path(model, engine) / "source.json"
    try:
        agreement = json.loads(meta.read_text()).get("agreement") or {}
    except (OSError, ValueError) as exc:
        return f"{meta}: unreadable ({exc})"
    if not agreement:
        return f"{engine}: its counts were never checked against the FP32 export's"
    if not agreement.get("within_tolerance"):
        return (f"{engine}: its counts differed from the FP32 export's on {agreement.get('recordings', 0)} "
                f"recordings ({'; '.join(agreement.get('differences', [])[:3])})")
    return None


def gpu_present() -> bool:
    """Whether a CUDA GPU may be there, without importing torch (which costs seconds)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


def choose(requested: str, device: str, model: Path) -> Choice:
    """The engine a job uses. Explicit choices that cannot work are configuration errors (exit 78)."""
    if requested not in ENGINES:
        raise WorkerError(EX_CONFIG, f"unknown engine {requested!r} (known: {', '.join(ENGINES)})")
    wants_cuda = device.startswith("cuda") or (device == "auto" and gpu_present() and _cuda_available())
    if requested == "torch" or (requested == "auto" and wants_cuda):
        return Choice("torch", _torch_device(device), "requested" if requested == "torch" else "a CUDA GPU is there")
    if device.startswith("cuda"):
        raise WorkerError(EX_CONFIG, f"engine {requested} runs on the CPU; use --engine torch for --device {device}")
    digest = source_digest(model)
    if requested != "auto":
        why = export_status(model, requested, digest)
        if why is not None:
            raise WorkerError(EX_CONFIG, why)
        return Choice(requested, "cpu", "requested")
    reasons: list[str] = []
    for engine in CPU_PREFERENCE:
        why = export_status(model, engine, digest) or agreement_status(model, engine)
        if why is None:
            reason = "the fastest engine on this CPU" + (
                ", its counts checked against FP32 at export" if engine in QUANTIZED else "")
            return Choice(engine, "cpu", reason + (f" (passed over: {'; '.join(reasons)})" if reasons else ""))
        if engine not in QUANTIZED or exported_path(model, engine).exists():
            reasons.append(why)  # (no INT8 export at all is the ordinary case: not worth a word)
    return Choice("torch", "cpu", "no exported model: " + "; ".join(reasons), fallback=True)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _torch_device(requested: str) -> str:
    if requested == "auto":
        return "cuda:0" if gpu_present() and _cuda_available() else "cpu"
    if requested.startswith("cuda") and not _cuda_available():
        raise WorkerError(EX_TEMPFAIL, f"device {requested} requested but CUDA is not available")
    return requested


def load(choice: Choice, model: Path, class_map: Mapping[str, str], imgsz: int) -> Engine:
    if choice.engine == "torch":
        return TorchEngine(model, class_map, choice.device, imgsz)
    return ExportedEngine(choice.engine, model, class_map, imgsz)


def no_openvino_telemetry() -> None:
    """OpenVINO's converter loads a telemetry package on import that writes under $HOME and reports
    usage over the network; without it, OpenVINO uses its built-in stub. Call before importing openvino."""
    import sys

    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]


def private_dir() -> Path:
    """A folder of this user's for what libraries insist on writing: the service's state directory under
    systemd, else the temporary folder; never $HOME."""
    import tempfile

    base = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or tempfile.gettempdir()
    folder = Path(base) / f"video-supervisor-cache-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def keep_caches_private() -> None:
    """Libraries that write under the cache folder write to ours, unless the user chose one."""
    os.environ.setdefault("XDG_CACHE_HOME", str(private_dir() / "cache"))


def configure_offline() -> Path:
    """No downloads, no installs, no telemetry, no writes under $HOME: set before ultralytics is imported."""
    cfg = os.environ.get("YOLO_CONFIG_DIR") or str(private_dir() / "ultralytics")
    Path(cfg).mkdir(parents=True, exist_ok=True, mode=0o700)
    keep_caches_private()  # ONNX Runtime, on export
    os.environ.update({"YOLO_CONFIG_DIR": cfg, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0",
                       "YOLO_VERBOSE": "False", "HF_HUB_OFFLINE": "1"})
    no_openvino_telemetry()  # ultralytics' OpenVINO exporter imports it
    return Path(cfg)


class TorchEngine:
    name = "torch"

    def __init__(self, model: Path, class_map: Mapping[str, str], device: str, imgsz: int) -> None:
        configure_offline()
        from ultralytics import YOLO, settings

        settings.update({"sync": False})
        try:
            self._model = YOLO(str(model), task="detect")
        except Exception as exc:  # ultralytics raises many kinds for a bad checkpoint
            raise WorkerError(EX_CONFIG, f"model file {model} cannot be loaded: {type(exc).__name__}: {exc}") from exc
        self.names = canonical_names(self._model.names, class_map)
        self.device = device
        self.half = device.startswith("cuda")
        self._imgsz = imgsz

    def predict(self, images: Sequence[np.ndarray], *, conf: float, classes: Sequence[int],
                agnostic: bool) -> list[Detections]:
        results = self._model.predict(list(images), imgsz=self._imgsz, conf=conf, classes=list(classes),
                                      device=self.device, half=self.half, verbose=False, agnostic_nms=agnostic)
        return [Detections.from_ultralytics(r, self.names) for r in results]


class ExportedEngine:
    """OpenVINO or ONNX Runtime on the CPU, on the network exported from the .pt at set-up."""

    device = "cpu"
    half = False

    def __init__(self, engine: str, model: Path, class_map: Mapping[str, str], imgsz: int) -> None:
        self.name = engine
        folder = exported_path(model, engine)
        meta = json.loads((folder / "source.json").read_text())
        self.names = canonical_names({int(k): v for k, v in meta["names"].items()}, class_map)
        self._imgsz = imgsz
        self._run: Callable[[np.ndarray], Any]
        threads = usable_cores()
        try:
            if engine in ("openvino", "openvino-int8"):
                no_openvino_telemetry()
                import openvino

                core = openvino.Core()
                # The compiled network kept between jobs: compiling the INT8 model takes seconds, a cached one
                # loads in a fraction of that (the cache is keyed by the model file and the settings).
                core.set_property({"CACHE_DIR": str(private_dir() / "openvino-cache")})
                # f32 whatever the CPU: on one with AMX, OpenVINO would otherwise run bf16, whose boxes move by
                # pixels, so the same recording would count differently on two hosts of one site.
                compiled = core.compile_model(str(folder / "model.xml"), "CPU", {
                    "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_PRECISION_HINT": "f32"})
                self._run = lambda x: compiled(x)[0]
            else:
                keep_caches_private()  # ONNX Runtime writes a device id under the cache folder on import
                import onnxruntime

                onnxruntime.disable_telemetry_events()

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                options.log_severity_level = 3
                session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                                       providers=["CPUExecutionProvider"])
                input_name = session.get_inputs()[0].name
                self._run = lambda x: session.run(None, {input_name: x})[0]
        except Exception as exc:  # each runtime raises its own kinds for a bad file
            raise WorkerError(EX_CONFIG, f"{folder}: cannot be loaded by {engine}: {type(exc).__name__}: "
                                         f"{exc}") from exc

    def predict(self, images: Sequence[np.ndarray], *, conf: float, classes: Sequence[int],
                agnostic: bool) -> list[Detections]:
        out = []
        for image in images:
            tensor, gain, pad = letterbox(image, self._imgsz)
            raw = np.asarray(self._run(tensor))
            out.append(self._detections(raw[0], image.shape[:2], gain, pad, conf, classes, agnostic))
        return out

    def _detections(self, raw: np.ndarray, shape: tuple[int, int], gain: float, pad: tuple[float, float],
                    conf: float, classes: Sequence[int], agnostic: bool) -> Detections:
        height, width = shape
        pred = raw.T  # (candidates, 4 + classes): centre x, centre y, width, height, then class scores
        scores = pred[:, 4:]
        class_ids = scores.argmax(axis=1)
        best = scores[np.arange(len(scores)), class_ids]
        keep = best > conf
        if classes:
            keep &= np.isin(class_ids, list(classes))
        boxes = pred[keep, :4].astype(np.float64)
        best, class_ids = best[keep].astype(np.float64), class_ids[keep]
        if not len(boxes):
            return Detections.empty(width, height)
        xyxy = np.empty_like(boxes)
        xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2
        xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2
        xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2
        xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2
        offset = 0.0 if agnostic else 1.0
        kept = nms(xyxy + (class_ids[:, None] * MAX_WH * offset), best, IOU_THRESHOLD)[:MAX_DETECTIONS]
        xyxy, best, class_ids = xyxy[kept], best[kept], class_ids[kept]
        xyxy[:, [0, 2]] = (xyxy[:, [0, 2]] - pad[0]) / gain
        xyxy[:, [1, 3]] = (xyxy[:, [1, 3]] - pad[1]) / gain
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        names = np.array([self.names.get(int(c), str(c)) for c in class_ids], dtype=object)
        return Detections(xyxy.astype(np.float32), best.astype(np.float32), names, float(width), float(height))


def letterbox(image: np.ndarray, imgsz: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Scale to fit `imgsz`, pad to the next multiple of 32 (grey), BGR to RGB, 0..1, NCHW: what
    ultralytics does for a .pt model. Returns the tensor, the scale and the (left, top) padding."""
    import cv2

    h, w = image.shape[:2]
    gain = min(imgsz / h, imgsz / w)
    new_w, new_h = round(w * gain), round(h * gain)
    dw, dh = (imgsz - new_w) % STRIDE / 2, (imgsz - new_h) % STRIDE / 2
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    tensor = np.ascontiguousarray(padded[..., ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255.0
    return tensor, gain, (float(left), float(top))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept, best score first: greedy non-maximum suppression."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    while order.size:
        i = int(order[0])
        kept.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return np.array(kept, dtype=int)


def describe(engine: Engine, choice: Choice, load_seconds: float) -> dict[str, Any]:
    return {"name": engine.name, "device": engine.device, "half": engine.half, "reason": choice.reason,
            "threads": usable_cores() if engine.name != "torch" else None,
            "load_seconds": round(load_seconds, 3)}
