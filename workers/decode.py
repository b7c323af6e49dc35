"""Frames with their presentation timestamps, decoded through damage (PyAV, which bundles FFmpeg).

One clock per recording, from the file's own timestamps: every time is a
frame's PTS relative to the stream's start, never a frame index times an average
rate, so variable-frame-rate files and files with lost frames keep true times.
The clock never goes back and never jumps over nothing: where the timestamps
restart (concatenated TS segments, a PTS wrap) or leap forward with no data
missing, video time goes on from the last frame plus one frame interval and the
join is recorded as a `Discontinuity`, not as damage.

Damage is data lost, reported, never hidden: packets that do not decode, frames
the decoder had to conceal, and stretches the demuxer skipped because their bytes
were unreadable (the packets' byte positions jump over bytes no packet came from,
or a TS continuity error marks a packet) become a `DamagedSpan`. A stretch where
the recorder simply wrote fewer frames (motion-triggered recorders do, when
nothing moves) is not damage: its frames keep their true times, and a frame
stands for the time to the next one, up to `max_gap` seconds; beyond that the
time is unknown (an unobserved `Gap`), neither empty nor occupied.

Samples are taken by time: the first frame of each 1/sample_fps-second slot.
Frames between samples are decoded (later frames need them) but never converted
to pixels. Every stream's packets are read, so the file's end is known: a file is
cut short when no stream's data reaches the container's duration, not when the
video ends before a longer audio track.
"""

from __future__ import annotations

import itertools
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
from workers.motion import thumbnail

# A read counts as cut short when it ends this far before the expected end (the smaller of the two).
SHORT_SECONDS = 2.0
SHORT_FRACTION = 0.02
# A forward jump in timestamps over no lost data longer than this is a discontinuity, not sparse frames
# (FFmpeg's own command-line tool draws the same line for TS at 10 s: -dts_delta_threshold).
DISCONTINUITY_SECONDS = 10.0
# A frame this long after the one before is a gap: some frames are not there (at least one interval).
GAP_FRAMES = 1.5
# A step back by more than this many frame intervals (and at least BACK_MIN_SECONDS) is a restart of
# the timestamps; a smaller one is a repeated or out-of-order frame from a damaged stretch.
BACK_FRAMES = 4.0
BACK_MIN_SECONDS = 0.5
# Bytes between one packet's end and the next packet's start that are still the container's own framing
# (TS headers and tables, MKV cluster headers, fMP4 fragment headers), plus a share of the packet's size
# (a TS packet carries 184 bytes of payload in every 188).
FRAMING_BYTES = 8192
FRAMING_SHARE = 0.08
# Packets this far apart as a rule: the file is padded (constant-bitrate TS), and only the demuxer's
# continuity errors tell lost data.
PADDED_BYTES = 2048
# How far after a gap (in frame intervals, at least REORDER_MIN_SECONDS) the first packet read after lost
# bytes may be stamped: decoding order differs from display order by a few frames.
REORDER_FRAMES = 8
REORDER_MIN_SECONDS = 0.5
# Demuxing errors in a row before the rest of the file is given up as unreadable.
MAX_DEMUX_RETRIES = 50
# Frames per sample from which frames no other frame needs are not decoded (a sample may then be the
# second or third frame of its slot: its time is still its own PTS).
SKIP_MIN_FRAMES = 3
# Pixel formats whose first plane is the 8-bit grey picture.
LUMA_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p",
                          "yuvj440p", "yuv411p", "yuv410p", "nv12", "nv21", "gray"})
# Containers that hold pictures, not recordings.
IMAGE_FORMATS = frozenset({"image2", "image2pipe", "apng", "gif", "webp"})


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The video stream as displayed: width and height after the rotation its display matrix asks for."""

    width: int
    height: int
    codec: str
    container: str
    fps: float  # the container's average rate: for information and for estimating frames lost
    duration: float | None  # seconds, as the stream (else the container) states it
    rotation: int  # degrees counterclockwise the stored frames are turned to display them upright

    @property
    def frame_seconds(self) -> float:
        return 1.0 / self.fps if self.fps > 0 else 0.04


@dataclass(slots=True)
class DamagedSpan:
    """A stretch of the recording whose data was lost: it could not be read or decoded."""

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


@dataclass(frozen=True, slots=True)
class Discontinuity:
    """Where the file's timestamps restarted or leapt with no data missing; video time runs on across it."""

    at: float  # video time of the first frame after it
    stamp_before: float  # the file's own time (seconds from the stream's start) of the frame before
    stamp_after: float  # and of the frame after

    def as_dict(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "stamp_before": round(self.stamp_before, 3),
                "stamp_after": round(self.stamp_after, 3),
                "kind": "restart" if self.stamp_after < self.stamp_before else "jump"}


@dataclass(frozen=True, slots=True)
class Gap:
    """Time no frame stands for: the recorder wrote nothing for longer than a frame may cover."""

    start: float
    end: float

    def as_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "seconds": round(self.end - self.start, 3)}


class Sample:
    """One sampled frame. Its BGR picture is made on first use (`image`), so a sample the motion gate
    reuses is never converted; `thumb` is its small grey picture for the gate, when asked for."""

    __slots__ = ("_frame", "_image", "_rotation", "break_before", "prev_end", "slot", "t", "thumb")

    def __init__(self, t: float, slot: int, image: np.ndarray | None = None, *, prev_end: float = 0.0,
                 break_before: bool = False, frame: Any = None, rotation: int = 0,
                 thumb: np.ndarray | None = None) -> None:
        self.t = t  # video time: seconds from the stream's start on the recording's one clock
        self.slot = slot  # which 1/sample_fps-second slot it stands for
        # Where the sample before this one stops standing for time: this one's time, or where lost or
        # unknown time began between them (then `break_before`).
        self.prev_end = prev_end
        self.break_before = break_before
        self.thumb = thumb
        self._frame = frame
        self._rotation = rotation
        self._image = image

    @property
    def image(self) -> np.ndarray:
        """BGR, upright."""
        if self._image is None:
            self._image = upright(to_bgr(self._frame), self._rotation)
            self._frame = None
        return self._image

    def release(self) -> None:
        """Drop the decoded picture (a reused sample needs none)."""
        self._frame = self._image = None


@dataclass(slots=True)
class DecodeReport:
    """What reading the file came to; complete once the sample iterator is exhausted."""

    frames_decoded: int = 0
    decode_errors: int = 0
    first_t: float | None = None
    last_t: float | None = None
    frame_interval: float = 0.04  # the recorder's typical interval between frames, as last seen
    cover_end: float = 0.0  # up to where the frames read stand for time
    limited: bool = False  # stopped at the requested duration, not at the end of the file
    spans: list[DamagedSpan] = field(default_factory=list)
    discontinuities: list[Discontinuity] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    bytes_lost: int = 0
    decode_seconds: float = 0.0
    # Reading the file: the bytes the demuxer took from it (every stream's packets), and the time spent in
    # the demuxer (reading, and the container's own framing), apart from decoding and inference.
    read_bytes: int = 0
    read_seconds: float = 0.0
    skipping: bool = False  # frames no other frame refers to were not decoded

    def end_time(self) -> float:
        """Up to where the file was read: the last frame's time plus its duration."""
        return 0.0 if self.last_t is None else self.last_t + self.frame_interval

    @property
    def damaged_seconds(self) -> float:
        return sum(s.seconds for s in self.spans)

    @property
    def unobserved_seconds(self) -> float:
        return sum(g.end - g.start for g in self.gaps)


def _first_rotation(path: Path) -> int:
    """The display matrix's rotation as the first decodable frame carries it, in degrees counterclockwise
    (FFmpeg's convention, which its own autorotation follows); 0 when none."""
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


def luma(frame: Any) -> np.ndarray | None:
    """The frame's grey picture as stored (its 8-bit Y plane, no copy, no colour conversion); None for a
    format without one."""
    if frame.format.name not in LUMA_FORMATS:
        return None
    plane = frame.planes[0]
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)[:plane.height]
    return rows[:, :plane.width]


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a stored frame as its display matrix says: `rotation` degrees counterclockwise, as numpy's
    rot90 turns (the same picture FFmpeg's autorotation shows)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


class _ByteWatch:
    """Notices data the demuxer skipped: a video packet that starts past every byte any packet read so far
    reached (beyond the container's framing), or one the demuxer marked corrupt (a TS continuity error).
    Each puts a mark at the packet's time, where the video resumes, for the clock to tell a gap over
    lost data from a gap over nothing."""

    def __init__(self, video_index: int, origin_seconds: float) -> None:
        self._video = video_index
        # The bytes between one packet and the next, lately: a constant-bitrate TS muxer pads with null
        # packets no stream reads, and where that is the rule a jump in positions tells nothing.
        self._spacing: deque[int] = deque(maxlen=32)
        self._origin = origin_seconds
        self._high: int | None = None  # the furthest byte any packet so far reached
        self._share = 0
        self.marks: deque[float] = deque(maxlen=256)
        self._stamps: deque[float] = deque(maxlen=65)  # recent video packets' times, for their cadence
        self.bytes_lost = 0
        self.data_end: float | None = None  # the latest time any stream's data reaches

    def see(self, packet: Any) -> None:
        stamp = packet.pts if packet.pts is not None else packet.dts
        when: float | None = None
        if stamp is not None and packet.stream.time_base:
            when = float(stamp * packet.stream.time_base) - self._origin
            end = when + float((packet.duration or 0) * packet.stream.time_base)
            self.data_end = end if self.data_end is None else max(self.data_end, end)
            if packet.stream_index == self._video:
                self._stamps.append(when)
        pos, size = packet.pos, packet.size
        video = packet.stream_index == self._video
        lost = False
        if pos is not None and pos >= 0:
            # Judged at video packets only: a demuxer that splits one audio PES into frames reports their
            # positions loosely, but every stream's packets move the mark of what was read.
            if video and self._high is not None:
                spacing = pos - self._high
                padded = len(self._spacing) >= 8 and statistics.median(self._spacing) > PADDED_BYTES
                if spacing > 0:
                    self._spacing.append(spacing)
                if spacing > FRAMING_BYTES + self._share and not padded:
                    self.bytes_lost += spacing
                    lost = True
            if self._high is None or pos + size > self._high:
                self._high = pos + size
                self._share = int(size * FRAMING_SHARE)
        if video and (lost or packet.is_corrupt) and when is not None:
            self.marks.append(when)

    def frame_interval(self) -> float | None:
        """The typical time between the video's frames as its packets say (every frame has one, decoded or
        skipped): the median step between recent packet times in display order."""
        steps = [b - a for a, b in itertools.pairwise(sorted(self._stamps)) if b > a]
        return statistics.median(steps) if len(steps) >= 4 else None

    def dense(self, limit: float, packets: int = 8) -> bool:
        """Whether the last `packets` video packets (this one included), in display order, each lie within
        `limit` seconds of the one before: frames close enough together that leaving the non-reference
        ones undecoded leaves no slot without a frame and no stretch without time."""
        recent = sorted(list(self._stamps)[-packets:])
        return len(recent) >= 2 and all(b - a <= limit for a, b in itertools.pairwise(recent))

    def lost_between(self, after: float, upto: float) -> bool:
        """A mark from the last good frame on (the packet a loss cut into may be that frame's own) up to
        a few frames after the next."""
        return any(after <= m <= upto for m in self.marks)

    def forget_upto(self, stamp: float) -> None:
        while self.marks and self.marks[0] < stamp:
            self.marks.popleft()


class VideoSource:
    """One recording opened for reading; iterate `samples()` once."""

    def __init__(self, path: Path, hwaccel: str = "") -> None:
        """`hwaccel`: an FFmpeg hardware decoder type to decode on ("cuda": NVDEC), falling back to the CPU
        where it cannot be had; `decoder` says which decodes, `decoder_note` why not the one asked for."""
        import av

        self.path = path
        self.decoder = "cpu"
        self.decoder_note = ""
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
            self._container = self._open(av, path, hwaccel)
        except av.FFmpegError as exc:
            raise WorkerError(EX_DATAERR, "cannot open as a video (not a video, damaged, or an MP4 whose "
                                          f"recorder stopped before writing its index): {_reason(exc)}") from exc
        try:
            if not self._container.streams.video:
                raise WorkerError(EX_DATAERR, "the file has no video stream")
            formats = set(self._container.format.name.split(","))
            if formats & IMAGE_FORMATS or any(name.endswith("_pipe") for name in formats):
                raise WorkerError(EX_DATAERR, f"a single image, not a recording ({self._container.format.name})")
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
            self._stream_duration = float(stream.duration * self._time_base) if stream.duration else None
            self._container_duration = (self._container.duration / 1_000_000 if self._container.duration
                                        else None)
            duration = self._stream_duration if self._stream_duration is not None else self._container_duration
            self._origin = stream.start_time
            rotation = _first_rotation(path)
            width, height = (ctx.height, ctx.width) if rotation % 180 == 90 else (ctx.width, ctx.height)
            self.info = VideoInfo(width, height, ctx.name or "unknown", self._container.format.name,
                                  fps if 0 < fps <= 1000 else 0.0, duration, rotation)
        except BaseException:
            self._container.close()
            raise
        self.report = DecodeReport(frame_interval=self.info.frame_seconds)
        self._bytes: _ByteWatch | None = None
        self._skip_limit = 0.0  # seconds between packets within which non-reference frames are skipped

    def _open(self, av: Any, path: Path, hwaccel: str) -> Any:
        if hwaccel:
            from av.codec.hwaccel import HWAccel

            try:
                container = av.open(str(path), metadata_errors="ignore",
                                    hwaccel=HWAccel(hwaccel, allow_software_fallback=True))
                self.decoder = hwaccel
                return container
            except (av.FFmpegError, OSError, ValueError) as exc:  # no device, no driver, not permitted
                self.decoder_note = f"{hwaccel} decoding unavailable ({_reason(exc)}): decoded on the CPU"
        return av.open(str(path), metadata_errors="ignore")

    def close(self) -> None:
        self._container.close()

    def _timed(self, packets: Iterator[Any]) -> Iterator[Any]:
        """The demuxer's packets, with the time it took for each and its size added to the report."""
        report = self.report
        while True:
            started = time.perf_counter()
            try:
                packet = next(packets)
            except StopIteration:
                return
            finally:
                report.read_seconds += time.perf_counter() - started
            report.read_bytes += packet.size or 0
            yield packet

    def _frames(self) -> Iterator[tuple[Any, int]]:
        """Decoded frames, each with the number of decoding errors met since the one before. Every
        stream's packets are demuxed (only the video's decoded), for their byte positions and ends."""
        import av

        errors = 0
        retries = 0
        stream = self._stream
        index = stream.index
        assert self._bytes is not None
        watch = self._bytes
        while True:
            try:
                for packet in self._timed(self._container.demux()):
                    retries = 0
                    watch.see(packet)
                    if packet.stream_index != index:
                        continue
                    if self._skip_limit:
                        skip = "NONREF" if watch.dense(self._skip_limit) else "DEFAULT"
                        if skip != stream.codec_context.skip_frame:
                            stream.codec_context.skip_frame = skip
                            self.report.skipping |= skip == "NONREF"
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

    def samples(self, sample_fps: float, max_seconds: float = 0.0, max_gap: float = 2.0, *,
                thumb_width: int = 0, convert: bool = True, skip: str = "off") -> Iterator[Sample]:
        """The first frame of each 1/sample_fps-second slot of video time, up to `max_seconds` (0: all).
        A frame stands for the time to the next one, at most `max_gap` seconds. `thumb_width`: give each
        sample a grey thumbnail that wide (for the motion gate); `convert=False`: leave the BGR picture
        to be made on first use (by whoever needs it), not here. `skip="auto"`: where samples are at
        least SKIP_MIN_FRAMES frames apart, frames no other frame refers to (B-frames, mostly) are not
        decoded at all (FFmpeg's `skip_frame = NONREF`); "off" decodes every frame."""
        report = self.report
        info = self.info
        tb = float(self._time_base)
        origin_pts = self._origin
        origin_seconds = float(origin_pts * self._time_base) if origin_pts is not None else 0.0
        self._bytes = watch = _ByteWatch(self._stream.index, origin_seconds)
        # Skipped frames never come out of the decoder, so the typical interval between frames then comes
        # from the packets, every frame's, not from the frames decoded.
        # Only while the frames come densely: in a sparse stretch (a motion-triggered recorder writing a
        # frame a second) every frame decodes, so no slot loses its only frame and no time goes unseen.
        skipping = skip == "auto" and info.fps > 0 and info.fps >= SKIP_MIN_FRAMES * sample_fps
        self._skip_limit = 1.0 / (SKIP_MIN_FRAMES * sample_fps) if skipping else 0.0
        last_slot = -1
        prev_t: float | None = None  # video time of the last good frame
        prev_stamp = 0.0  # its own time in the file
        offset = 0.0  # video time minus the file's time: moved at each discontinuity
        lost_since: float | None = None  # the time after the last good frame, when frames are being lost
        corrupt = 0
        broke_at: float | None = None  # where lost or unknown time began since the last sample
        behind = 0  # frames in a row stamped well before the last good one
        intervals: deque[float] = deque(maxlen=64)
        self._trailing_errors = 0
        started = time.perf_counter()
        for frame, errors in self._frames():
            report.decode_errors += errors
            if frame.pts is None:
                continue
            if origin_pts is None:
                origin_pts = self._origin = frame.pts
            stamp = float((frame.pts - origin_pts) * tb)
            typical = report.frame_interval  # the median of the recent intervals between good frames
            t = stamp + offset
            if prev_t is not None:
                step = stamp - prev_stamp
                back = step < -max(BACK_MIN_SECONDS, BACK_FRAMES * typical)
                damaged = bool(errors) or lost_since is not None
                # Behind in a damaged stretch: a stray frame, unless frame after frame stays behind.
                behind = behind + 1 if back else 0
                if (back and (not damaged or behind > BACK_FRAMES)) or (step > DISCONTINUITY_SECONDS and not (
                        damaged or watch.lost_between(prev_stamp, stamp + _reorder(typical)))):
                    # The timestamps restarted or leapt over nothing: time runs on one frame later.
                    offset = prev_t + typical - stamp
                    t = prev_t + typical
                    report.discontinuities.append(Discontinuity(t, prev_stamp, stamp))
                    watch.marks.clear()
                    behind = 0
                elif t <= prev_t + 1e-9:
                    continue  # a repeated or out-of-order timestamp from a damaged stretch: not a new moment
            if max_seconds > 0 and t >= max_seconds - 1e-9:
                report.limited = True
                break
            if frame.is_corrupt or (errors and prev_t is None and t > info.frame_seconds * 1.5):
                # Concealed errors: the picture is partly invented. Count it lost, show it to nobody.
                corrupt += 1
                if lost_since is None:
                    lost_since = (prev_t + typical) if prev_t is not None else 0.0
                report.decode_errors += 0 if errors else 1
                continue
            if errors or lost_since is not None:
                gap_start = lost_since if lost_since is not None else (prev_t + typical if prev_t is not None else 0.0)
                self._add_span(gap_start, t, corrupt, "undecodable data")
                broke_at = gap_start if broke_at is None else broke_at
                lost_since = None
                corrupt = 0
            elif prev_t is not None:
                gap = t - prev_t
                if gap > GAP_FRAMES * typical and watch.lost_between(prev_stamp, stamp + _reorder(typical)):
                    self._add_span(prev_t + typical, t, 0, "frames missing: the container skipped unreadable bytes")
                    broke_at = prev_t + typical if broke_at is None else broke_at
                else:
                    if gap > max_gap:
                        report.gaps.append(Gap(prev_t + max_gap, t))
                        broke_at = prev_t + max_gap if broke_at is None else broke_at
                    intervals.append(gap)
                    cadence = watch.frame_interval() if skipping else None
                    report.frame_interval = cadence or statistics.median(intervals)
            watch.forget_upto(stamp)
            report.frames_decoded += 1
            if report.first_t is None:
                report.first_t = t
            report.last_t = prev_t = t
            prev_stamp = stamp
            slot = math.floor(t * sample_fps + 1e-6)
            if slot <= last_slot:
                continue
            last_slot = slot
            sample = Sample(t, slot, prev_end=t if broke_at is None else broke_at, break_before=broke_at is not None,
                            frame=frame, rotation=info.rotation)
            if thumb_width:
                stored = luma(frame)
                if stored is not None:
                    # Turned upright as the picture is (small: a cheap turn), so it lines up with the regions.
                    sample.thumb = upright(thumbnail(stored, thumb_width), info.rotation)
                else:
                    import cv2

                    sample.thumb = thumbnail(cv2.cvtColor(sample.image, cv2.COLOR_BGR2GRAY), thumb_width)
            if convert:
                sample.image  # noqa: B018 - converted here, on the reader thread, beside inference
            report.decode_seconds += time.perf_counter() - started
            yield sample
            broke_at = None
            started = time.perf_counter()
        report.decode_seconds += time.perf_counter() - started
        report.bytes_lost = watch.bytes_lost
        end = report.end_time()
        report.cover_end = min(end, max_seconds) if report.limited else end
        if broke_at is not None:
            report.cover_end = min(report.cover_end, broke_at)
        if report.limited:
            return
        if lost_since is not None or self._trailing_errors:
            expected = None if report.discontinuities else self._expected_end()
            tail_end = end + max(0.0, expected - (prev_stamp + report.frame_interval)) if expected else end
            self._add_span(lost_since if lost_since is not None else end, tail_end, corrupt, "undecodable data")
            report.cover_end = min(report.cover_end, lost_since if lost_since is not None else end)
        elif report.last_t is not None and not report.discontinuities:
            # (Across a restart or a leap the file's own times no longer measure how much video it holds.)
            self._check_cut_short(end, prev_stamp + report.frame_interval, watch.data_end)

    def _expected_end(self) -> float | None:
        return self._stream_duration if self._stream_duration is not None else self._container_duration

    def _check_cut_short(self, end: float, stamp_end: float, data_end: float | None) -> None:
        """A file whose video ends well before its own stated duration, or whose streams all end well
        before the container's, was cut short (copied off a card too soon, a recorder killed)."""
        expected = self._stream_duration
        stated = self._container_duration
        # Without the stream's own duration, a longer audio track is no sign of loss: only data that stops
        # everywhere before the container's stated end is.
        if expected is None and stated is not None and (
                data_end is None or stated - data_end > self._short_margin(stated)):
            expected = stated
        if expected is None:
            return
        short = expected - stamp_end
        if short > self._short_margin(expected) and short > 2 * self.report.frame_interval:
            self._add_span(end, end + short, 0, "the frames end before the container's duration")

    @staticmethod
    def _short_margin(duration: float) -> float:
        return min(SHORT_SECONDS, SHORT_FRACTION * duration)

    def _add_span(self, start: float, end: float, corrupt: int, reason: str) -> None:
        frames_lost = max(corrupt, round((end - start) / self.report.frame_interval))
        self.report.spans.append(DamagedSpan(start, max(start, end), frames_lost, reason))


def _reorder(typical: float) -> float:
    return max(REORDER_MIN_SECONDS, REORDER_FRAMES * typical)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(";")[0].strip()
