"""A worker dies with its supervisor, even one killed with SIGKILL.

The supervisor starts workers without running code between fork and exec (that is slow, and with
threads in the parent it can deadlock the child), so the worker asks the kernel itself, first
thing: PR_SET_PDEATHSIG, then a check that the parent it was started by is still the parent
(if it died before the request, the signal would never come). The supervisor names itself in
VIDEO_SUPERVISOR_PARENT_PID. A worker started by hand, without that variable, is left alone.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Mapping

from supervisor.protocol.environment import PARENT_ENV

_PR_SET_PDEATHSIG = 1


def die_with_parent(env: Mapping[str, str] | None = None) -> bool:
    """Arrange SIGKILL on the supervisor's death; exit at once if it is already gone. Whether it was armed."""
    expected = (os.environ if env is None else env).get(PARENT_ENV, "")
    if not expected.isdigit():
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):  # not Linux: nothing to arm
        return False
    if os.getppid() != int(expected):  # the supervisor died before the request: follow it now
        os.kill(os.getpid(), signal.SIGKILL)
    return True
