"""A detector on disk: its weights, its sidecar description, and the classes it can count.

The sidecar `MODEL.json` beside the weights maps the model's own class names to the names regions
count (`{"class_map": {"Normal": "person", "Fall": "person"}}` for a fall model). It is optional.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from supervisor.protocol import EX_CONFIG
from workers.errors import WorkerError

FETCH_HINT = "`video-supervisor model fetch` gets the demo's person model"


def model_files(path_text: str) -> tuple[Path, dict[str, str]]:
    """The weights file and the class map of its sidecar description."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise WorkerError(EX_CONFIG, f"model file {path} not found: place YOLO weights there (e.g. yolo11n.pt; "
                                     f"{FETCH_HINT}), or pass --model; models are never downloaded at run time")
    class_map: dict[str, str] = {}
    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():
        try:
            raw = json.loads(sidecar.read_text()).get("class_map", {})
            if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
                raise ValueError("class_map must map class names to class names")
            class_map = dict(raw)
        except (ValueError, AttributeError) as exc:
            raise WorkerError(EX_CONFIG, f"{sidecar}: not a valid model description ({exc})") from exc
    return path, class_map


def counted(names: Mapping[int, str], class_map: Mapping[str, str], wanted: Iterable[str]) -> list[str]:
    """The classes regions ask for that this model can see, through its names or its sidecar."""
    seen = {class_map.get(n, n) for n in names.values()}
    return sorted(seen & set(wanted))
