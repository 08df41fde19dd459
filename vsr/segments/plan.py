"""Cutting a video into keyframe-aligned segments from its packet index (no decoding).

A segment is a half-open range of presentation time ``[start_pts, end_pts)`` that starts at
a keyframe; its worker seeks to that keyframe and keeps exactly the frames presented in the
range, so every frame of the video lands in exactly one segment, in order. Cuts at keyframes
(as Av1an does) instead of at arbitrary times are what keeps frames and audio sync intact
(Real-ESRGAN's time cuts lose both: Real-ESRGAN #388, #404).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path



@dataclass(frozen=True)
class Segment:
    """``[start_pts, end_pts)`` in the stream's time base; None: from the very start / to the
    very end. ``first_pts`` is the pts of its first frame, ``first_frame`` the index of its first frame in the whole video and
    ``num_frames`` its frame count according to the packet index."""

    index: int
    start_pts: int | None
    end_pts: int | None
    first_pts: int
    first_frame: int
    num_frames: int
    start_seconds: float
    end_seconds: float

    def describe(self) -> str:
        return f"segment {self.index} ({self.start_seconds:.2f}-{self.end_seconds:.2f} s)"


@dataclass(frozen=True)
class SegmentPlan:
    """The segments in order. ``note`` says why the video is one segment, when it is."""

    segments: tuple[Segment, ...]
    time_base: Fraction
    num_frames: int
    note: str | None = None


def plan_segments(path: os.PathLike | str, *, segment_seconds: float, max_frames: int | None = None) -> SegmentPlan:
    """Segments of about ``segment_seconds`` (each ends at the first keyframe at least that far
    from its start). A video that cannot be cut safely is one segment, with a ``note``: a
    stream read from a pipe or URL (no seeking), a raw elementary stream (no index), a single
    keyframe, or packets whose timestamps are missing, repeated, or jump (MPEG-TS clock restarts,
    by FFmpeg's rule). AVI is cut by frame number (its packets' decode times)."""
    import av

    from ..media.decode import ClockJumps, clock_may_restart, frame_duration, index_timed

    path_text = str(path)
    if "://" in path_text or not Path(path_text).is_file():
        return _whole(Fraction(1, 1), 0, "the input is not a regular file (no seeking)")
    try:
        container = av.open(path_text, "r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        # The single stream's reader says what is wrong with such a file, in its own words.
        return _whole(Fraction(1, 1), 0, "the input cannot be read")
    with container:
        if not container.streams.video:
            return _whole(Fraction(1, 1), 0, "the input has no video stream")
        stream = container.streams.video[0]
        time_base = stream.time_base or Fraction(1, 90000)
        pts_list: list[int] = []
        keyframes: list[int] = []
        by_index = index_timed(container)
        if by_index and container.format.name != "avi":
            # A raw stream has no index: seeking is by byte, and the frame count before a cut unknown.
            return _whole(time_base, stream.frames, "a raw stream has no index to cut it by")
        missing = False
        # In formats whose clock restarts (MPEG-TS), the decoder closes the jumps up as it goes
        # (ClockJumps), which a segment starting after one cannot know.
        clock = ClockJumps() if clock_may_restart(container) else None
        duration = frame_duration(stream)
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                if clock is not None:
                    clock.fix(packet, duration)
                # AVI: a packet's decode time is its frame number, and the frames take those
                # numbers in presentation order (media.decode's _IndexTimes), so cuts go by them.
                time = packet.dts if by_index else packet.pts
                if time is None:
                    missing = True
                    continue
                pts_list.append(time)
                if packet.is_keyframe:
                    keyframes.append(time)
        except av.error.FFmpegError:
            missing = True  # a damaged index: the single stream decodes what it can
    count = len(pts_list)
    # A one-segment plan still names its first frame's time: on Ray it runs as a task, and the
    # join puts that frame there.
    ordered = sorted(pts_list)
    if missing or count == 0:
        return _whole(time_base, count, "some packets have no timestamp", ordered)
    if any(a == b for a, b in zip(ordered, ordered[1:])):
        return _whole(time_base, count, "some frames share a timestamp", ordered)
    if clock is not None and clock.jumps:
        return _whole(time_base, count, "the timestamps jump (a clock restart)", ordered)
    if container.format.name == "mpeg":
        # Program streams carry a time on some packets only: after a seek, the first frames'
        # times are unknown, so a segment cannot tell which of them are its own.
        return _whole(time_base, count, "an MPEG program stream has no exact cut points", ordered)
    full = ordered
    if max_frames is not None:
        ordered = ordered[:max_frames]
    min_ticks = segment_seconds / time_base
    starts = [ordered[0]]
    for key in sorted(set(keyframes)):
        if key > ordered[-1]:
            break
        if key - starts[-1] >= min_ticks:
            starts.append(key)
    # A short tail is joined to the segment before it: a segment costs a seek and an encoder start.
    if len(starts) > 1 and (ordered[-1] - starts[-1]) < min_ticks / 2:
        starts.pop()
    if len(starts) == 1:
        reason = "one keyframe" if len(set(keyframes)) <= 1 else f"keyframes too far apart for {segment_seconds:g} s"
        return _whole(time_base, len(ordered), reason, ordered)
    end_after = full[max_frames] if max_frames is not None and max_frames < len(full) else None
    bounds = starts[1:] + [end_after]
    segments = []
    first_frame = 0
    from bisect import bisect_left

    for i, (start, end) in enumerate(zip(starts, bounds)):
        last = bisect_left(ordered, end) if end is not None else len(ordered)
        segments.append(Segment(
            index=i, start_pts=None if i == 0 else start, end_pts=end, first_pts=ordered[first_frame],
            first_frame=first_frame,
            num_frames=last - first_frame, start_seconds=float(start * time_base),
            end_seconds=float((end if end is not None else ordered[-1]) * time_base),
        ))
        first_frame = last
    return SegmentPlan(tuple(segments), time_base, len(ordered))


def _whole(time_base: Fraction, count: int, reason: str, ordered: list[int] | None = None) -> SegmentPlan:
    end_seconds = float(ordered[-1] * time_base) if ordered else 0.0
    start_seconds = float(ordered[0] * time_base) if ordered else 0.0
    segment = Segment(0, None, None, ordered[0] if ordered else 0, 0, count, start_seconds, end_seconds)
    return SegmentPlan((segment,), time_base, count, note=f"one segment: {reason}")
