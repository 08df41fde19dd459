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
    the stream's own timestamps. Decoding uses FFmpeg's own threads (``thread_type="AUTO"``,
    1.5x faster than the default here).
    """

    def __init__(self, path: os.PathLike | str, *, decoder_threads: int = 0) -> None:
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
            self._frames = self._decoded()
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
        )

    def _decoded(self):
        import av

        count = 0
        try:
            for frame in self._container.decode(self._stream):
                yield frame
                count += 1
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: decoding failed at frame {count} ({av_error_reason(exc)}); "
                             "the file is truncated or corrupt") from None

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
) -> Iterator[YuvFrame]:
    """The frames of the first video stream whose pts falls in ``[start_pts, end_pts)``
    (stream time base; None: from the start / to the end), in presentation order.

    Decoding starts at the keyframe at or before ``start_pts``; frames before it are decoded
    (they may be needed as references) and dropped. It stops at the first frame presented at
    or after ``end_pts``: decoders output frames in presentation order, so every frame of the
    range, open-GOP leading pictures included, is out by then. ``first_index`` numbers the
    frames as in the whole video.
    """
    import av

    with av.open(str(path), "r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = decoder_threads
        frames = _seek_before(container, stream, start_pts)
        index = first_index
        try:
            for frame in frames:
                if frame.pts is None:
                    raise InputError(f"{path}: a frame without a timestamp; the video cannot be cut into segments")
                if start_pts is not None and frame.pts < start_pts:
                    continue
                if end_pts is not None and frame.pts >= end_pts:
                    return
                yield to_yuv_frame(frame, layout, index)
                index += 1
        except av.error.FFmpegError as exc:
            raise InputError(f"{path}: decoding failed at frame {index} ({av_error_reason(exc)}); "
                             "the file is truncated or corrupt") from None


def _seek_before(container, stream, start_pts: int | None):
    """Decoded frames from a keyframe at or before ``start_pts``. Some demuxers (MPEG-TS,
    files with a sparse index) land after the asked time: then seek again, further back."""
    from itertools import chain

    if start_pts is None:
        return container.decode(stream)
    step = max(1, int(1 / stream.time_base)) if stream.time_base else 90000  # one second
    target = start_pts
    for _ in range(6):
        container.seek(max(target, 0), stream=stream, backward=True, any_frame=False)
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None or first.pts is None or first.pts <= start_pts or target <= 0:
            return chain([first] if first is not None else [], frames)
        target -= step
        step *= 4
    container.seek(0, stream=stream, backward=True, any_frame=False)
    return container.decode(stream)


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


__all__ = ["VideoReader", "StreamInfo", "decode_range", "to_yuv_frame", "plane_array", "yuv_layout_for", "av_error_reason",
           "CHROMA_SUBSAMPLING"]
