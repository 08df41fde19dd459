"""Demuxing and decoding with PyAV: a video file (or URL) -> StreamInfo + an iterator of YuvFrame."""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError
from ..frames import CHROMA_SUBSAMPLING, YuvFrame, chroma_shape

# Source formats whose planes are read as they are; everything else is converted by swscale.
_DIRECT_LAYOUT = {
    "yuv420p": "yuv420p", "yuvj420p": "yuv420p",
    "yuv422p": "yuv422p", "yuvj422p": "yuv422p",
    "yuv444p": "yuv444p", "yuvj444p": "yuv444p",
}


@dataclass(frozen=True)
class StreamInfo:
    """What the pipeline needs to know about the input's video stream.

    Colour fields hold FFmpeg's enum values (AVColorRange, AVColorSpace, ...), copied to the
    output so players show the same colours. ``conversion_note`` says when the source's pixel
    format was converted (10-bit, packed or RGB sources) to the 8-bit ``layout`` we carry.
    """

    path: str
    codec_name: str
    width: int
    height: int
    source_pix_fmt: str
    layout: str
    time_base: Fraction
    average_fps: float | None
    num_frames: int | None
    duration_seconds: float | None
    color_range: int
    colorspace: int
    color_primaries: int
    color_trc: int
    rotation_degrees: float
    has_audio: bool
    has_subtitles: bool
    conversion_note: str | None
    #: Pixel shape (None: square or unknown): kept so 16:9 anamorphic video does not play as 5:4.
    sample_aspect_ratio: Fraction | None = None
    #: The first frame is interlaced (fields woven into one picture).
    interlaced: bool = False

    @property
    def full_range(self) -> bool:
        return self.color_range == 2  # AVCOL_RANGE_JPEG


def yuv_layout_for(pix_fmt: str) -> tuple[str, str | None]:
    """The 8-bit planar YUV layout frames of ``pix_fmt`` are converted to, and a note when that
    loses something (bit depth, RGB); the note is None for layouts used as they are."""
    if pix_fmt in _DIRECT_LAYOUT:
        return _DIRECT_LAYOUT[pix_fmt], None
    import av

    try:
        # A nominal 64x48 frame: the format's chroma plane size then gives its subsampling.
        descriptor = av.VideoFormat(pix_fmt, 64, 48)
    except (ValueError, KeyError):  # unknown to this PyAV: use the most widely supported layout
        return "yuv420p", f"{pix_fmt} is converted to 8-bit yuv420p"
    if descriptor.is_rgb or len(descriptor.components) < 3:
        layout = "yuv444p"  # RGB keeps full colour resolution; greyscale gets neutral chroma
    else:
        layout = {(64, 48): "yuv444p", (32, 48): "yuv422p"}.get(
            (descriptor.chroma_width(64), descriptor.chroma_height(48)), "yuv420p")
    return layout, f"{pix_fmt} is converted to 8-bit {layout}"


class VideoReader:
    """Open a video and decode its first video stream, frame by frame.

    Use as a context manager. ``frames()`` yields ``YuvFrame`` in presentation order with
    the stream's own timestamps where they are usable, FFmpeg's best-effort ones where not (see
    ``clean_frames``, which also skips damaged packets, scales size changes and deinterlaces);
    ``notes`` then says what was repaired. ``strict``: a damaged packet or a truncated input
    raises ``InputError`` instead. Decoding uses FFmpeg's own threads (``thread_type="AUTO"``,
    1.5x faster than the default here).
    """

    def __init__(self, path: os.PathLike | str, *, decoder_threads: int = 0, strict: bool = False,
                 deinterlace: bool = True) -> None:
        import av

        self.path = str(path)
        is_url = "://" in self.path
        if not is_url:
            p = Path(path)
            if not p.exists():
                raise InputError(f"{p}: no such file")
            if p.is_dir():
                raise InputError(f"{p}: is a directory, expected a video file")
            if not os.access(p, os.R_OK):
                raise InputError(f"{p}: permission denied")
        try:
            self._container = av.open(self.path, "r")
        except av.error.InvalidDataError as exc:
            raise InputError(f"{self.path}: cannot be opened as a video ({av_error_reason(exc)}; "
                             "not a video, or truncated or corrupt)") from None
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.path}: cannot be opened as a video ({av_error_reason(exc)})") from None
        try:
            if not self._container.streams.video:
                raise InputError(f"{self.path}: has no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._stream.codec_context.thread_count = decoder_threads
            #: What decoding repaired or skipped; ``notes`` turns it into lines for the run summary.
            self.report = DecodeReport()
            self._frames = clean_frames(self._container, self._stream, path=self.path, strict=strict,
                                        deinterlace=None if deinterlace else False, report=self.report)
            # Decoding the first frame now finds unreadable files before any output exists,
            # and gives the display rotation, which FFmpeg attaches to frames.
            self._first = next(self._frames, None)
            if self._first is None:
                raise InputError(f"{self.path}: the video stream has no decodable frames")
            self.info = self._probe(float(getattr(self._first, "rotation", 0) or 0))
        except BaseException:
            self._container.close()
            raise

    def _probe(self, rotation_degrees: float) -> StreamInfo:
        stream = self._stream
        ctx = stream.codec_context
        if ctx.width <= 0 or ctx.height <= 0 or ctx.pix_fmt is None:
            raise InputError(f"{self.path}: video stream has no decodable picture (corrupt or unsupported)")
        layout, note = yuv_layout_for(ctx.pix_fmt)
        duration = None
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration:
            duration = self._container.duration / 1_000_000
        rate = stream.average_rate or stream.guessed_rate
        sar = ctx.sample_aspect_ratio
        return StreamInfo(
            path=self.path,
            codec_name=ctx.name,
            width=ctx.width,
            height=ctx.height,
            source_pix_fmt=ctx.pix_fmt,
            layout=layout,
            time_base=stream.time_base or Fraction(1, 90000),
            average_fps=float(rate) if rate else None,
            num_frames=stream.frames or None,
            duration_seconds=duration,
            color_range=int(ctx.color_range),
            colorspace=int(ctx.colorspace),
            color_primaries=int(ctx.color_primaries),
            color_trc=int(ctx.color_trc),
            rotation_degrees=rotation_degrees,
            has_audio=bool(self._container.streams.audio),
            has_subtitles=bool(self._container.streams.subtitles),
            conversion_note=note,
            sample_aspect_ratio=sar if sar and sar != 1 else None,
            interlaced=self.report.interlaced,
        )

    def frames(self, max_frames: int | None = None) -> Iterator[YuvFrame]:
        """The decoded frames, once (a reader is a single pass); at most ``max_frames``."""
        if self._first is None:
            raise RuntimeError("VideoReader.frames() can only be iterated once")
        first, self._first = self._first, None
        layout = self.info.layout
        index = 0
        for frame in itertools.chain([first], self._frames):
            if max_frames is not None and index >= max_frames:
                return
            yield to_yuv_frame(frame, layout, index)
            index += 1

    @property
    def notes(self) -> list[str]:
        """What the run summary should say about decoding (damage, repaired timestamps ...)."""
        return self.report.notes()

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decode_range(
    path: os.PathLike | str,
    start_pts: int | None,
    end_pts: int | None,
    *,
    layout: str,
    first_index: int = 0,
    decoder_threads: int = 0,
    size: tuple[int, int] | None = None,
    deinterlace: bool = False,
    report: "DecodeReport | None" = None,
) -> Iterator[YuvFrame]:
    """The frames of the first video stream whose pts falls in ``[start_pts, end_pts)``
    (stream time base; None: from the start / to the end), in presentation order.

    Decoding starts at the keyframe at or before ``start_pts``; frames before it are decoded
    (they may be needed as references) and dropped. It stops at the first frame presented at
    or after ``end_pts``: decoders output frames in presentation order, so every frame of the
    range, open-GOP leading pictures included, is out by then. ``first_index`` numbers the
    frames as in the whole video. ``size`` is the whole video's (its first frame's) size, and
    ``deinterlace`` whether the whole video is deinterlaced: a segment cannot see the first frame.
    Frames are cleaned as ``VideoReader.frames`` cleans them (``clean_frames``).
    """
    import av

    report = report if report is not None else DecodeReport()
    with av.open(str(path), "r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decoder_threads
        packets = _seek_before(container, stream, start_pts)
        index = first_index
        for frame in clean_frames(container, stream, path=str(path), packets=packets, size=size,
                                  deinterlace=deinterlace, report=report):
            if start_pts is not None and frame.pts < start_pts:
                continue
            if end_pts is not None and frame.pts >= end_pts:
                return
            yield to_yuv_frame(frame, layout, index)
            index += 1


def _seek_before(container, stream, start_pts: int | None):
    """Packets from a keyframe at or before ``start_pts``. Some demuxers (MPEG-TS, files with
    a sparse index) land after the asked time: then seek again, further back."""
    from itertools import chain

    if start_pts is None:
        return container.demux(stream)
    step = max(1, int(1 / stream.time_base)) if stream.time_base else 90000  # one second
    target = start_pts
    for _ in range(6):
        container.seek(max(target, 0), stream=stream, backward=True, any_frame=False)
        packets = container.demux(stream)
        first = next((p for p in packets if p.size), None)
        if first is None or first.pts is None or first.pts <= start_pts or target <= 0:
            return chain([first] if first is not None else [], packets)
        target -= step
        step *= 4
    container.seek(0, stream=stream, backward=True, any_frame=False)
    return container.demux(stream)


#: FFmpeg's -dts_delta_threshold: in formats that allow discontinuities (MPEG-TS), a jump of
#: more than this many seconds is a clock reset, not a pause, and is closed up.
DISCONTINUITY_SECONDS = 10.0


@dataclass
class DecodeReport:
    """Counts of what ``clean_frames`` repaired or skipped, for the run summary."""

    decoded: int = 0
    skipped_packets: int = 0
    retimed: int = 0
    jumps: int = 0
    resized: int = 0
    interlaced: bool = False
    deinterlaced: bool = False
    ended_early: str | None = None
    #: The end of the last packet read, in the stream's time base.
    last_packet_end: int | None = None

    def notes(self) -> list[str]:
        notes = []
        if self.skipped_packets:
            notes.append(f"{_frames(self.skipped_packets)} could not be decoded and "
                         f"{'was' if self.skipped_packets == 1 else 'were'} skipped "
                         "(the input is damaged; --strict fails instead)")
        if self.ended_early:
            notes.append(f"the input ends early ({self.ended_early}): it is truncated, the output stops there")
        if self.retimed:
            notes.append(f"{_frames(self.retimed)} had missing or out-of-order timestamps: "
                         "given best-effort ones, as FFmpeg does")
        if self.jumps:
            notes.append(f"the timestamps jump ({self.jumps}x, a clock reset): the gaps were closed up")
        if self.resized:
            notes.append(f"the resolution changes mid-stream: {_frames(self.resized)} were scaled to the first "
                         "frame's size")
        if self.deinterlaced:
            notes.append("the input is interlaced: deinterlaced with yadif (--no-deinterlace keeps the fields)")
        elif self.interlaced:
            notes.append("the input is interlaced and was upscaled as it is (--no-deinterlace)")
        return notes


def _frames(count: int) -> str:
    return f"{count} frame" if count == 1 else f"{count} frames"


def clean_frames(container, stream, *, path: str, packets=None, strict: bool = False,
                 size: tuple[int, int] | None = None, deinterlace: bool | None = None,
                 report: DecodeReport | None = None):
    """Decoded av.VideoFrames as FFmpeg's CLI would encode them: demuxed and decoded packet by
    packet, so one damaged packet is skipped (counted in ``report``; ``strict`` raises instead)
    rather than ending the video; timestamps made best-effort and strictly increasing;
    frames of another size scaled to ``size`` (None: the first frame's); and deinterlaced with
    yadif (``deinterlace`` None: when the first frame is interlaced).

    ``VideoReader.frames`` and the segments' ``decode_range`` both read through this, so a
    video decodes the same whether it is cut into segments or not.
    """
    report = report if report is not None else DecodeReport()
    packets = packets if packets is not None else container.demux(stream)
    time_base = stream.time_base or Fraction(1, 90000)
    rate = stream.average_rate or stream.guessed_rate or 25
    discont = bool(container.format.flags & _ts_discont_flag())
    timing = _BestEffortPts(time_base, float(rate), discont, report)
    graph = None
    for frame in _decode_packets(stream, packets, path=path, strict=strict, report=report):
        frame.pts = timing.next(frame.pts, frame.dts)
        frame.time_base = time_base
        if size is None:
            size = (frame.width, frame.height)
        if (frame.width, frame.height) != size:
            # FFmpeg's CLI scales every frame to the size the encoder was opened with.
            frame = frame.reformat(width=size[0], height=size[1])
            report.resized += 1
        if report.decoded == 0:
            report.interlaced = frame.interlaced_frame
            if deinterlace is None:
                deinterlace = frame.interlaced_frame
        if deinterlace:
            report.deinterlaced = True
            graph = graph or _yadif(frame, time_base)
            graph.push(frame)
            yield from _pull_all(graph, time_base)
        else:
            yield frame
        report.decoded += 1
    if graph is not None:
        graph.push(None)
        yield from _pull_all(graph, time_base)
    end = _announced_end(container, stream)
    if (report.ended_early is None and not report.jumps and end is not None and report.last_packet_end is not None
            and report.last_packet_end < end - 2 * timing.step):
        report.ended_early = (f"its video stops at {float(report.last_packet_end * time_base):.2f} s of the "
                              f"{float(end * time_base):.2f} s its header announces")
    if strict and report.ended_early:
        raise InputError(f"{path}: the input ends early ({report.ended_early}); it is truncated")


def _ts_discont_flag() -> int:
    import av

    return av.format.Flags.ts_discont.value


def _decode_packets(stream, packets, *, path: str, strict: bool, report: DecodeReport):
    """``stream.decode`` of each packet. A packet the decoder refuses costs one frame, as in
    FFmpeg's CLI, instead of the rest of the video; a demuxer that fails mid-file ends it."""
    import av

    while True:
        try:
            packet = next(packets, None)
        except av.error.FFmpegError as exc:
            if strict:
                raise InputError(f"{path}: the input cannot be read to its end ({av_error_reason(exc)})") from None
            report.ended_early = f"reading failed: {av_error_reason(exc)}"
            packet = None
        if packet is None:
            packet_frames = _flush(stream, path, strict, report)
            yield from packet_frames
            return
        if packet.size and packet.pts is not None:
            end = packet.pts + (packet.duration or 0)
            report.last_packet_end = max(end, report.last_packet_end or end)
        try:
            frames = stream.decode(packet)
        except av.error.InvalidDataError as exc:
            if strict:
                raise InputError(f"{path}: a damaged packet at {_packet_time(packet)} cannot be decoded "
                                 f"({av_error_reason(exc)}); run without --strict to skip it") from None
            report.skipped_packets += 1
            continue
        except av.error.FFmpegError as exc:
            raise InputError(f"{path}: decoding failed at frame {report.decoded} ({av_error_reason(exc)}); "
                             "the file is truncated or corrupt") from None
        yield from frames


def _flush(stream, path: str, strict: bool, report: DecodeReport) -> list:
    import av

    try:
        return stream.decode(None)
    except av.error.EOFError:
        return []
    except av.error.InvalidDataError as exc:
        if strict:
            raise InputError(f"{path}: the last frames cannot be decoded ({av_error_reason(exc)})") from None
        report.skipped_packets += 1
        return []


def _packet_time(packet) -> str:
    if packet.pts is not None and packet.time_base:
        return f"{float(packet.pts * packet.time_base):.3f} s"
    return f"byte {packet.pos}"


class _BestEffortPts:
    """FFmpeg's best-effort timestamp (libavcodec's ``guess_correct_pts``: the frame's pts unless
    pts have gone backwards more often than dts), then what FFmpeg's CLI does with what is
    left: a missing one is the last plus one frame duration; one not after the last is moved
    one tick after it; in MPEG-TS, a jump of more than 10 s is closed up."""

    def __init__(self, time_base: Fraction, fps: float, discont: bool, report: DecodeReport) -> None:
        self.step = max(1, round(1 / (fps * time_base))) if fps > 0 else 1
        self.threshold = round(DISCONTINUITY_SECONDS / time_base) if discont else None
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts = self.last_dts = None
        self.last = None
        self.offset = 0
        self.report = report

    def next(self, pts: int | None, dts: int | None) -> int:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        best = pts if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None) else dts
        if best is None:
            best = 0 if self.last is None else self.last + self.step
            self.report.retimed += self.last is not None
        else:
            best += self.offset
            if self.threshold is not None and self.last is not None and abs(best - self.last) > self.threshold:
                self.offset += self.last + self.step - best
                best = self.last + self.step
                self.report.jumps += 1
            if self.last is not None and best <= self.last:
                # One tick, not a frame: a frame the decoder put out of order (a damaged
                # reference) must not push every later frame back.
                best = self.last + 1
                self.report.retimed += 1
            elif best != pts and pts is not None and not self.offset:
                self.report.retimed += 1
        self.last = best
        return best


def _yadif(frame, time_base: Fraction):
    """A yadif graph (one frame out per frame in, so count and timing are kept), built for
    the first frame's format; FFmpeg's default deinterlacer, ``-vf yadif``."""
    import av

    graph = av.filter.Graph()
    source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=time_base)
    yadif = graph.add("yadif", "mode=send_frame:parity=auto:deint=all")
    sink = graph.add("buffersink")
    source.link_to(yadif)
    yadif.link_to(sink)
    graph.configure()
    return graph


def _pull_all(graph, time_base: Fraction):
    """The frames the graph has ready, back in the stream's time base (yadif halves it, so
    that it could output one frame per field): segments compare them with stream pts."""
    import av

    while True:
        try:
            frame = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return
        if frame.pts is not None and frame.time_base and frame.time_base != time_base:
            frame.pts = round(frame.pts * frame.time_base / time_base)
        frame.time_base = time_base
        yield frame


def _announced_end(container, stream) -> int | None:
    """Where the header says the video stream ends (stream time base), to tell a truncated file."""
    if stream.duration and stream.time_base:
        return (stream.start_time or 0) + stream.duration
    if container.duration and stream.time_base:
        start = container.start_time or 0
        return round((start + container.duration) / 1_000_000 / stream.time_base)
    return None


def to_yuv_frame(frame, layout: str, index: int) -> YuvFrame:
    """Copy a decoded av.VideoFrame's planes into a YuvFrame, converting the format if needed."""
    if _DIRECT_LAYOUT.get(frame.format.name) != layout:
        # Keep the source's range: swscale would otherwise squeeze full-range into limited.
        frame = frame.reformat(format=layout, src_color_range=frame.color_range,
                               dst_color_range=frame.color_range)
    height, width = frame.height, frame.width
    planes = [plane_array(frame.planes[0], (height, width))]
    c_shape = chroma_shape((height, width), layout)
    planes += [plane_array(frame.planes[i], c_shape) for i in (1, 2)]
    return YuvFrame(planes[0].copy(), planes[1].copy(), planes[2].copy(), layout, frame.pts,
                    frame.time_base, index)


def plane_array(plane, shape: tuple[int, int]) -> np.ndarray:
    """A (height, width) uint8 view of an av plane, without its line padding."""
    height, width = shape
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]


def av_error_reason(exc: BaseException) -> str:
    """FFmpeg's message of a PyAV error without the file name PyAV appends (for one-line errors)."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip() or exc.__class__.__name__


__all__ = ["VideoReader", "StreamInfo", "decode_range", "clean_frames", "DecodeReport", "to_yuv_frame", "plane_array", "yuv_layout_for", "av_error_reason",
           "CHROMA_SUBSAMPLING"]
