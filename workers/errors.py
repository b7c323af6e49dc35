"""The worker's one exception: an exit code and a one-line reason."""

from __future__ import annotations


class WorkerError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
