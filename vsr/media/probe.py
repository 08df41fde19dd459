"""Quick facts about an input that its header does not give, found by demuxing (no decoding)."""
from __future__ import annotations

import os
import time


def count_video_packets(path: os.PathLike | str, *, time_limit_seconds: float = 1.0) -> int | None:
    """The number of packets of the first video stream (one per frame for the codecs we read),
    or None when counting would take longer than ``time_limit_seconds`` or the file cannot be read.

    Matroska and WebM store no frame count, and duration x average rate is wrong for variable
    frame rate (the average is guessed from the first frames); reading the packets is exact
    and, without decoding, takes milliseconds for ordinary files."""
    import av

    deadline = time.perf_counter() + time_limit_seconds
    count = 0
    try:
        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.size:
                    count += 1
                if count % 256 == 0 and time.perf_counter() > deadline:
                    return None
    except (av.error.FFmpegError, OSError, IndexError):
        return None
    return count


def video_bits_per_pixel(path: os.PathLike | str) -> float | None:
    """Bits per pixel of the first video stream (its bit rate over width x height x frame rate):
    how hard the codec had to squeeze. The stream's own bit rate where the container records it,
    else the file's, less its other streams' rates; None where neither is known (a pipe, a URL
    without a length)."""
    import av

    try:
        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            rate = stream.codec_context.framerate or stream.average_rate or stream.guessed_rate
            pixels_per_s = stream.codec_context.width * stream.codec_context.height * float(rate or 0)
            bits_per_s = stream.bit_rate or 0
            if not bits_per_s:
                total = container.bit_rate or 0
                if not total and container.duration and os.path.isfile(str(path)):
                    total = os.path.getsize(str(path)) * 8 / (container.duration / 1_000_000)
                others = sum(s.bit_rate or 0 for s in container.streams if s.index != stream.index)
                bits_per_s = max(0, total - others)
    except (av.error.FFmpegError, OSError, IndexError, ZeroDivisionError):
        return None
    if not bits_per_s or not pixels_per_s:
        return None
    return bits_per_s / pixels_per_s


__all__ = ["count_video_packets", "video_bits_per_pixel"]
