"""Recording the live upscaled stream to H.264 with PyAV.

The file is written beside the target under a temporary name and renamed when the
recording ends, so a crash or Ctrl-C never leaves a half-written file at the target path.
Frames are timed by their media time in milliseconds: a live stream that dropped frames
is variable frame rate, and each recorded frame lasts until the next one.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..frames import YuvFrame

_TIME_BASE_MS = 1000


class LiveRecorder:
    """Write YuvFrames of one size to ``path`` (MP4/MKV/MOV, libx264, yuv420p).

    Use as a context manager: the file appears at ``path`` on a clean exit and the
    temporary file is removed on an exception. ``fps`` is the nominal rate written in the
    stream header (players use it for seeking; timing comes from each frame's pts).
    """

    def __init__(self, path: os.PathLike | str, width: int, height: int, *, fps: float | None = None,
                 full_range: bool = False, preset: str = "veryfast", crf: int = 18) -> None:
        import av
        from fractions import Fraction

        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise OutputError(f"{self.path}: the folder {self.path.parent} does not exist")
        if self.path.is_dir():
            raise OutputError(f"{self.path}: is a directory, expected a video file name like out.mp4")
        # H.264 4:2:0 needs even sizes: an odd last row or column is not recorded.
        self.width, self.height = width - width % 2, height - height % 2
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        container_format = None if self.path.suffix else "mp4"
        try:
            self._container = av.open(str(self._tmp), "w", format=container_format)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise OutputError(f"{self.path}: cannot be written ({exc})") from None
        try:
            rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(30)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = self.width, self.height
            self._stream.pix_fmt = "yuv420p"
            self._stream.time_base = Fraction(1, _TIME_BASE_MS)
            self._stream.codec_context.time_base = Fraction(1, _TIME_BASE_MS)
            self._stream.codec_context.color_range = 2 if full_range else 1
            self._stream.options = {"preset": preset, "crf": str(crf)}
        except BaseException:
            self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise
        self._full_range = full_range
        self._last_pts = -1
        self.frames_written = 0

    def write(self, frame: YuvFrame, pts_seconds: float) -> None:
        """Encode one frame shown at ``pts_seconds`` (from the start of the recording)."""
        import av

        if frame.layout != "yuv420p":
            raise ValueError(f"the recorder takes yuv420p frames, got {frame.layout}")
        h, w = self.height, self.width
        i420 = np.concatenate([
            frame.luma[:h, :w].reshape(-1),
            frame.chroma_u[: h // 2, : w // 2].reshape(-1),
            frame.chroma_v[: h // 2, : w // 2].reshape(-1),
        ]).reshape(h * 3 // 2, w)
        av_frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        av_frame.color_range = 2 if self._full_range else 1
        # Timestamps must increase: two frames within a millisecond share a pts otherwise.
        pts = max(int(round(pts_seconds * _TIME_BASE_MS)), self._last_pts + 1)
        av_frame.pts = self._last_pts = pts
        try:
            self._container.mux(self._stream.encode(av_frame))
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"{self.path}: writing failed ({exc})") from None
        self.frames_written += 1

    def finish(self) -> Path:
        """Flush the encoder, close the file and move it to ``path``."""
        import av

        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise OutputError(f"{self.path}: writing failed ({exc})") from None
        if self.frames_written == 0:
            self._tmp.unlink(missing_ok=True)
            raise OutputError(f"{self.path}: no frames were recorded, so no file was written")
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file."""
        try:
            self._container.close()
        except Exception:
            pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "LiveRecorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


__all__ = ["LiveRecorder"]
