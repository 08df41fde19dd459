"""``vsr run``: decode thread -> engine thread -> encoder (main thread), over bounded queues."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError, OutputError
from ..media.encode import EncodeOptions
from .stages import upscale_frames
from .workers import Prefetch, Timed


@dataclass(frozen=True)
class RunConfig:
    """One ``vsr run``. ``batch_size`` frames go through the network together; ``queue_depth``
    frames may wait between two stages (it bounds memory, not speed, beyond a few)."""

    input_path: Path
    output_path: Path
    scale: int = 3
    backend: str = "auto"
    device: str = "cpu"
    weights: Path | None = None
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    max_frames: int | None = None
    overwrite: bool = False
    batch_size: int = 1
    queue_depth: int = 8


@dataclass(frozen=True)
class RunStats:
    frames: int
    wall_seconds: float
    backend: str
    busy_seconds: dict
    interrupted: bool
    output_path: Path | None
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    notes: tuple[str, ...] = ()

    @property
    def fps(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        busy = ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in self.busy_seconds.items())
        (w, h), (ow, oh) = self.input_size, self.output_size
        state = "interrupted: " if self.interrupted else ""
        where = f" -> {self.output_path}" if self.output_path else " (no output written)"
        return (f"{state}{self.frames} frames {w}x{h} -> {ow}x{oh} in {self.wall_seconds:.1f}s "
                f"({self.fps:.1f} fps, {self.backend}); busy: {busy}{where}")


ProgressCallback = Callable[[int], None]


def run_video(
    config: RunConfig,
    *,
    on_start: Callable[[object, str, int | None], None] | None = None,
    on_frame: ProgressCallback | None = None,
) -> RunStats:
    """Upscale ``config.input_path`` into ``config.output_path``.

    ``on_start(stream_info, backend_description, expected_frames)`` is called once the input
    is open and the backend chosen; ``on_frame(frames_done)`` after each frame is written.
    Ctrl-C finishes the frames already encoded into a playable (shorter) output.
    """
    from ..backends import create_backend
    from ..media.decode import VideoReader
    from ..media.encode import VideoWriter, output_layout

    out_path = Path(config.output_path)
    if out_path.exists() and not config.overwrite:
        raise OutputError(f"{out_path}: already exists (use --overwrite to replace it)")
    if Path(config.input_path).exists() and out_path.exists() and os.path.samefile(config.input_path, out_path):
        raise OutputError(f"{out_path}: is the input file")
    layout = output_layout(config.encode)
    started = time.perf_counter()
    with VideoReader(config.input_path) as reader:
        info = reader.info
        backend = create_backend(config.backend, config.scale, weights=config.weights, device=config.device)
        try:
            expected = info.num_frames
            if expected is None and info.duration_seconds and info.average_fps:
                expected = round(info.duration_seconds * info.average_fps)
            if config.max_frames is not None:
                expected = min(expected, config.max_frames) if expected else config.max_frames
            if on_start is not None:
                on_start(info, f"{backend.name} ({getattr(backend, 'device', 'cpu')})", expected)
            out_size = (info.width * config.scale, info.height * config.scale)
            writer = VideoWriter(
                out_path, width=out_size[0], height=out_size[1], source=info, options=config.encode,
                audio_from=config.input_path if (info.has_audio or info.has_subtitles) else None,
                overwrite=config.overwrite,
            )
            decode = Timed(reader.frames(config.max_frames))
            decoded = Prefetch(decode, depth=config.queue_depth, name="vsr-decode")
            engine_input = Timed(decoded)
            engine = Timed(upscale_frames(engine_input, backend, out_layout=layout, batch_size=config.batch_size))
            upscaled = Prefetch(engine, depth=config.queue_depth, name="vsr-engine")
            encode_seconds = 0.0
            interrupted = False
            try:
                for frame in upscaled:
                    t0 = time.perf_counter()
                    writer.write(frame)
                    encode_seconds += time.perf_counter() - t0
                    if on_frame is not None:
                        on_frame(writer.frames_written)
            except KeyboardInterrupt:
                interrupted = True
            except BaseException:
                upscaled.close()
                decoded.close()
                writer.close(keep=False)
                raise
            upscaled.close()
            decoded.close()
            t0 = time.perf_counter()
            try:
                writer.close(keep=True, complete=not interrupted and config.max_frames is None)
            except KeyboardInterrupt:
                writer.close(keep=False)
                raise
            encode_seconds += time.perf_counter() - t0
        finally:
            backend.close()
    if writer.frames_written == 0 and not interrupted:
        raise InputError(f"{config.input_path}: no frames decoded")
    return RunStats(
        frames=writer.frames_written,
        wall_seconds=time.perf_counter() - started,
        backend=backend.name,
        busy_seconds={
            "decode": decode.seconds,
            "engine": max(0.0, engine.seconds - engine_input.seconds),
            "encode": encode_seconds,
        },
        interrupted=interrupted,
        output_path=out_path if writer.frames_written else None,
        input_size=(info.width, info.height),
        output_size=out_size,
        notes=tuple(writer.notes),
    )
