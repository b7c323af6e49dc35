"""Decoding on its own thread, ahead of inference."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from workers.decode import Sample


class FrameReader:
    """Decodes on its own thread, ahead of inference, so decoding overlaps the model's work.

    FFmpeg decodes without the GIL; the queue is small, so memory stays bounded.
    """

    _END = object()

    def __init__(self, frames: Iterator[Sample], depth: int) -> None:
        self._frames = frames
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(2, depth))
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.waited = 0.0  # seconds the consumer spent waiting for a decoded frame: decoding not hidden
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._frames:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self.error = exc
        finally:
            while not self._stop.is_set():
                try:
                    self._queue.put(self._END, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def __iter__(self) -> Iterator[Sample]:
        while True:
            started = time.perf_counter()
            item = self._queue.get()
            self.waited += time.perf_counter() - started
            if item is self._END:
                if self.error is not None:
                    raise self.error
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
