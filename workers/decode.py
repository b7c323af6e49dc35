"""Frames with their presentation timestamps, decoded through damage (PyAV, which bundles FFmpeg).

The clock is the file's own: every time is a frame's PTS relative to the stream's
start, never a frame index times an average rate, so variable-frame-rate files and
files with lost frames keep true times. Samples are taken by time: the first frame
of each 1/sample_fps-second slot. Frames between samples are decoded (later frames
need them) but never converted to pixels.

Damage is reported, never hidden: packets that do not decode are skipped and the
stretch of time they covered becomes a `DamagedSpan`; a file whose frames end well
before its container says it should is damaged at the end.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from supervisor.protocol import EX_DATAERR
from workers.errors import WorkerError

# A read counts as cut short when it ends this far before the container's duration (the smaller of the two).
SHORT_SECONDS = 2.0
SHORT_FRACTION = 0.02
# A jump in timestamps without a decoding error is damage too (a TS or MKV demuxer drops damaged data
# silently) when it is longer than this many typical frame intervals, and longer than GAP_MIN_SECONDS.
# Variable-frame-rate recorders thin out frames, but not to this extent.
GAP_FACTOR = 4.0
GAP_MIN_SECONDS = 1.0
# Demuxing errors in a row before the rest of the file is given up as unreadable.
MAX_DEMUX_RETRIES = 50


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The video stream as displayed: width and height after the rotation its display matrix asks for."""

    width: int
    height: int
    codec: str
    container: str
    fps: float  # the container's average rate: for information and for estimating frames lost
    duration: float | None  # seconds, as the container states it
    rotation: int  # degrees the stored frames are turned to display them upright

    @property
    def frame_seconds(self) -> float:
        return 1.0 / self.fps if self.fps > 0 else 0.04


@dataclass(slots=True)
class DamagedSpan:
    """A stretch of the recording that could not be decoded."""

    start: float
    end: float
    frames_lost: int
    reason: str

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    def as_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "seconds": round(self.seconds, 3),
                "frames_lost": self.frames_lost, "reason": self.reason}


@dataclass(slots=True)
class Sample:
    t: float  # seconds from the stream's start, from the frame's PTS
    slot: int  # which 1/sample_fps-second slot it stands for
    image: np.ndarray  # BGR, upright


@dataclass(slots=True)
class DecodeReport:
    """What reading the file came to; complete once the sample iterator is exhausted."""

    frames_decoded: int = 0
    decode_errors: int = 0
    first_t: float | None = None
    last_t: float | None = None
    limited: bool = False  # stopped at the requested duration, not at the end of the file
    spans: list[DamagedSpan] = field(default_factory=list)
    decode_seconds: float = 0.0

    def end_time(self, info: VideoInfo) -> float:
        """Up to where the file was read: the last frame's time plus its duration."""
        return 0.0 if self.last_t is None else self.last_t + info.frame_seconds

    @property
    def damaged_seconds(self) -> float:
        return sum(s.seconds for s in self.spans)


def _first_rotation(path: Path) -> int:
    """The display matrix's rotation as the first decodable frame carries it (0 when none)."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            for frame in container.decode(video=0):
                return round(getattr(frame, "rotation", 0) or 0) % 360
    except av.FFmpegError:
        return 0
    return 0


def to_bgr(frame: Any) -> np.ndarray:
    """The frame as a BGR array: OpenCV's colour conversion for the common 4:2:0 planar formats (the
    fastest here), FFmpeg's for the rest."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        import cv2

        bgr: np.ndarray = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
        return bgr
    converted: np.ndarray = frame.reformat(format="bgr24", interpolation="POINT").to_ndarray()
    return converted


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a stored frame as its display matrix says; `rotation` in PyAV's degrees (counterclockwise)."""
    turns = round(-rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


class VideoSource:
    """One recording opened for reading; iterate `samples()` once."""

    def __init__(self, path: Path) -> None:
        import av

        self.path = path
        if not path.is_file():
            raise WorkerError(EX_DATAERR, "no such video file")
        if path.stat().st_size == 0:
            raise WorkerError(EX_DATAERR, "the video file is empty")
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise WorkerError(EX_DATAERR, f"cannot read the file: {exc.strerror or exc}") from exc
        av.logging.set_level(None)  # FFmpeg's own messages would bury the one line that matters
        try:
            self._container = av.open(str(path), metadata_errors="ignore")
        except av.FFmpegError as exc:
            raise WorkerError(EX_DATAERR, "cannot open as a video (not a video, damaged, or an MP4 whose "
                                          f"recorder stopped before writing its index): {_reason(exc)}") from exc
        try:
            if not self._container.streams.video:
                raise WorkerError(EX_DATAERR, "the file has no video stream")
            self._stream = stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"
            # FFmpeg's own choice (0) counts cores the process may not use; one thread per usable core.
            stream.codec_context.thread_count = len(os.sched_getaffinity(0)) or 1
            ctx = stream.codec_context
            if not ctx.width or not ctx.height:
                raise WorkerError(EX_DATAERR, f"no usable video stream (size {ctx.width}x{ctx.height})")
            self._time_base: Fraction = stream.time_base or Fraction(1, 90000)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            duration: float | None = None
            if stream.duration:
                duration = float(stream.duration * self._time_base)
            elif self._container.duration:
                duration = self._container.duration / 1_000_000
            self._origin = stream.start_time
            rotation = _first_rotation(path)
            width, height = (ctx.height, ctx.width) if rotation % 180 == 90 else (ctx.width, ctx.height)
            self.info = VideoInfo(width, height, ctx.name or "unknown", self._container.format.name,
                                  fps if 0 < fps <= 1000 else 0.0, duration, rotation)
        except BaseException:
            self._container.close()
            raise
        self.report = DecodeReport()

    def close(self) -> None:
        self._container.close()

    def _frames(self) -> Iterator[tuple[Any, int]]:
        """Decoded frames, each with the number of decoding errors met since the one before."""
        import av

        errors = 0
        retries = 0
        stream = self._stream
        while True:
            try:
                for packet in self._container.demux(stream):
                    retries = 0
                    try:
                        frames = packet.decode()
                    except av.FFmpegError:
                        errors += 1
                        continue
                    for frame in frames:
                        yield frame, errors
                        errors = 0
                break  # the end of the file, flushed
            except av.EOFError:
                break
            except av.FFmpegError:
                # The container itself is damaged here; the demuxer resynchronises where the format allows.
                errors += 1
                retries += 1
                if retries > MAX_DEMUX_RETRIES:
                    break
        self.report.decode_errors += errors
        self._trailing_errors = errors

    def samples(self, sample_fps: float, max_seconds: float = 0.0) -> Iterator[Sample]:
        """The first frame of each 1/sample_fps-second slot of PTS time, up to `max_seconds` (0: all)."""
        report = self.report
        info = self.info
        tb = float(self._time_base)
        frame_seconds = info.frame_seconds
        last_slot = -1
        prev_t: float | None = None
        rotation = info.rotation
        lost_since: float | None = None  # the time after the last good frame, when frames are being lost
        corrupt = 0
        intervals: deque[float] = deque(maxlen=64)
        self._trailing_errors = 0
        started = time.perf_counter()
        for frame, errors in self._frames():
            report.decode_errors += errors
            if frame.pts is None:
                continue
            if self._origin is None:
                self._origin = frame.pts
            t = float((frame.pts - self._origin) * tb)
            if prev_t is not None and t <= prev_t - 1e-9:
                continue  # a repeated or out-of-order timestamp from a damaged stretch: not a new moment
            if max_seconds > 0 and t >= max_seconds - 1e-9:
                report.limited = True
                break
            if frame.is_corrupt or (errors and prev_t is None and t > frame_seconds * 1.5):
                # Concealed errors: the picture is partly invented. Count it lost, show it to nobody.
                corrupt += 1
                if lost_since is None:
                    lost_since = (prev_t + frame_seconds) if prev_t is not None else 0.0
                report.decode_errors += 0 if errors else 1
                continue
            if errors or lost_since is not None:
                gap_start = lost_since if lost_since is not None else (
                    prev_t + frame_seconds if prev_t is not None else 0.0)
                self._add_span(gap_start, t, corrupt, "undecodable data")
                lost_since = None
                corrupt = 0
            elif prev_t is not None:
                gap = t - prev_t
                typical = statistics.median(intervals) if intervals else frame_seconds
                if gap > max(GAP_MIN_SECONDS, GAP_FACTOR * typical):
                    self._add_span(prev_t + typical, t, 0, "frames missing: the container skipped damaged data")
                else:
                    intervals.append(gap)
            report.frames_decoded += 1
            if report.first_t is None:
                report.first_t = t
            report.last_t = prev_t = t
            slot = math.floor(t * sample_fps + 1e-6)
            if slot <= last_slot:
                continue
            last_slot = slot
            image = upright(to_bgr(frame), rotation)
            report.decode_seconds += time.perf_counter() - started
            yield Sample(t, slot, image)
            started = time.perf_counter()
        report.decode_seconds += time.perf_counter() - started
        if report.limited:
            return
        end = report.end_time(info)
        if lost_since is not None or self._trailing_errors:
            tail_end = max(end, info.duration or end)
            self._add_span(lost_since if lost_since is not None else end, tail_end, corrupt, "undecodable data")
        elif info.duration is not None and report.last_t is not None:
            short = info.duration - end
            if short > min(SHORT_SECONDS, SHORT_FRACTION * info.duration) and short > 2 * frame_seconds:
                self._add_span(end, info.duration, 0, "the frames end before the container's duration")

    def _add_span(self, start: float, end: float, corrupt: int, reason: str) -> None:
        frames_lost = max(corrupt, round((end - start) / self.info.frame_seconds))
        self.report.spans.append(DamagedSpan(start, max(start, end), frames_lost, reason))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(";")[0].strip()
