"""What the supervisor and its workers agree on: exit codes and the worker's stdout events.

Imported by both sides; imports nothing of either.
"""

from __future__ import annotations

EX_OK = 0
EX_FAILED = 1  # a once run that ended with dead jobs
EX_USAGE = 2
EX_DATAERR = 65  # the input is bad: never retried
EX_SOFTWARE = 70
EX_TEMPFAIL = 75  # try again later: CUDA out of memory, a full disk
EX_CONFIG = 78  # bad configuration (ROI file, model): fix it, retrying cannot help
EX_TERM = 143  # stopped by SIGTERM

# The detector's inference engines: `[worker] engine` and the worker's --engine.
ENGINES = ("auto", "torch", "openvino", "openvino-int8", "onnxruntime")
