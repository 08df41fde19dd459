"""The segment function: decode one segment -> frame upscaler -> encode it to its own file.

It is a plain function of a picklable ``SegmentJob``, so the same code runs in a local
worker process and as a Ray task. The frame upscaler is built once per process and reused
for every segment that process takes (building it compiles the network).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..backends import EngineSpec
from ..hardware import available_cpus
from ..media.decode import StreamInfo
from ..media.encode import EncodeOptions, VideoSpec
from .plan import Segment


@dataclass(frozen=True)
class SegmentJob:
    """Everything a worker needs for one segment; every field pickles.

    ``layout`` is the source's chroma layout (frames are decoded to it), ``out_layout`` the
    output's; ``video`` (the probed StreamInfo, or a VideoSpec) carries the timing, colour tags and rotation the encoder writes.
    ``encode`` is identical for every segment, so the joined stream has one set of settings.
    """

    input_path: str
    segment: Segment
    output_path: str
    engine: EngineSpec
    encode: EncodeOptions
    video: StreamInfo | VideoSpec
    layout: str
    out_layout: str
    out_size: tuple[int, int]
    decoder_threads: int = 0
    queue_depth: int = 8
    #: The whole video's size (later frames of another size are scaled to it) and whether it is deinterlaced.
    in_size: tuple[int, int] | None = None
    deinterlace: bool = False
    #: ``--decoder`` ("cpu", "nvdec" or "auto"): ``media.decode.open_decoder``.
    decoder: str = "cpu"


@dataclass(frozen=True)
class SegmentResult:
    index: int
    frames: int
    path: str
    wall_seconds: float
    busy_seconds: dict = field(default_factory=dict)
    upscaler: str = ""
    worker: str = ""  # who ran it: "pid N" for a local process, the node id for a Ray task
    notes: tuple[str, ...] = ()
    #: Inside the engine stage (``pipeline.RunStats.stage_seconds``); "startup" only in the first
    #: segment a process ran (it builds the upscaler once).
    stage_seconds: dict = field(default_factory=dict)
    decoder: str = "cpu"


_UPSCALERS: dict = {}
#: Seconds spent building each upscaler, reported once (by the segment that built it).
_STARTUP: dict = {}


def _upscaler_for(spec: EngineSpec, out_layout: str):
    """One frame upscaler per process and spec: its engine is compiled once, not per segment."""
    key = (spec, out_layout)
    if key not in _UPSCALERS:
        from ..pipeline.upscaler import create_frame_upscaler

        if spec.num_threads:
            import cv2

            cv2.setNumThreads(spec.num_threads)  # the chroma resize's pool, else one thread per core

        started = time.perf_counter()
        _UPSCALERS[key] = create_frame_upscaler(spec, out_layout=out_layout)
        _STARTUP[key] = time.perf_counter() - started
    return _UPSCALERS[key]


def close_upscalers() -> None:
    while _UPSCALERS:
        _UPSCALERS.popitem()[1].close()


def encode_segment(job: SegmentJob, on_progress: Callable[[int], None] | None = None) -> SegmentResult:
    """Upscale ``job.segment`` into ``job.output_path`` (written under a temporary name and
    renamed when complete, so a file at that path is always a finished segment)."""
    from ..media.decode import DecodeReport, decode_range
    from ..media.encode import VideoWriter
    from ..pipeline.pipeline import stream_frames

    started = time.perf_counter()
    segment = job.segment
    upscaler = _upscaler_for(job.engine, job.out_layout)
    key = (job.engine, job.out_layout)
    stages = {"startup": _STARTUP.pop(key)} if key in _STARTUP else {}
    frames = decode_range(job.input_path, segment.start_pts, segment.end_pts, layout=job.layout,
                          first_index=segment.first_frame, decoder_threads=job.decoder_threads,
                          size=job.in_size, deinterlace=job.deinterlace, report=(report := DecodeReport()),
                          decoder=job.decoder, cuda=job.engine.cuda)
    writer = VideoWriter(Path(job.output_path), width=job.out_size[0], height=job.out_size[1], source=job.video,
                         options=job.encode, overwrite=True)
    busy: dict[str, float] = {}
    try:
        stream_frames(frames, upscaler, writer, queue_depth=job.queue_depth, busy_seconds=busy, on_frame=on_progress,
                      stage_seconds=stages)
    except BaseException:
        writer.close(keep=False)
        raise
    writer.close(keep=True)
    return SegmentResult(segment.index, writer.frames_written, job.output_path, time.perf_counter() - started,
                         busy, upscaler.description, f"pid {os.getpid()}", tuple(report.notes()), stages,
                         report.decoder)


def thread_budget(workers: int, cpu_count: int | None = None) -> int:
    """CPU threads each worker's decoder, engine and encoder may use: the cores divided among
    the workers (each library would otherwise start one thread per core in every worker)."""
    cores = cpu_count or available_cpus()
    return max(1, cores // max(1, workers))


