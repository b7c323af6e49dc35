"""How a result set names the recording it came from: summary.json, written last, carries this.

The worker writes it; the supervisor reads it after a crash to tell a finished job from one to
run again (exactly once).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"


def video_identity(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The video's path, size and mtime now, and the job id the supervisor gave (OSError if unreadable)."""
    st = path.stat()
    job = (os.environ if env is None else env).get("VIDEO_SUPERVISOR_JOB_ID", "")
    return {"path": str(path), "size": st.st_size, "mtime": st.st_mtime,
            "job_id": int(job) if job.isdigit() else None}


def same_video(identity: Any, path: Path, size: int, mtime: float, job_id: int) -> bool:
    return isinstance(identity, dict) and (
        identity.get("path"), identity.get("size"), identity.get("mtime"), identity.get("job_id")) == (
        str(path), size, mtime, job_id)
