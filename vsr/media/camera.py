"""Live sources for ``vsr live``: a camera, a video file or a network stream, as timed YuvFrames.

PyAV opens everything it can (v4l2 for cameras on Linux); OpenCV's VideoCapture is the
fallback for cameras and files PyAV cannot open (cameras on other systems, odd drivers).
Network streams get no fallback: OpenCV would try the same FFmpeg protocols again. Each frame
carries two clocks: ``pts_seconds``, the media time from the first frame (what a
recording is timed by), and ``captured_at``, ``time.monotonic()`` when it was read (what
latency is measured from).

Files are paced at their own frame rate, as a camera would deliver them, unless
``as_fast_as_possible``; cameras and streams are paced by the device or the server.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from ..frames import YuvFrame
from .decode import av_error_reason, to_yuv_frame, yuv_layout_for

#: Seconds to wait for a network stream to open, and then for each packet.
NETWORK_TIMEOUT_S = (10.0, 10.0)


@dataclass(frozen=True)
class LiveFrame:
    """One captured picture with its media time and its capture time (monotonic seconds)."""

    picture: YuvFrame
    pts_seconds: float
    captured_at: float


@dataclass(frozen=True)
class SourceInfo:
    """What the live loop shows and records: ``kind`` is camera, file or stream; ``via``
    is pyav or opencv; ``full_range`` says Y spans 0-255 (JPEG range) instead of 16-235."""

    description: str
    kind: str
    via: str
    width: int
    height: int
    fps: float | None
    full_range: bool
    #: The decoder's codec (rawvideo for most cameras, mjpeg, h264 for files and streams), None via OpenCV.
    codec_name: str | None = None
    #: The source's colour tags (FFmpeg enum values; 2: unspecified), which a recording keeps.
    colorspace: int = 2
    color_primaries: int = 2
    color_trc: int = 2


@dataclass(frozen=True)
class _Target:
    kind: str
    path: str  # what PyAV opens
    av_format: str | None
    cv2_target: int | str  # what VideoCapture opens
    label: str


def parse_source(source: str | int) -> _Target:
    """Classify ``--source``: a camera index, a /dev/videoN device, a URL, or a file."""
    text = str(source).strip()
    if text.isdigit():
        index = int(text)
        if sys.platform.startswith("linux"):
            return _Target("camera", f"/dev/video{index}", "v4l2", index, f"/dev/video{index}")
        return _Target("camera", text, None, index, f"camera {index}")
    if text.startswith("/dev/video"):
        suffix = text[len("/dev/video"):]
        return _Target("camera", text, "v4l2", int(suffix) if suffix.isdigit() else text, text)
    if "://" in text:
        return _Target("stream", text, None, text, text)
    return _Target("file", text, None, text, text)


class LiveSource:
    """An opened live source: ``info``, then ``frames()`` once; ``close()`` when done."""

    def __init__(self, target: _Target, *, as_fast_as_possible: bool) -> None:
        self._target = target
        self._as_fast_as_possible = as_fast_as_possible
        self._container = None
        self._capture = None
        pyav_error = self._open_pyav()
        if self._container is None:
            if target.kind == "stream":  # OpenCV would try the same FFmpeg protocols again: twice the wait
                raise InputError(_cannot_open_message(target, pyav_error))
            self._open_opencv(pyav_error)

    # -- opening -------------------------------------------------------------------------

    def _open_pyav(self) -> str | None:
        """Open with PyAV and decode the first frame; return why it failed, or None."""
        import av

        target = self._target
        options = {}
        kwargs = {}
        if target.kind == "stream":
            kwargs["timeout"] = NETWORK_TIMEOUT_S
            if target.path.startswith("rtsp"):
                options["rtsp_transport"] = "tcp"  # UDP loses packets behind NAT and on Wi-Fi
        try:
            container = av.open(target.path, "r", format=target.av_format, options=options, **kwargs)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
            return av_error_reason(exc)
        try:
            if not container.streams.video:
                container.close()
                raise InputError(f"{target.label}: has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            self._decoded = container.decode(stream)
            first = next(self._decoded, None)
        except av.error.FFmpegError as exc:
            container.close()
            return av_error_reason(exc)
        if first is None:
            container.close()
            return "no decodable frames"
        self._container = container
        self._first = first
        self._layout, _ = yuv_layout_for(first.format.name)
        rate = stream.average_rate or stream.guessed_rate
        full_range = int(first.color_range) == 2 or first.format.name.startswith("yuvj")
        ctx = stream.codec_context
        self.info = SourceInfo(target.label, target.kind, "pyav", first.width, first.height,
                               float(rate) if rate else None, full_range, ctx.name,
                               colorspace=int(first.colorspace) or int(ctx.colorspace),
                               color_primaries=int(ctx.color_primaries), color_trc=int(ctx.color_trc))
        return None

    def _open_opencv(self, pyav_error: str | None) -> None:
        import cv2

        target = self._target
        capture = cv2.VideoCapture(target.cv2_target)
        ok, bgr = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            capture.release()
            raise InputError(_cannot_open_message(target, pyav_error))
        self._capture = capture
        self._first_bgr = bgr
        fps = capture.get(cv2.CAP_PROP_FPS)
        height, width = bgr.shape[:2]
        # I420 needs even sizes: an odd last row or column is dropped.
        self.info = SourceInfo(target.label, target.kind, "opencv", width - width % 2, height - height % 2,
                               fps if fps and fps > 0 else None, False)

    # -- reading -------------------------------------------------------------------------

    def frames(self) -> Iterator[LiveFrame]:
        """The frames, once; paced at the file's own rate unless as fast as possible."""
        raw = self._frames_pyav() if self._container is not None else self._frames_opencv()
        if self._target.kind != "file" or self._as_fast_as_possible:
            return raw
        return _paced(raw)

    def _frames_pyav(self) -> Iterator[LiveFrame]:
        import av

        first_pts = None
        index = 0
        frame = self._first
        self._first = None
        try:
            while frame is not None:
                captured_at = time.monotonic()
                picture = to_yuv_frame(frame, self._layout, index)
                pts = picture.pts_seconds
                if pts is None:
                    pts = index / (self.info.fps or 30.0)
                if first_pts is None:
                    first_pts = pts
                yield LiveFrame(picture, pts - first_pts, captured_at)
                index += 1
                frame = next(self._decoded, None)
        except av.error.FFmpegError as exc:
            if self._target.kind == "file":
                raise InputError(f"{self._target.label}: decoding failed at frame {index} ({av_error_reason(exc)}); "
                                 "the file is truncated or corrupt") from None
            raise InputError(f"{self._target.label}: the {self._target.kind} stopped sending frames "
                             f"({av_error_reason(exc)}); check the connection") from None

    def _frames_opencv(self) -> Iterator[LiveFrame]:
        import cv2

        capture = self._capture
        width, height = self.info.width, self.info.height
        bgr = self._first_bgr
        self._first_bgr = None
        start = time.monotonic()
        index = 0
        while bgr is not None:
            captured_at = time.monotonic()
            position_ms = capture.get(cv2.CAP_PROP_POS_MSEC) if self._target.kind == "file" else 0.0
            pts = position_ms / 1000 if position_ms and position_ms > 0 else captured_at - start
            yield LiveFrame(bgr_to_yuv420(bgr[:height, :width], index), pts, captured_at)
            index += 1
            ok, bgr = capture.read()
            if not ok:
                if self._target.kind == "camera":
                    raise InputError(f"{self._target.label}: the camera stopped sending frames "
                                     "(unplugged, or in use by another program)")
                bgr = None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        if self._capture is not None:
            self._capture.release()

    def __enter__(self) -> "LiveSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_live_source(source: str | int, *, as_fast_as_possible: bool = False) -> LiveSource:
    """Open ``--source`` (camera index, /dev/videoN, file, or rtsp:// / http:// URL)."""
    target = parse_source(source)
    if target.kind == "file":
        path = Path(target.path)
        if not path.exists():
            raise InputError(f"{path}: no such file (--source takes a camera index, /dev/videoN, "
                             "a video file or an rtsp:// / http:// URL)")
        if path.is_dir():
            raise InputError(f"{path}: is a directory, expected a video file")
        if not os.access(path, os.R_OK):
            raise InputError(f"{path}: permission denied")
    elif target.kind == "camera" and target.av_format == "v4l2" and not Path(target.path).exists():
        raise InputError(_no_camera_message(target))
    return LiveSource(target, as_fast_as_possible=as_fast_as_possible)


def bgr_to_yuv420(bgr, index: int) -> YuvFrame:
    """An even-sized BGR picture as yuv420p (BT.601, studio range, as OpenCV converts it)."""
    import cv2

    height, width = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    luma = i420[:height]
    chroma = i420[height:].reshape(2, height // 2, width // 2)
    return YuvFrame(luma.copy(), chroma[0].copy(), chroma[1].copy(), "yuv420p", None, None, index)


def _paced(frames: Iterator[LiveFrame]) -> Iterator[LiveFrame]:
    """Release each frame at its presentation time, as a camera would, starting now."""
    start = None
    for frame in frames:
        if start is None:
            start = time.monotonic() - frame.pts_seconds
        wait_s = start + frame.pts_seconds - time.monotonic()
        if wait_s > 0:
            time.sleep(wait_s)
        # Capture time is when the frame is due, so latency counts from the moment a camera
        # would have delivered it, not from when the decoder got ahead.
        yield LiveFrame(frame.picture, frame.pts_seconds, max(frame.captured_at, time.monotonic()))


def _no_camera_message(target: _Target) -> str:
    present = sorted(str(p) for p in Path("/dev").glob("video*"))
    found = f"cameras here: {', '.join(present)}" if present else "no /dev/video* device exists here"
    return (f"no camera at {target.path} ({found}); connect a camera (and check you are in the "
            "'video' group), or pass --source FILE or an rtsp:// / http:// URL")


def _cannot_open_message(target: _Target, pyav_error: str | None) -> str:
    reason = f" ({pyav_error})" if pyav_error else ""
    if target.kind == "camera":
        return (f"cannot open the camera {target.label}{reason}; close other programs using it, "
                "check you are in the 'video' group, or pass another --source")
    if target.kind == "stream":
        return (f"{target.label}: cannot open the stream{reason}; check the address, the credentials "
                "and that the server is up")
    return f"{target.label}: cannot be opened as a video{reason}"


__all__ = ["LiveFrame", "LiveSource", "SourceInfo", "open_live_source", "parse_source", "bgr_to_yuv420"]
