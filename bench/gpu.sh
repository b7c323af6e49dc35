#!/usr/bin/env bash
# GPU figures in one short run: NVML readings and thresholds, the worker's video-seconds per second at
# batch 1, 8 and 16 in half precision, NVDEC against CPU decoding, and each worker's peak GPU memory.
# Finishes in under 5 minutes on a GPU machine; without a GPU it says what it skipped and exits 0.
#   bash bench/gpu.sh            (after `make test` or `make demo` built .venv and the model)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec timeout 290 "$PY" bench/gpu.py "$@"
