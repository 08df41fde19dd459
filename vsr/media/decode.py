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
from ..frames import CHROMA_SUBSAMPLING, YuvFrame, chroma_shape, sample_dtype, with_bit_depth

# Source formats whose planes are read as they are; everything else is converted by swscale.
_DIRECT_LAYOUT = {
    "yuv420p": "yuv420p", "yuvj420p": "yuv420p",
    "yuv422p": "yuv422p", "yuvj422p": "yuv422p",
    "yuv444p": "yuv444p", "yuvj444p": "yuv444p",
    "yuv420p10le": "yuv420p10le", "yuv422p10le": "yuv422p10le", "yuv444p10le": "yuv444p10le",
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
    #: HDR10 static metadata of the first frame, carried to the output's bitstream: the mastering
    #: display ((R, G, B, white point) as CIE 1931 (x, y) pairs, then (max, min) luminance in
    #: cd/m^2) and the content light level (MaxCLL, MaxFALL in cd/m^2); None where absent.
    mastering_display: tuple | None = None
    content_light: tuple[int, int] | None = None

    @property
    def bit_depth(self) -> int:
        return 10 if self.layout.endswith("10le") else 8

    @property
    def full_range(self) -> bool:
        return self.color_range == 2  # AVCOL_RANGE_JPEG


def yuv_layout_for(pix_fmt: str) -> tuple[str, str | None]:
    """The planar YUV layout frames of ``pix_fmt`` are converted to (10-bit for YUV sources of
    more than 8 bits, 8-bit for the rest), and a note when that loses something (bits beyond 10,
    RGB); the note is None for layouts used as they are (or only repacked, as p010)."""
    if pix_fmt in _DIRECT_LAYOUT:
        return _DIRECT_LAYOUT[pix_fmt], None
    import av

    try:
        # A nominal 64x48 frame: the format's chroma plane size then gives its subsampling.
        descriptor = av.VideoFormat(pix_fmt, 64, 48)
    except (ValueError, KeyError):  # unknown to this PyAV: use the most widely supported layout
        return "yuv420p", f"{pix_fmt} is converted to 8-bit yuv420p"
    bits = max((component.bits for component in descriptor.components), default=8)
    if not descriptor.is_rgb and len(descriptor.components) >= 3 and bits > 8:
        layout = with_bit_depth({(64, 48): "yuv444p", (32, 48): "yuv422p"}.get(
            (descriptor.chroma_width(64), descriptor.chroma_height(48)), "yuv420p"), 10)
        # p010, big-endian or 9-bit samples are repacked as they are; 12 and 16 bits lose their lowest bits.
        return layout, (f"{pix_fmt} is converted to 10-bit {layout}" if bits > 10 else None)
    if descriptor.is_rgb or len(descriptor.components) < 3:
        layout = "yuv444p"  # RGB keeps full colour resolution; greyscale gets neutral chroma
    else:
        layout = {(64, 48): "yuv444p", (32, 48): "yuv422p"}.get(
            (descriptor.chroma_width(64), descriptor.chroma_height(48)), "yuv420p")
    return layout, f"{pix_fmt} is converted to 8-bit {layout}"


def _mp4_from_a_pipe(container, path: str) -> bool:
    """Whether ``container`` is an MP4/MOV family file read from a pipe (or standard input)."""
    import stat

    if "mov" not in container.format.name.split(",") and "mp4" not in container.format.name.split(","):
        return False
    if str(path).startswith("pipe:") or str(path) == "-":
        return True
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


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
                 deinterlace: bool = True, decoder: str = "cpu", cuda: bool = False) -> None:
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
            decoding = open_decoder(self._stream, decoder, cuda=cuda, report=self.report)
            self._frames = clean_frames(self._container, decoding, path=self.path, strict=strict,
                                        packets=demux_video(self._container, self._stream, self.report),
                                        deinterlace=None if deinterlace else False, report=self.report)
            # Decoding the first frame now finds unreadable files before any output exists,
            # and gives the display rotation, which FFmpeg attaches to frames.
            self._first = next(self._frames, None)
            if self._first is None:
                if _mp4_from_a_pipe(self._container, self.path):
                    # The mov demuxer skips the media data looking for the index at the end, and a
                    # pipe cannot seek back to it: every frame is lost before the first is read.
                    raise InputError(
                        f"{self.path}: an MP4/MOV with its index (moov) at the end cannot be read from a pipe; "
                        "pass the file itself, or move the index first: "
                        "ffmpeg -i IN.mp4 -c copy -movflags +faststart OUT.mp4")
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
            mastering_display=mastering_display(self._first),
            content_light=content_light(self._first),
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
    decoder: str = "cpu",
    cuda: bool = False,
) -> Iterator[YuvFrame]:
    """The frames of the first video stream whose pts falls in ``[start_pts, end_pts)``
    (stream time base; None: from the start / to the end), in presentation order.

    Decoding starts at the keyframe at or before ``start_pts``; frames before it are decoded
    (they may be needed as references) and dropped. It stops at the first frame presented at
    or after ``end_pts``: decoders output frames in presentation order, so every frame of the
    range, open-GOP leading pictures included, is out by then. ``first_index`` numbers the
    frames as in the whole video. ``size`` is the whole video's (its first frame's) size, and
    ``deinterlace`` whether the whole video is deinterlaced: a segment cannot see the first frame.
    Frames are cleaned as ``VideoReader.frames`` cleans them (``clean_frames``); ``decoder``
    and ``cuda`` pick the decoder as there (``open_decoder``).
    """
    import av

    report = report if report is not None else DecodeReport()
    with av.open(str(path), "r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decoder_threads
        # From the start (the first segment, or a whole video on Ray), clock restarts are closed up
        # as the single stream does; later segments start after none (plan_segments).
        packets = (demux_video(container, stream, report) if start_pts is None
                   else _seek_before(container, stream, start_pts, by_dts=index_timed(container)))
        decoding = open_decoder(stream, decoder, cuda=cuda, report=report)
        index = first_index
        for frame in clean_frames(container, decoding, path=str(path), packets=packets, size=size,
                                  deinterlace=deinterlace, report=report):
            if start_pts is not None and frame.pts < start_pts:
                continue
            if end_pts is not None and frame.pts >= end_pts:
                return
            yield to_yuv_frame(frame, layout, index)
            index += 1


#: At most this many frames are decoded past a keyframe to reach a sampled time: a stream with
#: keyframes further apart than that is sampled a little early, not decoded whole.
SAMPLE_DECODE_FRAMES = 120


def span_middles(span: int, points: int) -> list[int]:
    """The middles of ``points`` equal parts of ``span`` (pts, or frame indices): where
    ``sample_frames`` reads a clip (benchmarks/compressed.py reads its frames at the same places)."""
    return [span * (2 * point + 1) // (2 * points) for point in range(points)]


def sample_frames(path: os.PathLike | str, info: StreamInfo, points: int, per_point: int = 2) -> list[YuvFrame]:
    """``per_point`` frames from each of ``points`` times spread evenly over the video (the middles
    of ``points`` equal spans): what a clip-wide statistic reads without decoding the whole clip.
    Each point seeks to the keyframe at or before its time and decodes on to it (at most
    ``SAMPLE_DECODE_FRAMES``). Keyframes are passed over: an intra frame is coded unlike the
    predicted frames that make up most of a clip."""
    from collections import deque

    import av

    span_pts = (int(info.duration_seconds / info.time_base)
                if info.duration_seconds and info.time_base else 0)
    report = DecodeReport()
    taken: list[YuvFrame] = []
    for middle_pts in span_middles(span_pts, points) if span_pts else [0]:
        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            target_pts = (stream.start_time or 0) + middle_pts
            packets = _seek_before(container, stream, target_pts if span_pts else None,
                                   by_dts=index_timed(container))
            decoding = open_decoder(stream, "cpu", report=report)
            frames = clean_frames(container, decoding, path=str(path), packets=packets,
                                  size=(info.width, info.height), report=report)
            # Only the last frames before the time are kept: a 4K frame is 12 MB, 120 of them 1.5 GB.
            kept, before = [], deque(maxlen=per_point)
            for frame in itertools.islice(frames, SAMPLE_DECODE_FRAMES):
                if frame.key_frame:
                    continue
                (kept if not span_pts or frame.pts is None or frame.pts >= target_pts else before).append(frame)
                if len(kept) == per_point:
                    break
            # Not reached (a keyframe interval longer than the limit, a clip of intra frames):
            # the last frames decoded stand in.
            chosen = kept or list(before)
            taken.extend(to_yuv_frame(frame, info.layout, 0) for frame in chosen)
    if not taken:
        # Every frame an intra frame (an intra-only codec): those are what the clip is.
        with VideoReader(path) as reader:
            taken = list(reader.frames(max_frames=per_point * points))
    return taken


def _seek_before(container, stream, start_pts: int | None, *, by_dts: bool = False):
    """Packets from a keyframe at or before ``start_pts``. Some demuxers (MPEG-TS, files with
    a sparse index) land after the asked time: then seek again, further back. ``by_dts``: the
    times are decode times (index-timed containers, whose packets' pts are guesses)."""
    from itertools import chain

    if start_pts is None:
        return container.demux(stream)
    step = max(1, int(1 / stream.time_base)) if stream.time_base else 90000  # one second
    target = start_pts
    for _ in range(6):
        container.seek(max(target, 0), stream=stream, backward=True, any_frame=False)
        packets = container.demux(stream)
        first = next((p for p in packets if p.size), None)
        first_time = first.dts if by_dts and first is not None else first.pts if first is not None else None
        if first is None or first_time is None or first_time <= start_pts or target <= 0:
            return chain([first] if first is not None else [], packets)
        target -= step
        step *= 4
    container.seek(0, stream=stream, backward=True, any_frame=False)
    return container.demux(stream)


#: ``--decoder`` choices: "cpu" (FFmpeg's software decoders), "nvdec" (NVIDIA's hardware decoder
#: through FFmpeg's *_cuvid decoders) or "auto" (NVDEC when the network runs on a CUDA device).
DECODERS = ("auto", "cpu", "nvdec")
#: FFmpeg's NVDEC decoder for each codec it takes (by the software decoder's name).
CUVID_DECODERS = {"h264": "h264_cuvid", "hevc": "hevc_cuvid", "av1": "av1_cuvid", "vp9": "vp9_cuvid"}
#: What NVDEC decodes on every NVIDIA GPU: 4:2:0, 8 or 10 bits (H.264 4:4:4 it never does; HEVC
#: 4:4:4 only on some chips), so other layouts stay on the CPU rather than fail mid-run.
NVDEC_PIX_FMTS = ("yuv420p", "yuvj420p", "yuv420p10le", "nv12", "p010le")


class _OtherDecoder:
    """A video stream decoded by another FFmpeg decoder than its default one (``h264_cuvid`` for
    h264): what ``clean_frames`` reads of a stream, with ``decode`` through that decoder's own,
    already opened, context. Its frames arrive in host memory (NV12), as the CPU decoder's do."""

    def __init__(self, stream, decoder_name: str) -> None:
        import av

        source = stream.codec_context
        context = av.CodecContext.create(decoder_name, "r")
        context.extradata = source.extradata
        context.width, context.height = source.width, source.height
        context.open()  # fails here, before any frame, where there is no NVIDIA GPU or driver
        self._stream, self.codec_context = stream, context

    def decode(self, packet=None):
        return self.codec_context.decode(packet)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def open_decoder(stream, requested: str = "cpu", *, cuda: bool = False, report: "DecodeReport | None" = None):
    """What to decode ``stream`` with: the stream itself (FFmpeg's CPU decoder) or NVDEC.

    ``requested`` "nvdec" asks for NVDEC, "auto" asks for it when ``cuda`` (the network runs on a
    CUDA device); "cpu" never. Where NVDEC cannot decode the stream (another codec, a PyAV whose
    FFmpeg lacks the decoder, no NVIDIA GPU or driver), the CPU decoder runs instead and
    ``report.decoder_note`` says why in one line: a fallback, never a failure.
    """
    import av

    if requested not in DECODERS:
        raise ValueError(f"decoder {requested!r}: choose one of {', '.join(DECODERS)}")
    if requested == "cpu" or (requested == "auto" and not cuda):
        return stream
    codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
    name = CUVID_DECODERS.get(codec)
    if name is None:
        reason = f"it does not decode {codec}, only {', '.join(CUVID_DECODERS)}"
    elif pix_fmt not in NVDEC_PIX_FMTS:
        reason = f"it decodes 4:2:0 video here, the input is {pix_fmt}"
    elif name not in av.codecs_available:
        reason = f"this PyAV's FFmpeg has no {name}"
    else:
        try:
            decoding = _OtherDecoder(stream, name)
        except av.error.FFmpegError as exc:
            reason = f"{name} does not open: {av_error_reason(exc)}; no NVIDIA GPU or driver?"
        else:
            if report is not None:
                report.decoder = "nvdec"
            return decoding
    if report is not None:
        report.decoder_note = f"--decoder {requested}: NVDEC unavailable ({reason}): decoded on the CPU"
    return stream


#: FFmpeg's -dts_delta_threshold: in formats whose clock may restart (MPEG-TS), a jump of more
#: than this many seconds, either way, is a clock reset, not a pause, and is closed up.
DISCONTINUITY_SECONDS = 10.0
#: ... as is any step back of more than this (fftools/ffmpeg.c: ``pkt_dts + AV_TIME_BASE/10 < ist->dts``).
DISCONTINUITY_BACK_SECONDS = 0.1


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
    #: The decoder that ran ("cpu" or "nvdec"), and why NVDEC did not when it was asked for.
    decoder: str = "cpu"
    decoder_note: str | None = None

    def notes(self) -> list[str]:
        notes = [self.decoder_note] if self.decoder_note else []
        if self.skipped_packets:
            notes.append(f"{_frames(self.skipped_packets)} could not be decoded and "
                         f"{'was' if self.skipped_packets == 1 else 'were'} skipped "
                         "(the input is damaged; --strict fails instead)")
        if self.ended_early:
            notes.append(f"the input ends early ({self.ended_early}): it is truncated, the output stops there")
        if self.retimed:
            notes.append(f"{_frames(self.retimed)} had missing or out-of-order timestamps: each was given "
                         "FFmpeg's best-effort time (its decode time, or one tick after the frame before)")
        if self.jumps:
            notes.append(f"the clock restarts {'once' if self.jumps == 1 else f'{self.jumps} times'} (timestamps "
                         "jump, as in joined MPEG-TS files): video and audio were shifted to continue where they "
                         "stopped, as FFmpeg does")
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
    time_base = stream.time_base or Fraction(1, 90000)
    rate = stream.average_rate or stream.guessed_rate or 25
    if index_timed(container):
        timing = _IndexTimes(time_base, float(rate))
    else:
        timing = _BestEffortPts(time_base, float(rate), report)
    packets = packets if packets is not None else demux_video(container, stream, report)
    graph = None
    for frame in _decode_packets(stream, packets, path=path, strict=strict, report=report, timing=timing):
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
            and report.last_packet_end < end - 2 * timing.step
            and not _reaches_header_end(container, stream, report.last_packet_end + 2 * timing.step)):
        report.ended_early = (f"its video stops at {float(report.last_packet_end * time_base):.2f} s of the "
                              f"{float(end * time_base):.2f} s its header announces")
    if strict and report.ended_early:
        raise InputError(f"{path}: the input ends early ({report.ended_early}); it is truncated")


def index_timed(container) -> bool:
    """Whether the container's video timestamps are frame numbers in decode order (AVI) or
    none at all (raw H.264, HEVC, MPEG-4 and MPEG-2 streams, whose demuxer counts frames at the
    frame rate): presentation times are then not stored but derived, see ``_IndexTimes``."""
    import av

    return container.format.name == "avi" or bool(container.format.flags & av.format.Flags.no_timestamps.value)


def clock_may_restart(container) -> bool:
    """FFmpeg's AVFMT_TS_DISCONT (MPEG-TS, MPEG-PS): timestamps may jump where files were joined."""
    import av

    return bool(container.format.flags & av.format.Flags.ts_discont.value) and not index_timed(container)


class ClockJumps:
    """What FFmpeg's CLI does where the input's clock may restart (``clock_may_restart``;
    fftools/ffmpeg.c, process_input): a packet whose decode time is more than 10 s from where its
    stream was due, or more than 0.1 s behind the last one, starts a new clock; from there on one
    offset, shared by every stream of the file, moves all timestamps so that the stream which met
    the jump continues exactly where it was due. Packets must come in file order, all streams
    together (``fix`` each), so video and audio move together as in FFmpeg."""

    def __init__(self) -> None:
        self.offset_us = 0
        self.jumps = 0
        self._next_us: dict[int, int] = {}
        self._last_us: dict[int, int] = {}

    def fix(self, packet, default_duration: Fraction | None = None) -> None:
        """Shift ``packet``'s pts and dts in place; ``default_duration`` (seconds) stands for a
        packet without one (a video stream's frame duration)."""
        time_base = packet.time_base
        if time_base is None:
            return
        shift = round(Fraction(self.offset_us, 1_000_000) / time_base)
        if shift:
            if packet.pts is not None:
                packet.pts += shift
            if packet.dts is not None:
                packet.dts += shift
        if packet.dts is None or not packet.size:
            return
        index = packet.stream.index
        dts_us = round(packet.dts * time_base * 1_000_000)
        due = self._next_us.get(index)
        if due is not None:
            delta = dts_us - due
            threshold = DISCONTINUITY_SECONDS * 1_000_000
            if abs(delta) > threshold or dts_us + DISCONTINUITY_BACK_SECONDS * 1_000_000 < self._last_us[index]:
                self.offset_us -= delta
                step = round(Fraction(delta, 1_000_000) / time_base)
                packet.dts -= step
                if packet.pts is not None:
                    packet.pts -= step
                dts_us -= delta
                self.jumps += 1
        self._last_us[index] = dts_us
        duration = packet.duration * time_base if packet.duration else default_duration
        self._next_us[index] = dts_us + round((duration or 0) * 1_000_000)


def clock_streams(container, video_stream) -> list:
    """The streams FFmpeg's CLI reads by default besides the video (every audio stream): the ones
    whose packets move the shared clock offset (``ClockJumps``)."""
    return [video_stream] + list(container.streams.audio)


def frame_duration(stream) -> Fraction | None:
    rate = stream.average_rate or stream.guessed_rate
    return 1 / Fraction(rate) if rate else None


def demux_video(container, stream, report: DecodeReport | None = None):
    """The video stream's packets from the start of the file; where the clock may restart
    (``clock_may_restart``), with the restarts closed up as FFmpeg's CLI does (``ClockJumps``,
    counted in ``report.jumps``)."""
    if clock_may_restart(container):
        return _closing_jumps(container, stream, report if report is not None else DecodeReport())
    return container.demux(stream)


def _closing_jumps(container, stream, report: DecodeReport):
    """The video stream's packets with clock restarts closed up as FFmpeg's CLI does (``ClockJumps``),
    read together with the audio so that the offsets are the ones the audio copy gets too."""
    clock = ClockJumps()
    video_duration = frame_duration(stream)
    for packet in container.demux(clock_streams(container, stream)):
        is_video = packet.stream.index == stream.index
        clock.fix(packet, video_duration if is_video else None)
        report.jumps = clock.jumps
        if is_video:
            yield packet


def _decode_packets(stream, packets, *, path: str, strict: bool, report: DecodeReport, timing=None):
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
        if timing is not None:
            timing.fed(packet)
        try:
            frames = stream.decode(packet)
        except av.error.InvalidDataError as exc:
            if strict:
                raise InputError(f"{path}: a damaged packet at {_packet_time(packet)} cannot be decoded "
                                 f"({av_error_reason(exc)}); run without --strict to skip it") from None
            report.skipped_packets += 1
            if timing is not None:
                timing.refused(packet)
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


class _IndexTimes:
    """Presentation times for index-timed containers (``index_timed``): the decode times of the
    packets fed so far, smallest first, one to each frame as the decoder puts it out (in
    presentation order). In AVI a packet's decode time is its frame number, so frame i is
    presented at i / fps, as ``ffmpeg -r FPS -i IN`` places it, and a dropped-frame chunk (an
    empty packet) keeps its gap; raw streams carry no times, and frame i is at i frame durations.
    A segment that starts at a keyframe gets the same times as the whole video: the packets
    before it are all presented before it (closed GOPs).

    FFmpeg's CLI without ``-r`` takes these containers' frame times from the packet that made the
    decoder put each frame out (``best_effort_timestamp``): with B-frames every frame then lands
    the decoder's delay (2 frames with x264's default) late against the audio, and the first
    frame is repeated to fill the gap."""

    def __init__(self, time_base: Fraction, fps: float) -> None:
        self.step = max(1, round(1 / (fps * time_base))) if fps > 0 else 1
        self._pending: list[int] = []
        self._next_guess: int | None = None
        self.last = None

    def fed(self, packet) -> None:
        import heapq

        if not packet.size:
            return
        dts = packet.dts
        if dts is None:  # a raw stream: the demuxer gives no times, so count frames
            dts = 0 if self._next_guess is None else self._next_guess
        self._next_guess = dts + (packet.duration or self.step)
        heapq.heappush(self._pending, dts)

    def refused(self, packet) -> None:
        """A packet the decoder refused: its frame (and so its time) is lost."""
        import heapq

        if self._pending:
            dts = packet.dts if packet.dts is not None and packet.dts in self._pending else max(self._pending)
            self._pending.remove(dts)
            heapq.heapify(self._pending)

    def next(self, pts: int | None, dts: int | None) -> int:
        import heapq

        best = heapq.heappop(self._pending) if self._pending else None
        if best is None or (self.last is not None and best <= self.last):
            best = 0 if self.last is None else self.last + self.step
        self.last = best
        return best


class _BestEffortPts:
    """FFmpeg's best-effort timestamp (libavcodec's ``guess_correct_pts``: the frame's pts unless
    pts have gone backwards more often than dts), then what FFmpeg's CLI does with what is
    left: a missing one is the last plus one frame duration; one not after the last is moved
    one tick after it. (Clock restarts are closed up before decoding: ``ClockJumps``.)"""

    def __init__(self, time_base: Fraction, fps: float, report: DecodeReport) -> None:
        self.step = max(1, round(1 / (fps * time_base))) if fps > 0 else 1
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts = self.last_dts = None
        self.last = None
        self.report = report

    def fed(self, packet) -> None:
        pass

    def refused(self, packet) -> None:
        pass

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
            if self.last is not None and best <= self.last:
                # One tick, not a frame: a frame the decoder put out of order (a damaged
                # reference) must not push every later frame back.
                best = self.last + 1
                self.report.retimed += 1
            elif best != pts and pts is not None:
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


#: How much longer than the video the other streams of a file may run before a video that stops
#: early is called truncated (audio often outlasts the last frame by a fraction of a second).
OTHER_STREAMS_LONGER_SECONDS = 1.0


def _reaches_header_end(container, stream, end: int) -> bool:
    """Whether a video ending at ``end`` (stream time base) is whole after all: where the stream
    states no duration, the container's is the file's, which covers audio that lasts longer than
    the video, and Matroska writes it as the last timestamp, not the span from a non-zero start."""
    if stream.duration or not container.duration or not stream.time_base:
        return False
    end_seconds = float(end * stream.time_base)
    if end_seconds >= container.duration / 1_000_000:
        return True
    # The file's duration may be another stream's, which may outlast the video by a little.
    start = (container.start_time or 0) / 1_000_000
    return len(container.streams) > 1 and end_seconds >= start + container.duration / 1_000_000 - OTHER_STREAMS_LONGER_SECONDS


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
    dtype = sample_dtype(layout)
    planes = [plane_array(frame.planes[0], (height, width), dtype)]
    c_shape = chroma_shape((height, width), layout)
    planes += [plane_array(frame.planes[i], c_shape, dtype) for i in (1, 2)]
    return YuvFrame(planes[0].copy(), planes[1].copy(), planes[2].copy(), layout, frame.pts,
                    frame.time_base, index)


def mastering_display(frame) -> tuple | None:
    """The frame's AVMasteringDisplayMetadata as ((Rx, Ry), (Gx, Gy), (Bx, By), (WPx, WPy),
    (max_cd_m2, min_cd_m2)), or None (absent, or without both primaries and luminance)."""
    import struct

    data = _side_data(frame, "MASTERING_DISPLAY_METADATA")
    if data is None or len(data) < 88:
        return None
    values = struct.unpack_from("<20i2i", data)
    ratios = [values[i] / values[i + 1] if values[i + 1] else 0.0 for i in range(0, 20, 2)]
    has_primaries, has_luminance = values[20], values[21]
    if not (has_primaries and has_luminance):
        return None
    pairs = [(ratios[i], ratios[i + 1]) for i in range(0, 8, 2)]
    return (*pairs, (ratios[9], ratios[8]))  # luminance stored min then max


def content_light(frame) -> tuple[int, int] | None:
    """The frame's AVContentLightMetadata as (MaxCLL, MaxFALL), or None."""
    import struct

    data = _side_data(frame, "CONTENT_LIGHT_LEVEL")
    if data is None or len(data) < 8:
        return None
    return tuple(struct.unpack_from("<2I", data))


def _side_data(frame, name: str) -> bytes | None:
    try:
        for side_data in frame.side_data:
            if side_data.type.name == name:
                return bytes(side_data)
    except (AttributeError, TypeError):
        return None
    return None


def plane_array(plane, shape: tuple[int, int], dtype=np.uint8) -> np.ndarray:
    """A (height, width) view of an av plane (uint8, or uint16 for >8-bit formats), without its
    line padding."""
    height, width = shape
    dtype = np.dtype(dtype)
    return np.frombuffer(plane, dtype).reshape(-1, plane.line_size // dtype.itemsize)[:height, :width]


def av_error_reason(exc: BaseException) -> str:
    """FFmpeg's message of a PyAV error without the file name PyAV appends (for one-line errors)."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip() or exc.__class__.__name__


__all__ = ["VideoReader", "StreamInfo", "decode_range", "sample_frames", "open_decoder", "DECODERS", "clean_frames",
           "DecodeReport", "to_yuv_frame", "plane_array", "yuv_layout_for", "av_error_reason",
           "CHROMA_SUBSAMPLING"]
