"""``vsr run``: decode thread -> engine thread -> encoder (main thread), over bounded queues."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .. import hardware
from ..backends import EngineSpec
from ..errors import InputError, OutputError
from ..frames import YuvFrame
from ..media.encode import EncodeOptions
from .upscaler import FrameUpscaler, create_frame_upscaler
from .workers import Prefetch, Timed


@dataclass(frozen=True)
class RunConfig:
    """One ``vsr run``. ``engine``: which network runs where (scale, model, backend, device,
    weights, precision, threads, batch size); its ``model`` may be "auto", which
    ``segments.upscale_video`` resolves from the input. ``queue_depth`` frames may wait between
    two stages (it bounds memory, not speed, beyond a few).

    ``workers``: processes that upscale keyframe-aligned segments side by side (None: chosen
    from the machine, see ``tuning.auto_workers``; 1: one stream, as ``run_video``).
    ``segment_seconds``: the length segments are cut to, at the next keyframe.
    ``resume``: reuse the finished segments of an interrupted run of the same input and options.
    ``ray_address``: run the segments as Ray tasks ("auto" / "local" / an address) instead of
    local processes.
    ``strict``: a damaged packet or a truncated input fails the run instead of being skipped
    with a note. ``deinterlace``: interlaced input goes through yadif before upscaling (its
    combing would otherwise be upscaled too).
    """

    input_path: Path
    output_path: Path
    #: ``engine.model`` "auto": the best model that holds ``target_fps`` (see ``tuning.model_choice``;
    #: resolved by ``segments.upscale_video``, what `vsr run` calls with "auto" by default).
    engine: EngineSpec = field(default_factory=EngineSpec)
    #: With model "auto": the frame rate to hold (None: the input's own).
    target_fps: float | None = None
    #: With model "auto": which models to choose from: "auto" (from the input's codec and bits
    #: per pixel, ``tuning.model_choice.input_degradation``), "clean" or "compressed".
    degradation: str = "auto"
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    max_frames: int | None = None
    overwrite: bool = False
    queue_depth: int = 8
    workers: int | None = 1
    segment_seconds: float = 5.0
    resume: bool = False
    ray_address: str | None = None
    #: Fail on the first frame that cannot be decoded (or a truncated input) instead of skipping it.
    strict: bool = False
    #: Deinterlace (yadif) an interlaced input; progressive input is never touched.
    deinterlace: bool = True
    #: CPU threads of the decoder in a single-stream run (0: the library's default); segment
    #: workers get their share of the cores instead (as for ``engine.num_threads``).
    decoder_threads: int = 0
    #: "cpu", "nvdec" or "auto" (NVDEC with a CUDA device where it works): ``media.decode.open_decoder``.
    decoder: str = "cpu"

    @property
    def scale(self) -> int:
        return self.engine.scale

    @property
    def model(self) -> str:
        return self.engine.model


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
    #: Inside the engine thread (``busy_seconds["engine"]``), where the time went: host frames
    #: "engine" (the network) and "chroma"; GPU-resident frames "upload", "engine", "chroma" and
    #: "download" as the device timed them (CUDA events). "startup": building the upscaler
    #: (model load, engine compile), once per process. Summed over workers, as ``busy_seconds``.
    stage_seconds: dict = field(default_factory=dict)
    #: Processes (Ray: nodes) that ran segments (1: one stream), and each segment's record
    #: (``segments.driver.segment_record``).
    workers: int = 1
    segments: tuple = ()
    #: The decoder that ran: "cpu" or "nvdec" (``media.decode.open_decoder``); the model that ran.
    decoder: str = "cpu"
    model: str = ""

    #: Of ``frames``, those taken from an interrupted run's finished segments (``--resume``): not
    #: upscaled in this run's time, so not counted in ``fps``.
    frames_reused: int = 0

    @property
    def fps(self) -> float:
        return (self.frames - self.frames_reused) / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """Machine-readable (``vsr run --stats-json``): seconds rounded to the millisecond."""
        def seconds(values: dict) -> dict:
            return {stage: round(value, 3) for stage, value in values.items()}

        return {
            "frames": self.frames, "wall_seconds": round(self.wall_seconds, 3), "fps": round(self.fps, 2),
            "model": self.model, "backend": self.backend, "decoder": self.decoder, "workers": self.workers,
            "input_size": list(self.input_size), "output_size": list(self.output_size),
            "busy_seconds": seconds(self.busy_seconds), "stage_seconds": seconds(self.stage_seconds),
            "segments": [dict(record, busy_seconds=seconds(record.get("busy_seconds", {})),
                              stage_seconds=seconds(record.get("stage_seconds", {}))) for record in self.segments],
            "interrupted": self.interrupted,
            "output_path": str(self.output_path) if self.output_path is not None else None,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        busy = ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in self.busy_seconds.items() if seconds)
        (w, h), (ow, oh) = self.input_size, self.output_size
        state = "interrupted: " if self.interrupted else ""
        where = f" -> {self.output_path}" if self.output_path else "; no output written"
        reused = f" ({self.frames_reused} reused)" if self.frames_reused else ""
        return (f"{state}{self.frames} frames{reused} {w}x{h} -> {ow}x{oh} in {self.wall_seconds:.1f}s "
                f"({self.fps:.1f} fps, {self.backend})" + (f"; busy: {busy}" if busy else "") + where)


ProgressCallback = Callable[[int], None]


def stream_frames(
    frames: Iterable[YuvFrame],
    upscaler: FrameUpscaler,
    writer,
    *,
    queue_depth: int = 8,
    busy_seconds: dict[str, float] | None = None,
    on_frame: ProgressCallback | None = None,
    stage_seconds: dict[str, float] | None = None,
) -> None:
    """decode thread -> engine thread -> ``writer.write`` in this thread, over bounded queues.

    ``busy_seconds`` (filled even when interrupted) gets each stage's working time;
    ``stage_seconds`` what the upscaler timed inside the engine stage (its ``stage_seconds``,
    added for these frames only: a worker reuses one upscaler for many segments). Any
    exception, KeyboardInterrupt included, stops both threads before it propagates; the
    writer is left open for the caller to finish or discard.
    """
    busy = busy_seconds if busy_seconds is not None else {}
    # Before the threads start: the engine thread adds to the upscaler's totals from its first frame.
    stages_before = dict(upscaler.stage_seconds)
    decode = Timed(frames)
    decoded = Prefetch(decode, depth=queue_depth, name="vsr-decode")
    engine_input = Timed(decoded)
    engine = Timed(upscaler.upscale_frames(engine_input))
    upscaled = Prefetch(engine, depth=queue_depth, name="vsr-engine")
    encode_seconds = 0.0
    try:
        for frame in upscaled:
            t0 = time.perf_counter()
            writer.write(frame)
            encode_seconds += time.perf_counter() - t0
            if on_frame is not None:
                on_frame(writer.frames_written)
    finally:
        upscaled.close()
        decoded.close()
        busy.update(decode=decode.seconds, engine=max(0.0, engine.seconds - engine_input.seconds),
                    encode=encode_seconds)
        if stage_seconds is not None:
            for stage, total in upscaler.stage_seconds.items():
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + total - stages_before.get(stage, 0.0)


def run_video(
    config: RunConfig,
    *,
    on_start: Callable[[object, str, int | None], None] | None = None,
    on_frame: ProgressCallback | None = None,
) -> RunStats:
    """Upscale ``config.input_path`` into ``config.output_path`` as one stream.

    ``on_start(stream_info, backend_description, expected_frames)`` is called once the input
    is open and the backend chosen; ``on_frame(frames_done)`` after each frame is written.
    Ctrl-C finishes the frames already encoded into a playable (shorter) output.
    """
    from ..media.decode import VideoReader
    from ..media.encode import VideoWriter, check_output_path, output_layout
    from ..media.mux import interrupted_path

    out_path = Path(config.output_path)
    check_output_path(out_path, overwrite=config.overwrite, input_path=config.input_path)
    started = time.perf_counter()
    with VideoReader(config.input_path, strict=config.strict, deinterlace=config.deinterlace,
                     decoder_threads=config.decoder_threads, decoder=config.decoder,
                     cuda=config.engine.cuda) as reader:
        info = reader.info
        run_notes = check_run(config, info)
        layout = output_layout(config.encode, info.layout)  # a 10-bit source stays 10-bit
        startup = time.perf_counter()
        frames, engine, context_note = reader.frames(config.max_frames), config.engine, None
        if not can_reopen(config.input_path):
            # A file's context was read from frames spread over it (tuning.resolve_clip_context); a
            # pipe's is read from its first seconds, held back until the network is folded.
            from .context import engine_with_first_frames_context

            engine, frames, context_note = engine_with_first_frames_context(engine, frames)
            run_notes += [context_note] if context_note else []
        upscaler = create_frame_upscaler(engine, out_layout=layout)
        stages = {"startup": time.perf_counter() - startup}
        try:
            expected = expected_frames(info, config.max_frames)
            if on_start is not None:
                on_start(info, upscaler.description + (f"; {context_note}" if context_note else ""), expected)
            out_size = (info.width * config.scale, info.height * config.scale)
            # Without audio or subtitles the input is still read again for its title, tags and chapters.
            copy_streams = info.has_audio or info.has_subtitles or can_reopen(config.input_path)
            dropped_note = None
            if copy_streams and not can_reopen(config.input_path):
                # The audio is copied by a second reader of the input; a pipe can be read only once.
                copy_streams = False
                if config.encode.audio:
                    dropped_note = "audio and subtitles dropped: the input is a pipe or stream, read once for the video"
            writer = VideoWriter(
                out_path, width=out_size[0], height=out_size[1], source=info, options=config.encode,
                audio_from=config.input_path if copy_streams else None, overwrite=config.overwrite,
            )
            if dropped_note:
                writer.notes.append(dropped_note)
            busy: dict[str, float] = {}
            interrupted = False
            try:
                stream_frames(frames, upscaler, writer, queue_depth=config.queue_depth,
                              busy_seconds=busy, on_frame=on_frame, stage_seconds=stages)
            except KeyboardInterrupt:
                interrupted = True
            except BaseException:
                writer.close(keep=False)
                raise
            t0 = time.perf_counter()
            kept_at = None
            try:
                if interrupted and writer.frames_written == 0:
                    writer.close(keep=False)
                else:
                    # An interrupted run's frames are kept, playable, under a name that says they are
                    # partial: at OUTPUT a shortened file would pass for a finished one (and be skipped
                    # by a later folder run as done).
                    kept_at = interrupted_path(out_path) if interrupted and not writer.to_stdout else None
                    writer.close(keep=True, complete=not interrupted and config.max_frames is None, to=kept_at)
            except KeyboardInterrupt:
                writer.close(keep=False)
                raise
            busy["encode"] = busy.get("encode", 0.0) + time.perf_counter() - t0
        finally:
            upscaler.close()
        decode_notes = reader.notes
    if writer.frames_written == 0 and not interrupted:
        raise InputError(f"{config.input_path}: no frames decoded")
    return RunStats(
        frames=writer.frames_written,
        wall_seconds=time.perf_counter() - started,
        backend=upscaler.name,
        busy_seconds=busy,
        interrupted=interrupted,
        output_path=(kept_at or out_path) if writer.frames_written else None,
        input_size=(info.width, info.height),
        output_size=out_size,
        stage_seconds=stages,
        decoder=reader.report.decoder,
        model=config.model,
        notes=tuple(run_notes + decode_notes + writer.notes) + (
            (f"the {writer.frames_written} frames done are kept in {kept_at}; {out_path} is written only by a "
             "complete run",) if kept_at else ()),
    )


def input_notes(info, options: EncodeOptions, backend: str = "") -> list[str]:
    """What a run tells about its input on its first line (and a folder run in its summary, per
    file): a conversion the decoder made (RGB, 12-bit ...), chroma the default 4:2:0 halves, and
    the 8-bit precision of int8 on a 10-bit source."""
    from ..media.encode import output_layout

    notes = [info.conversion_note] if info.conversion_note else []
    written = output_layout(options, info.layout)
    if options.pix_fmt is None and written != info.layout:
        # The default layout (4:2:0, plays everywhere) halves a 4:2:2 / 4:4:4 source's chroma: say so.
        notes.append(f"written as {written} (plays everywhere; --pix-fmt {info.layout} keeps its chroma)")
    if " int8" in backend and getattr(info, "bit_depth", 8) > 8:
        notes.append("int8 rounds the network's input to 8 bits: the output is 10-bit, the detail the network "
                     "adds is 8-bit precise (--precision fp32 keeps 10 bits throughout)")
    return notes


#: Frames smaller than this cannot be upscaled: ESPCN's first layer is a 5x5 convolution.
MIN_FRAME_SIZE = 5
#: Part of the available memory a run may plan to use: the rest is for the OS, the decoder's and
#: encoder's own buffers (x264's lookahead holds several frames) and the other processes here.
MEMORY_SHARE = 0.8
#: Bytes per input pixel of ESPCN's float32 feature maps (64 + 32 channels, then scale^2).
_FEATURE_BYTES_PER_PIXEL = (64 + 32) * 4


#: The largest picture (luma samples) of each codec's highest level: H.264 level 6.2 (139,264
#: macroblocks), HEVC level 6.2 and AV1 level 6.3 (35,651,584 samples each: 8192x4352). Encoders
#: write larger frames, but decoders (players, phones, GPUs) may refuse them.
LEVEL_MAX_SAMPLES = {"libx264": ("H.264", "6.2", 139264 * 256), "h264_nvenc": ("H.264", "6.2", 139264 * 256),
                     "libx265": ("HEVC", "6.2", 35651584), "libsvtav1": ("AV1", "6.3", 35651584)}


def level_note(codec: str, width: int, height: int) -> str | None:
    """The note for an output larger than the codec's highest level allows, or None."""
    if codec not in LEVEL_MAX_SAMPLES:
        return None
    name, level, samples = LEVEL_MAX_SAMPLES[codec]
    if width * height <= samples:
        return None
    return (f"the output, {width}x{height}, is larger than {name}'s highest level ({level}: {samples / 1e6:.1f} "
            "million pixels, 8192x4352) allows: many players and hardware decoders will refuse it; "
            "H.264, HEVC and AV1 all stop there, so use a smaller --scale to stay playable")


def check_run(config: RunConfig, info, *, workers: int = 1) -> list[str]:
    """Refuse, before any work, a run that cannot finish: frames too small for the network, an
    output larger than the encoder takes, encoder settings it refuses, or more memory than there is.
    Returns notes on what will run but may not play everywhere (a frame beyond the codec's levels)."""
    from ..media.encode import check_encode_options, output_layout

    if info.width < MIN_FRAME_SIZE or info.height < MIN_FRAME_SIZE:
        raise InputError(f"{config.input_path}: frames are {info.width}x{info.height}; "
                         f"they must be at least {MIN_FRAME_SIZE}x{MIN_FRAME_SIZE}")
    if config.model != "auto":
        from ..backends import model_info

        model = model_info(config.model, config.engine.weights)
        if model is not None and min(info.width, info.height) < model.min_input_px:
            raise InputError(f"{config.input_path}: frames are {info.width}x{info.height}; model {model.name} "
                             f"needs at least {model.min_input_px}x{model.min_input_px}")
    out_w, out_h = info.width * config.scale, info.height * config.scale
    check_encode_options(config.encode, out_w, out_h, info.layout)
    needed = estimated_memory_bytes(info.width, info.height, config.scale, output_layout(config.encode, info.layout),
                                    queue_depth=config.queue_depth, batch_size=config.engine.batch_size,
                                    network_on_host=not config.engine.cuda) * workers
    available = hardware.available_memory_bytes()
    if available is not None and needed > available * MEMORY_SHARE:
        gib = 1024 ** 3
        raise OutputError(f"{info.width}x{info.height} at x{config.scale} ({out_w}x{out_h}) needs about "
                          f"{needed / gib:.1f} GiB of memory, {available / gib:.1f} GiB is available; "
                          "use a smaller --scale, --batch-size 1 or --workers 1")
    note = level_note(config.encode.codec, out_w, out_h)
    return [note] if note else []


def estimated_memory_bytes(width: int, height: int, scale: int, out_layout: str, *, queue_depth: int,
                           batch_size: int, network_on_host: bool = True) -> int:
    """What one stream holds at most: ``queue_depth`` frames waiting on each side of the engine
    (decoded input frames, upscaled output frames) and a batch in the network (its feature maps
    and float32 output)."""
    chroma_share = {"yuv420p": 0.5, "yuv422p": 1.0, "yuv444p": 2.0}.get(out_layout, 2.0)
    in_px, out_px = width * height, width * height * scale * scale
    in_frame = in_px * 3  # decoded as 4:4:4 at most
    out_frame = out_px * (1 + chroma_share)
    # With --device cuda the feature maps live in GPU memory, which the backend itself checks.
    network = batch_size * (in_px * _FEATURE_BYTES_PER_PIXEL + out_px * 4 * 2) if network_on_host else 0
    return int(queue_depth * (in_frame + out_frame) + network)


def expected_frames(info, max_frames: int | None) -> int | None:
    """The frame count to show progress against: the container's, the video packets counted
    (Matroska stores no count, and duration x average rate undercounts variable frame rate),
    or duration x rate."""
    expected = info.num_frames
    if expected is None and _is_local_file(info.path):
        from ..media.probe import count_video_packets

        expected = count_video_packets(info.path) or None
    if expected is None and info.duration_seconds and info.average_fps:
        expected = round(info.duration_seconds * info.average_fps)
    if max_frames is not None:
        expected = min(expected, max_frames) if expected else max_frames
    return expected


def can_reopen(source: os.PathLike | str) -> bool:
    """Whether an input can be opened more than once (segments and the audio copy open it
    again): a regular file or folder; not a URL, and not standard input or another pipe."""
    import stat

    text = str(source)
    if "://" in text or text.startswith(("pipe:", "/dev/stdin", "/dev/fd/", "/proc/self/fd/")) or text == "-":
        return False
    try:
        mode = os.stat(text).st_mode
    except OSError:
        return True  # missing: the reader says so in its own words
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def _is_local_file(path: str) -> bool:
    return "://" not in path and not path.startswith("pipe:") and path not in ("-", "/dev/stdin") \
        and Path(path).is_file()
