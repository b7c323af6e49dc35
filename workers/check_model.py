"""Whether a detector can do a job here, before any job runs: `video-supervisor model check`.

    python -m workers.check_model MODEL [--classes person ...] [--engine auto] [--device auto] [--json]

Checks that the weights load, that at least one class the regions count is among the model's
classes (through its own names or its sidecar's class map), and that the CPU exports beside it were
made from these very weights. The model's names come from a current export's description when there
is one (no torch import, a fraction of a second), else from loading the weights.

Exit 0: usable (warnings, if any, say what would make it faster); 78: unusable, with one line
naming the fix. With --json, one JSON object on stdout says the same for the supervisor.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from supervisor.protocol import ENGINES, EX_CONFIG, EX_OK
from workers.engines import CPU_PREFERENCE, configure_offline, export_status, exported_path, gpu_present, source_digest
from workers.errors import WorkerError
from workers.model_files import model_files


@dataclass
class Verdict:
    model: str
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    counted: list[str] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)  # engine -> "current" or why not
    names_from: str = ""


def model_names(model: Path, digest: str) -> tuple[dict[int, str], str]:
    """The model's class names by id, and where they were read from."""
    for engine in CPU_PREFERENCE:
        if export_status(model, engine, digest) is None:
            meta = exported_path(model, engine) / "source.json"
            try:
                names = json.loads(meta.read_text())["names"]
                return {int(k): str(v) for k, v in names.items()}, str(meta)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # a damaged description: load the weights instead
    configure_offline()
    try:
        from ultralytics import YOLO

        yolo = YOLO(str(model), task="detect")
        return {int(k): str(v) for k, v in yolo.names.items()}, "the weights"
    except Exception as exc:  # whatever a file that is not YOLO weights makes torch raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkerError(EX_CONFIG, f"{model}: cannot load it as YOLO weights ({reason[:200]})") from exc


def check(model_text: str, classes: Sequence[str], engine: str = "auto", device: str = "auto") -> Verdict:
    verdict = Verdict(model=model_text)
    try:
        model, class_map = model_files(model_text)
        verdict.model = str(model)
        digest = source_digest(model)
        for name in CPU_PREFERENCE:
            why = export_status(model, name, digest)
            verdict.exports[name] = "current" if why is None else why
        names, verdict.names_from = model_names(model, digest)
    except OSError as exc:
        verdict.problem = f"{model_text}: cannot read it: {exc.strerror or exc}"
        return verdict
    except WorkerError as exc:
        verdict.problem = str(exc)
        return verdict
    verdict.names = sorted(set(names.values()))
    verdict.counted = sorted({class_map.get(n, n) for n in names.values()} & set(classes))
    if not verdict.counted:
        mapped = f" (its sidecar maps {class_map})" if class_map else ""
        verdict.problem = (f"{model}: no class among {sorted(set(classes))}: its classes are {verdict.names}{mapped}; "
                           f"use a model that detects them, or map its classes in {model.name}.json, e.g. "
                           '{"class_map": {"Normal": "person"}}')
        return verdict
    if engine in CPU_PREFERENCE and verdict.exports[engine] != "current":
        verdict.problem = f"engine {engine}: {verdict.exports[engine]}"
    elif engine == "auto" and not device.startswith("cuda") and not gpu_present() \
            and all(v != "current" for v in verdict.exports.values()):
        verdict.warnings.append(f"{model}: no current CPU export, so jobs run on torch, 3-4x slower; make them: "
                                f"video-supervisor model export {model}")
    return verdict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video-supervisor model check", description=(__doc__ or "").splitlines()[0])
    p.add_argument("model")
    p.add_argument("--classes", nargs="+", default=["person"], help="the classes the regions count")
    p.add_argument("--engine", choices=ENGINES, default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout, for the supervisor")
    args = p.parse_args(argv)
    verdict = check(args.model, args.classes, args.engine, args.device)
    if args.json:
        print(json.dumps(asdict(verdict)))
    elif verdict.problem is None:
        print(f"{verdict.model}: usable; counts {', '.join(verdict.counted)} (classes from {verdict.names_from})")
        for engine, state in verdict.exports.items():
            print(f"  {engine}: {state}")
    for warning in verdict.warnings if not args.json else ():
        print(f"warning: {warning}", file=sys.stderr)
    if verdict.problem is not None and not args.json:
        print(verdict.problem, file=sys.stderr)
    return EX_OK if verdict.problem is None else EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
