"""How a result set names the recording it came from: summary.json, written last, carries this.

The worker writes it; the supervisor reads it after a crash to tell a finished job from one to
run again (exactly once).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor.protocol.environment import CLAIM_ENV, JOB_ID_ENV

SUMMARY = "summary.json"


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def video_identity(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The video's path, size and mtime now, and the job id and claim the supervisor gave (OSError if
    unreadable)."""
    st = path.stat()
    env = os.environ if env is None else env
    return {"path": str(path), "size": st.st_size, "mtime": st.st_mtime,
            "job_id": _number(env.get(JOB_ID_ENV, "")), "claim": _number(env.get(CLAIM_ENV, ""))}


def same_video(identity: Any, path: Path, size: int, mtime: float, job_id: int) -> bool:
    return isinstance(identity, dict) and (
        identity.get("path"), identity.get("size"), identity.get("mtime"), identity.get("job_id")) == (
        str(path), size, mtime, job_id)


def written_by(identity: Any, claim: int) -> bool | None:
    """Whether the result set naming `identity` was written by the attempt of `claim`; None when it does not
    say (a worker of an older version, or of one's own that does not pass the claim on)."""
    said = identity.get("claim") if isinstance(identity, dict) else None
    return said == claim if isinstance(said, int) else None
