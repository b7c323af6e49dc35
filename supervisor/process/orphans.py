"""Descendants of a worker that outlive its job end with it, even those that left its process group.

When a worker exits, the runner kills what is left in its process group. A descendant that started
a session of its own (a double fork, a daemonised helper) escapes that; the supervisor is therefore
a child subreaper (PR_SET_CHILD_SUBREAPER): such orphans become its children instead of init's.
Each heartbeat, `sweep` looks at its children that are not workers it started: one that still
carries a job's id in its environment (every worker's descendants inherit it) and whose job no
longer runs is killed, and every such child that has exited is reaped. Under systemd the unit's
cgroup ends whatever is left when the daemon itself dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable
from pathlib import Path

import structlog

from supervisor.protocol.environment import JOB_ID_ENV

log = structlog.get_logger("supervisor")

_PR_SET_CHILD_SUBREAPER = 36
_MARKER = (JOB_ID_ENV + "=").encode()


def become_subreaper() -> bool:
    """Ask the kernel to hand this process its orphaned descendants; whether it agreed (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def children_of(pid: int) -> list[int]:
    """The children of every thread of `pid` now."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found.extend(int(p) for p in (task / "children").read_text().split())
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (OSError, IndexError):
        return ""


def _job_of(pid: int) -> int | None:
    """The job id in the process's environment, if it has one (a worker's descendant)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for item in environ.split(b"\0"):
        if item.startswith(_MARKER):
            value = item[len(_MARKER):]
            return int(value) if value.isdigit() else None
    return None


class OrphanReaper:
    """Kills and reaps the orphaned descendants of finished jobs. `workers()`: the pids of the workers this
    process started and still waits for (never touched here)."""

    def __init__(self, workers: Callable[[], set[int]]) -> None:
        self._workers = workers
        self._pid = os.getpid()
        self.killed = 0

    def sweep(self, running_jobs: set[int]) -> list[int]:
        """Kill the orphans whose job no longer runs (`running_jobs`: the ids of jobs still running) and reap
        those that have exited; the pids killed."""
        workers = self._workers()
        killed = []
        for pid in children_of(self._pid):
            if pid in workers:
                continue
            if _state(pid) == "Z":
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                continue
            job = _job_of(pid)
            if job is None or job in running_jobs:
                continue  # not a worker's descendant, or its job still runs
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                log.warning("orphan_killed", pid=pid, job_id=job,
                            reason="a process its worker left behind outside its process group outlived the job")
        self.killed += len(killed)
        return killed
