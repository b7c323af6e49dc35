"""The console script's first code: catch stop and reload signals before the heavy imports.

A SIGTERM that arrives while the program is still importing would otherwise kill it with the
default action; here it is remembered and honoured as soon as the supervisor runs.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def main() -> int:
    pending: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, remember)
    from supervisor.commands.cli import main as cli_main

    return cli_main(early_signals=pending)


if __name__ == "__main__":
    sys.exit(main())
