"""Replays GPU readings from a JSON-lines file: for tests and for reproducing a site's incident.

Each line: {"t": seconds_since_start, "gpu": 0, "temperature": 74, "utilization": 98,
"memory_used_mb": 9000, "memory_total_mb": 12288}. Optional: "throttle": ["hw_slowdown", ...],
"slowdown_temp"/"shutdown_temp" (the card's own thresholds), "error": "..." (an NVML read error),
"missing": true (no reading at all), "lost": true (the GPU fell off the bus), "xid": 79 (an Xid
critical error event), "ecc_uncorrected": 2 (uncorrectable ECC errors since the run began),
"processes": {"4242": 1800} (MB of GPU memory by pid).
Later lines win once their `t` has passed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.gpu.probe import THROTTLE_NAMES, GpuReading, LoadSource

_FIELDS = {"temperature", "utilization", "memory_used_mb", "memory_total_mb", "power_w", "power_limit_w",
           "slowdown_temp", "shutdown_temp"}
_THROTTLE_BITS = {name: bit for bit, name in THROTTLE_NAMES.items()}


class ScriptError(ValueError):
    pass


def _parse_line(source: str, lineno: int, text: str) -> tuple[float, int, dict[str, Any]]:
    where = f"{source}:{lineno}"
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ScriptError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ScriptError(f"{where}: expected a JSON object")
    unknown = set(obj) - _FIELDS - {"t", "gpu", "throttle", "error", "missing", "lost", "xid", "ecc_uncorrected",
                                    "processes"}
    if unknown:
        raise ScriptError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    t, gpu = obj.get("t"), obj.get("gpu", 0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0:
        raise ScriptError(f"{where}: 't' must be a number >= 0")
    if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
        raise ScriptError(f"{where}: 'gpu' must be an integer >= 0")
    for name in _FIELDS & set(obj):
        if obj[name] is not None and (isinstance(obj[name], bool) or not isinstance(obj[name], (int, float))):
            raise ScriptError(f"{where}: {name!r} must be a number")
    mask = 0
    for name in obj.get("throttle", []):
        if name not in _THROTTLE_BITS:
            raise ScriptError(f"{where}: unknown throttle reason {name!r} (known: {', '.join(_THROTTLE_BITS)})")
        mask |= _THROTTLE_BITS[name]
    reading: dict[str, Any] = {k: float(obj[k]) for k in _FIELDS & set(obj) if obj[k] is not None}
    reading["throttle_mask"] = mask
    if obj.get("error"):
        reading["error"] = str(obj["error"])
    if obj.get("missing"):
        reading["missing"] = True
    fault = _fault(obj, where)
    if fault:
        reading["fault"] = fault
    processes = obj.get("processes", {})
    if not isinstance(processes, dict) or not all(str(k).isdigit() and isinstance(v, (int, float))
                                                  for k, v in processes.items()):
        raise ScriptError(f"{where}: 'processes' must map pids to MB")
    reading["process_memory_mb"] = tuple((int(k), float(v)) for k, v in processes.items())
    return float(t), gpu, reading


def _fault(obj: dict[str, Any], where: str) -> str:
    if obj.get("lost"):
        return "GPU is lost (fallen off the bus)"
    xid = obj.get("xid")
    if xid is not None:
        if isinstance(xid, bool) or not isinstance(xid, int):
            raise ScriptError(f"{where}: 'xid' must be an integer")
        return f"Xid {xid} critical error"
    ecc = obj.get("ecc_uncorrected")
    if ecc:
        if isinstance(ecc, bool) or not isinstance(ecc, int):
            raise ScriptError(f"{where}: 'ecc_uncorrected' must be an integer")
        return f"{ecc} uncorrectable ECC error(s)"
    return ""


class ScriptedProbe:
    name = "scripted"

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScriptError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        self._steps: list[tuple[float, int, dict[str, Any]]] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                self._steps.append(_parse_line(str(path), lineno, line))
        if not self._steps:
            raise ScriptError(f"{path}: no readings in the file")
        self._steps.sort(key=lambda s: s[0])
        self._gpus = sorted({gpu for _, gpu, _ in self._steps})
        self._clock = clock
        self._start = clock()

    def indices(self) -> list[int]:
        return list(self._gpus)

    def read(self) -> list[GpuReading]:
        elapsed = self._clock() - self._start
        current: dict[int, dict[str, Any]] = {}
        for t, gpu, values in self._steps:
            if t > elapsed:
                break
            current[gpu] = values
        out = []
        for gpu in self._gpus:
            found = current.get(gpu)
            if found is None or found.get("missing"):
                out.append(GpuReading(index=gpu, error="no reading"))
                continue
            out.append(GpuReading(index=gpu, **{k: v for k, v in found.items() if k != "missing"}))
        return out

    def watch_load(self, load: LoadSource) -> None:
        pass  # readings are what they are, whatever runs

    def close(self) -> None:
        pass
