"""The worker's stdout events, read in one place: a line is one of its JSON events or plain output.

A worker prints `{"event": "progress", ...}` while it works, `{"event": "warning", "message": ...}`
for a doubt about its input, and one `{"event": "done", ...}` when its result set is complete. The
done event is read into a `DoneEvent`, and so is the summary.json a finished worker left behind when
its supervisor died before reading the event (recovery): whatever decides, counts or shows a job's
end reads that one object, never the raw JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EVENT_PROGRESS = "progress"
EVENT_DONE = "done"
EVENT_WARNING = "warning"


def parse_line(text: str) -> dict[str, Any] | None:
    """The event a stdout line carries (a JSON object with a text `event`), or None for any other line."""
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("event"), str):
        return obj
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return str(value) if value else None


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """What a worker said of a finished attempt. Every field is optional on the wire (a worker of the
    user's own may say nothing but `{"event": "done"}`); a value of the wrong type reads as absent."""

    output: str | None = None  # where its results are (summary.json, for ours)
    video_seconds: float | None = None  # seconds of the recording processed
    duration_limited: bool = False  # only the first `video_seconds` were processed (--duration)
    damaged_seconds: float = 0.0  # seconds of the recording that could not be decoded
    damaged_spans: int | None = None
    engine: str | None = None  # the inference engine that ran
    engine_fallback: str | None = None  # why it is not the one asked for, when it is not

    @property
    def covered_seconds(self) -> float | None:
        """Set when only the first N seconds were processed: what the store keeps to queue it again later."""
        return self.video_seconds if self.duration_limited else None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> DoneEvent:
        """The done event as printed on stdout."""
        spans = event.get("damaged_spans")
        return cls(
            output=_text(event.get("output")), video_seconds=_number(event.get("video_seconds")),
            duration_limited=event.get("duration_limited") is True,
            damaged_seconds=_number(event.get("damaged_seconds")) or 0.0,
            damaged_spans=spans if isinstance(spans, int) and not isinstance(spans, bool) else None,
            engine=_text(event.get("engine")), engine_fallback=_text(event.get("engine_fallback")),
        )

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], path: str) -> DoneEvent:
        """The done event a worker printed, as its summary.json at `path` records it (recovery after a crash)."""
        damage = summary.get("damage")
        return cls(
            output=path, video_seconds=_number(summary.get("processed_seconds")),
            duration_limited=summary.get("duration_limited") is True,
            damaged_seconds=(_number(damage.get("seconds")) or 0.0) if isinstance(damage, Mapping) else 0.0,
        )
