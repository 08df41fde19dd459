"""Every ``auto`` a run or a live view has, resolved once, above the backends, into concrete values:
the model (the best of the ladder that holds the input's frame rate), the backend and its
precision (for segments, once in the driver, so every worker runs the same), a network's clip
context (read from the input, folded into its weights), and the workers (from the cores and GPUs).
Each returns what it chose and the line that says why; nothing here prints. ``create_backend``
resolves a spec's own backend and precision the same way when it is called directly
(``backends.precision.resolve_precision``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .. import hardware
from ..backends import EngineSpec
from ..errors import InputError

if TYPE_CHECKING:
    from ..pipeline.pipeline import RunConfig

__all__ = ["CPU_CORES_PER_WORKER", "GPU_WORKERS_PER_GPU", "auto_workers", "engine_with_clip_context",
           "resolve_clip_context", "resolve_engine", "resolve_model", "resolve_run_model"]


#: One worker per core: on the 2-core AMD EPYC, 2 workers beat 1 in every paired round on both
#: clips (360p->1080p 20.8 vs 19.3 fps, 720p->4K 5.28 vs 5.11 at best), and 4 did no better
#: than 2 (benchmarks/results/segments_cpu.md). Each gets a one-thread share of everything.
#: int8 too: it once got one 2-thread worker (26.5 against 14.6 fps, measured while OpenVINO
#: pinned every worker's threads to core 0); since, on the 917-frame clip, 2 workers ran 29.9 and
#: 28.5 fps against 28.5 and 28.8 for one 2-thread worker (benchmarks/results/cpu_levers.md).
CPU_CORES_PER_WORKER = 1
#: With a GPU the workers' CPU side (decode, chroma, encode) is the limit: one worker per two
#: cores, as many as 8 per GPU (16 libx264 encoders reached 885 fps at 1080p on a 16-core
#: H100 machine, issue #10), so a 16-core machine runs 8.
GPU_WORKERS_PER_GPU = 8


def auto_workers(spec: EngineSpec, *, cpu_count: int | None = None, gpu_count: int | None = None) -> int:
    """The default ``--workers``: from the cores (and GPUs with ``--device cuda``)."""
    cores = cpu_count or hardware.available_cpus()
    by_cores = max(1, cores // CPU_CORES_PER_WORKER)
    if spec.cuda:
        gpus = gpu_count if gpu_count is not None else hardware.gpu_count()
        return max(1, min(by_cores, GPU_WORKERS_PER_GPU * max(1, gpus)))
    return by_cores


def resolve_run_model(config: RunConfig) -> tuple[RunConfig, str]:
    """``config`` with ``model`` "auto" replaced by the best model that holds the target frame
    rate (the input's own unless ``target_fps`` says otherwise) for the input's degradation
    (``config.degradation``; auto: from its codec and bits per pixel), and the line that says why."""
    from ..media.decode import VideoReader
    from ..media.probe import video_bits_per_pixel
    from ..pipeline.pipeline import can_reopen

    if not can_reopen(config.input_path):
        # A pipe is read once, by the decoder: nothing to time the models on, no codec to judge by.
        name = "realtime-compressed" if config.degradation == "compressed" else "realtime"
        why = ("--degradation compressed" if config.degradation == "compressed" else
               "a stream's codec is unknown until it is read; --degradation compressed for lossy sources")
        return _with_model(config, name), (f"model {name}: the real-time model for a stream or pipe ({why}; "
                                             "--model NAME picks another)")
    with VideoReader(config.input_path) as reader:
        info = reader.info
    from ..pipeline.pipeline import MIN_FRAME_SIZE

    if info.width < MIN_FRAME_SIZE or info.height < MIN_FRAME_SIZE:
        # Refused before any model is timed on frames no network takes (check_run says the same).
        raise InputError(f"{config.input_path}: frames are {info.width}x{info.height}; "
                         f"they must be at least {MIN_FRAME_SIZE}x{MIN_FRAME_SIZE}")
    target_fps = config.target_fps or info.average_fps
    if not target_fps:
        raise InputError(f"{config.input_path}: no frame rate to keep up with: give --target-fps")
    bits_per_pixel = video_bits_per_pixel(config.input_path) if config.degradation == "auto" else None
    model, note = resolve_model(config.engine, info.width, info.height, target_fps, degradation=config.degradation,
                                codec_name=info.codec_name, bits_per_pixel=bits_per_pixel)
    return _with_model(config, model), note


def resolve_model(engine: EngineSpec, width_px: int, height_px: int, target_fps: float, *, degradation: str,
                  codec_name: str | None, bits_per_pixel: float | None = None) -> tuple[str, str]:
    """Model "auto" for a source of this size, rate and codec (`vsr run`'s input, `vsr live`'s
    source): the best model of the clean or compressed ladder that holds ``target_fps`` on
    ``engine``'s backend and device (``model_choice``), and the line that says why."""
    from .model_choice import choose_for_input

    candidates = replace(engine, weights=None, num_threads=0)  # each model timed with every core, as alone
    return choose_for_input(candidates, width_px, height_px, target_fps, degradation_option=degradation,
                            codec_name=codec_name, bits_per_pixel=bits_per_pixel)


def resolve_clip_context(config: RunConfig) -> tuple[RunConfig, str | None]:
    """``config`` with the clip's context (``models.clip_context``) in its engine where its network
    has a global context: read once here, from frames spread over the input, so every segment and
    worker folds the same context and runs the plain network; and the line that says so. Unchanged
    (None) for a network without one, an .onnx of your own, or a pipe (each frame then reads its own)."""
    from ..pipeline.pipeline import can_reopen

    if not can_reopen(config.input_path):
        return config, None
    engine, note = engine_with_clip_context(config.engine, config.input_path)
    return replace(config, engine=engine), note


def engine_with_clip_context(engine: EngineSpec, path) -> tuple[EngineSpec, str | None]:
    """``engine`` with the context of the video file ``path`` where its network has a global
    context (``resolve_clip_context``; `vsr live` on a file too), and the line that says so."""
    from ..pipeline.context import unfolded

    if not unfolded(engine):
        return engine, None
    from ..media.decode import VideoReader, sample_frames
    from ..models.clip_context import CLIP_SAMPLES
    from ..pipeline.context import engine_with_context_of

    with VideoReader(path) as reader:
        info = reader.info
    frames = sample_frames(path, info, CLIP_SAMPLES)
    engine = engine_with_context_of(engine, [f.luma for f in frames], peak=(1 << info.bit_depth) - 1)
    note = (f"its context read from {engine.context.frames} frames spread over the clip and folded into its "
            "convolutions (one plain network for the whole clip)")
    return engine, note


def _with_model(config: RunConfig, model: str) -> RunConfig:
    return replace(config, engine=replace(config.engine, model=model))


def resolve_engine(spec: EngineSpec) -> tuple[EngineSpec, str]:
    """Pick the backend once in the driver (so every worker runs the same one, and an
    unavailable backend fails before any worker starts); returns the spec and its description."""
    from ..backends import create_backend, describe
    from ..pipeline.upscaler import uses_gpu_frames

    if uses_gpu_frames(spec):
        if hardware.gpu_count() == 0:
            from ..errors import BackendUnavailable

            raise BackendUnavailable("torch sees no CUDA GPU")
        from ..backends.gpu_frames import describe_gpu_frames
        from ..backends.torch import torch_cuda_options

        return replace(spec, backend="torch"), describe_gpu_frames(torch_cuda_options(spec))
    backend = create_backend(replace(spec, num_threads=0))
    # Precision too: auto is timed once, here, and every worker runs what it chose.
    precision = backend.precision or spec.precision
    try:
        return replace(spec, backend=backend.name, precision=precision), describe(backend)
    finally:
        backend.close()
