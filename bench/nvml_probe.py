"""One NVML reading of every GPU, and what a poll costs (the seed's nvidia-smi call took ~100 ms).

    python bench/nvml_probe.py [--polls 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.gpu.nvml import NvmlProbe
from supervisor.gpu.probe import ProbeUnavailable, throttle_names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--polls", type=int, default=1000)
    args = p.parse_args()
    t = time.perf_counter()
    try:
        probe = NvmlProbe()
    except ProbeUnavailable as exc:
        print(f"nvml_probe: no NVIDIA GPU monitoring here: {exc}")
        return 0
    init_ms = (time.perf_counter() - t) * 1000
    try:
        for r in probe.read():
            row = asdict(r)
            row["throttle"] = throttle_names(r.throttle_mask)
            print(json.dumps(row))
        t = time.perf_counter()
        for _ in range(args.polls):
            probe.read()
        per_poll_us = (time.perf_counter() - t) / args.polls * 1e6
    finally:
        probe.close()
    gpus = len(probe.indices())
    print(f"nvml init: {init_ms:.1f} ms; one poll of {gpus} GPU(s), every reading: {per_poll_us:.1f} us "
          f"({per_poll_us / max(gpus, 1):.1f} us per GPU); nvidia-smi in the seed: ~100,000 us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
