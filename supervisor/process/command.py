"""How one job's worker is started: its argument list (the command template filled) and its environment. Pure."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from supervisor.config import PLACEHOLDER_RE, Settings
from supervisor.gpu.probe import GpuId
from supervisor.jobs.model import Job
from supervisor.protocol.environment import (
    ATTEMPT_ENV,
    CAMERA_ENV,
    CLAIM_ENV,
    GPU_ENV,
    JOB_ID_ENV,
    PARENT_ENV,
    VIDEO_ENV,
)
from supervisor.protocol.names import PathParser, format_recorded


def recorded_argument(settings: Settings, job: Job) -> str:
    """The recording's times for the worker, as format_recorded writes them, read again from its path.

    The job keeps only a start, which is the file's mtime when the name holds no time; that is when the
    recorder stopped writing, not when it began. So the name is read again (start and end) and, when it
    holds no time, "" tells the worker to work out the start itself."""
    try:
        rel = job.path.relative_to(settings.videos_dir)
    except ValueError:
        return ""
    named = PathParser(settings.discovery.pattern).read(rel)
    return format_recorded(named.start, named.end)


def expand_command(template: tuple[str, ...], values: dict[str, str]) -> list[str]:
    """Fill `{name}` placeholders; each template item stays exactly one argument.

    A long option followed by a placeholder item (`"--camera", "{camera}"`) becomes one `--camera=VALUE`
    argument, so a value that starts with a dash (a camera folder named `-x`) is never read as an option.
    """
    def sub(match: re.Match[str]) -> str:
        return values[match.group(1)]

    out: list[str] = []
    i = 0
    while i < len(template):
        arg = template[i]
        nxt = template[i + 1] if i + 1 < len(template) else None
        if (nxt is not None and arg.startswith("--") and len(arg) > 2 and "=" not in arg
                and not PLACEHOLDER_RE.search(arg) and PLACEHOLDER_RE.fullmatch(nxt)):
            out.append(f"{arg}={PLACEHOLDER_RE.sub(sub, nxt)}")
            i += 2
            continue
        out.append(PLACEHOLDER_RE.sub(sub, arg))
        i += 1
    return out


def worker_argv(settings: Settings, job: Job, out_dir: Path) -> list[str]:
    """The worker command with its placeholders filled; each item stays one argument (never a shell)."""
    values = {
        "python": sys.executable, "video": str(job.path.absolute()), "camera": job.camera,
        "out": str(out_dir), "rois": str(settings.rois_file.absolute()) if settings.rois_file else "",
        "duration": f"{settings.duration:g}", "attempt": str(job.attempts), "job_id": str(job.id),
        "model": str(settings.worker.model.absolute()), "recorded_at": recorded_argument(settings, job),
        "engine": settings.worker.engine, "motion_gate": "on" if settings.worker.motion_gate else "off",
        "motion_threshold": f"{settings.worker.motion_threshold:g}",
        "motion_max_reuse": f"{settings.worker.motion_max_reuse_seconds:g}",
    }
    return expand_command(settings.worker.command, values)


def worker_env(job: Job, gpu: GpuId, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update({
        JOB_ID_ENV: str(job.id), CAMERA_ENV: job.camera, CLAIM_ENV: str(job.claim_token),
        VIDEO_ENV: str(job.path), ATTEMPT_ENV: str(job.attempts),
        "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid()),
    })
    if gpu is not None:
        # NVML numbers GPUs by PCI bus; make CUDA use the same order so the index means the same card.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        env[GPU_ENV] = str(gpu)
    return env
