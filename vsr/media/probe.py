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


__all__ = ["count_video_packets"]
