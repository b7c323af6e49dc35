"""The environment a worker is started with: the names both sides read.

Set by the supervisor for every attempt (process/command.py); read by the worker, by result sets
(which attempt wrote them) and by the orphan sweep (whose descendant a stray process is).
"""

from __future__ import annotations

JOB_ID_ENV = "VIDEO_SUPERVISOR_JOB_ID"
CLAIM_ENV = "VIDEO_SUPERVISOR_CLAIM"  # the claim token of the attempt: which attempt wrote a result set
CAMERA_ENV = "VIDEO_SUPERVISOR_CAMERA"
VIDEO_ENV = "VIDEO_SUPERVISOR_VIDEO"
ATTEMPT_ENV = "VIDEO_SUPERVISOR_ATTEMPT"  # 1 for the first attempt of a job
GPU_ENV = "VIDEO_SUPERVISOR_GPU"  # the NVML index of the GPU the attempt runs on, when there is one
PARENT_ENV = "VIDEO_SUPERVISOR_PARENT_PID"  # the supervisor's pid: the worker dies with it (lifeline.py)
