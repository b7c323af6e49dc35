#!/usr/bin/env bash
# GPU figures in one run, on a host with a CUDA GPU:
#   1. bench/gpu.py: NVML readings and thresholds, the worker at batch 1, 8 and 16 in half precision, NVDEC
#      against CPU decoding, each worker's peak GPU memory, and how a worker's memory ramps up after its
#      start (NVML per process: the peak and the time to 90 % of it, for gpu.job_memory_mb and
#      gpu.memory_ramp_seconds) (under 5 minutes);
#   2. bench/day.py on CUDA: a day of recordings (DAY_CAMERAS cameras x DAY_MINUTES minutes) through
#      ultralytics' own stream, the worker ungated (torch half, batch 8, CPU decoding) and gated (NVDEC
#      decoding, non-reference frames skipped), where the time goes (inference, decoding, waiting for
#      frames), and the total rate with 1 to 16 workers at once: where it stops growing, the GPU is
#      saturated and that is the `parallel` limit to set.
# Without a CUDA GPU it says so and exits 0.
#   bash bench/gpu.sh            (after `make test` or `make demo` built .venv and the model)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)" >/dev/null 2>&1
case $? in
    0) ;;
    3) echo "no CUDA GPU here (torch.cuda.is_available() is false): the GPU benches are skipped"; exit 0 ;;
    *) if [ ! -e /dev/nvidiactl ] && [ ! -e /dev/nvidia0 ]; then
           echo "no GPU here (no /dev/nvidia*; $PY cannot import torch either): the GPU benches are skipped"
           exit 0
       fi
       echo "$PY cannot import torch: build .venv first (make test), or set PYTHON=path/to/python"; exit 1 ;;
esac
timeout 290 "$PY" bench/gpu.py "$@"
echo
echo "day bench on CUDA (${DAY_CAMERAS:-4} cameras x ${DAY_MINUTES:-5} min)"
timeout "${DAY_TIMEOUT:-1500}" "$PY" bench/day.py --device cuda:0 --cameras "${DAY_CAMERAS:-4}" \
    --minutes "${DAY_MINUTES:-5}" --baseline-minutes 1 --decode-seconds 10 --parallel 1 2 4 8 12 16
status=$?
[ "$status" -eq 124 ] && echo "bench/day.py: stopped after ${DAY_TIMEOUT:-1500} s (DAY_TIMEOUT)"
exit "$status"
