"""Export a .pt detector for the CPU engines, offline, once, at set-up time.

    python -m workers.export_model models/person.pt [--engines openvino onnxruntime]

Writes `<model>.openvino/` (model.xml, model.bin) and `<model>.onnxruntime/` (model.onnx) beside the
.pt, each with `source.json` naming the SHA-256 of the .pt it was made from and the model's classes.
An export already made from the same .pt is kept; one made from another is remade. Nothing is
downloaded: ultralytics' exporters run with its network and auto-installs off. The networks take
any input size that is a multiple of 32 (the worker letterboxes as ultralytics does).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from workers.engines import configure_offline, export_status, exported_path, source_digest

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--engines", nargs="+", choices=sorted(FORMATS), default=list(FORMATS))
    args = p.parse_args(argv)
    if not args.model.is_file():
        print(f"{args.model}: no such model file", file=sys.stderr)
        return 78
    digest = source_digest(args.model)
    for engine in args.engines:
        if export_status(args.model, engine, digest) is None:
            print(f"{exported_path(args.model, engine)}: up to date")
            continue
        print(f"{export(args.model, engine, digest)}: made from {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
