"""How one job's worker is started: where its results go, its argument list, its environment. Pure."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from supervisor.config import Settings, expand_command
from supervisor.gpu.probe import GpuId
from supervisor.jobs.store import Job
from supervisor.protocol.lifeline import PARENT_ENV
from supervisor.protocol.names import PathParser, format_recorded
from supervisor.protocol.results import CLAIM_ENV, JOB_ID_ENV


def result_key(videos_dir: Path, video: Path) -> str:
    """A recording's result folder, relative to output_dir: its whole path under videos_dir, extension
    included (`camera_50/2025-11-14/14-30-00.mp4/`), so no two recordings can share one."""
    try:
        rel = video.relative_to(videos_dir)
    except ValueError:
        raise ValueError(f"{video} is not under the videos directory {videos_dir}") from None
    if rel.is_absolute() or not rel.parts or any(part in ("", ".", "..") for part in rel.parts):
        raise ValueError(f"{video}: no usable result folder name")
    return rel.as_posix()


@functools.lru_cache(maxsize=8)
def real_root(output_root: Path) -> Path:
    """The output folder with its symlinks resolved (once: it is asked for every job)."""
    return output_root.resolve()


def job_output_dir(output_root: Path, key: str) -> Path:
    """`output_root/<key>/`, refusing anything that would land outside output_root. Lexical: the folders
    are then made and opened one component at a time without following symlinks (protocol/paths.py)."""
    root = real_root(output_root)
    parts = key.split("/")
    if key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"result folder {key!r} escapes {root}")
    return root.joinpath(*parts)


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
        JOB_ID_ENV: str(job.id), "VIDEO_SUPERVISOR_CAMERA": job.camera, CLAIM_ENV: str(job.claim_token),
        "VIDEO_SUPERVISOR_VIDEO": str(job.path), "VIDEO_SUPERVISOR_ATTEMPT": str(job.attempts),
        "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid()),
    })
    if gpu is not None:
        # NVML numbers GPUs by PCI bus; make CUDA use the same order so the index means the same card.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        env["VIDEO_SUPERVISOR_GPU"] = str(gpu)
    return env
