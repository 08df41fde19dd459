"""``vsr bench``: how fast each stage runs, and the whole chain, against the paper's target.

The upscaler is the one ``vsr run`` builds for the same options (``create_frame_upscaler``
with the same ``EngineSpec``), so what is measured is what ships. Stages are timed one at a
time (the device is synchronised around each), so their fps do not add up to the end-to-end
figure, which runs ``vsr run``'s own chain (decode thread -> engine thread -> encoder) around
that upscaler's ``upscale_frames``. Everything is single-pass over at most ``frames`` frames,
so runs stay short.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .backends import EngineSpec
from .errors import InputError
from .frames import YuvFrame

#: ESPCN paper (Shi et al. 2016): 1080p output at x3 in 0.038 s per frame on an NVIDIA K2.
PAPER_SECONDS_PER_FRAME = 0.038
PAPER_OUTPUT_HW = (1080, 1920)
PAPER_FPS = 1 / PAPER_SECONDS_PER_FRAME
PAPER_OUTPUT_MPX_PER_S = PAPER_OUTPUT_HW[0] * PAPER_OUTPUT_HW[1] / PAPER_SECONDS_PER_FRAME / 1e6
STAGE_ORDER = ("decode", "upload", "engine", "chroma", "download", "encode")


@dataclass(frozen=True)
class BenchConfig:
    """``input`` (a clip) or ``size`` ((width, height) of synthetic frames); ``frames`` caps
    every timed loop; ``warmup_frames`` run first and are not timed (graph capture, cuDNN
    and TensorRT autotuning, ORT's first-run allocations). ``weights``, ``num_threads`` and
    ``batch_size`` mean what they mean to ``vsr run`` (see ``EngineSpec``)."""

    #: The engine measured, as `vsr run` would build it (onnxruntime unless told otherwise).
    engine: EngineSpec = field(default_factory=lambda: EngineSpec(backend="onnxruntime"))
    input: Path | None = None
    size: tuple[int, int] | None = (640, 360)
    frames: int = 60
    warmup_frames: int = 5
    encoder: str = "libx264"
    encoder_preset: str = "ultrafast"

    @property
    def encode_options(self):
        """`vsr run`'s encoder options for this benchmark (its default chroma layout, no audio)."""
        from .media.encode import EncodeOptions

        return EncodeOptions(codec=self.encoder, preset=self.encoder_preset, audio=False)

    @property
    def scale(self) -> int:
        return self.engine.scale


@dataclass
class BenchReport:
    config: dict
    machine: dict
    versions: dict
    input_hw: tuple[int, int]
    output_hw: tuple[int, int]
    frames: int
    backend: str
    engine_only_fps: float
    engine_note: str
    stage_fps: dict[str, float | None]
    end_to_end_fps: float
    notes: list[str] = field(default_factory=list)

    @property
    def output_mpx_per_s(self) -> float:
        return self.output_hw[0] * self.output_hw[1] * self.end_to_end_fps / 1e6

    def to_dict(self) -> dict:
        data = asdict(self)
        data["paper_target"] = {"seconds_per_frame": PAPER_SECONDS_PER_FRAME, "fps": round(PAPER_FPS, 1),
                                "output_hw": PAPER_OUTPUT_HW, "gpu": "NVIDIA K2",
                                "output_mpx_per_s": round(PAPER_OUTPUT_MPX_PER_S, 1)}
        data["end_to_end_output_mpx_per_s"] = round(self.output_mpx_per_s, 2)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_table(self) -> str:
        (h, w), (oh, ow) = self.input_hw, self.output_hw
        lines = [
            f"vsr bench: {self.backend} on {self.machine['device']}, x{self.config['scale']}, "
            f"{w}x{h} -> {ow}x{oh}, {self.frames} frames",
            "versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()),
            "",
            f"{'stage':<28}{'ms/frame':>10}{'fps':>10}",
        ]

        def row(label: str, fps: float | None) -> str:
            if fps is None:
                return f"{label:<28}{'-':>10}{'-':>10}"
            return f"{label:<28}{1000 / fps:>10.2f}{fps:>10.1f}"

        lines.append(row(f"engine only ({self.engine_note})", self.engine_only_fps))
        lines += [row(stage, self.stage_fps.get(stage)) for stage in STAGE_ORDER]
        lines.append(row("end to end", self.end_to_end_fps))
        lines.append(row("paper target (K2, 1080p x3)", PAPER_FPS))
        verdict = "meets" if self.output_mpx_per_s >= PAPER_OUTPUT_MPX_PER_S else "misses"
        lines += ["", f"end to end: {self.output_mpx_per_s:.1f} output Mpx/s; the paper's target is "
                      f"{PAPER_OUTPUT_MPX_PER_S:.1f} Mpx/s (1920x1080 in 0.038 s): this run {verdict} it."]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def synthetic_frames(width: int, height: int, count: int) -> list[YuvFrame]:
    """Moving gradients, edges and noise: stand-in frames when no clip is given."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(count):
        luma = 128 + 60 * np.sin((xx + 3 * i) / 11) * np.cos(yy / 17) + rng.normal(0, 4, (height, width))
        luma[(xx // 32 + yy // 32 + i) % 2 == 0] += 30
        luma = np.clip(luma, 0, 255).astype(np.uint8)
        chroma = np.ascontiguousarray(luma[::2, ::2][: (height + 1) // 2, : (width + 1) // 2])
        frames.append(YuvFrame(luma, chroma, 255 - chroma, "yuv420p", i, None, i))
    return frames


def machine_info(device: str) -> dict:
    """The CPU (model name, family/model/stepping, cores, the flags that decide speed) and, on
    CUDA, the GPU a figure was measured on."""
    # "AMD EPYC" alone does not say whether the CPU has AMX or AVX-512 BF16, which decide bf16's
    # speed by 2x: name family/model/stepping and those flags too, as --precision auto keys its cache.
    from .hardware import cpu_identity, cpu_model_name, gpu_info

    identity = cpu_identity()
    info = {"cpu": cpu_model_name(), "cpu_cores": os.cpu_count(), "cpu_identity": identity, "device": f"CPU ({identity})"}
    if device.startswith("cuda"):
        gpu = gpu_info(device)
        info.update(gpu, device=f"GPU {gpu['gpu']}")
    return info


def _versions(device: str) -> dict:
    import av

    versions = {"python": platform.python_version(), "numpy": np.__version__, "av": av.__version__}
    for module in ("torch", "onnxruntime", "openvino", "tensorrt", "cv2"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            continue
    if device.startswith("cuda"):
        import torch

        versions["cuda (torch)"] = torch.version.cuda
        versions["cudnn"] = torch.backends.cudnn.version()
    return versions


class _Encoder:
    """The pipeline's VideoWriter into a temporary folder deleted afterwards: the encode cost of
    `vsr run` (same encoder settings, odd-size handling and plane copies), without disk clutter."""

    _TIME_BASE = Fraction(1, 30)

    def __init__(self, config: BenchConfig, width: int, height: int, layout: str,
                 on_frame: Callable[[YuvFrame], None] | None = None) -> None:
        from .media.encode import VideoSpec, VideoWriter

        self._on_frame = on_frame
        self._tmp = tempfile.TemporaryDirectory(prefix="vsr-bench-")
        self._writer = VideoWriter(
            Path(self._tmp.name) / "bench.mp4", width=width, height=height,
            source=VideoSpec(time_base=self._TIME_BASE, average_fps=30.0),
            options=dataclasses.replace(config.encode_options, pix_fmt=layout),
        )

    def encode(self, frame: YuvFrame) -> None:
        if self._on_frame is not None:
            self._on_frame(frame)
        # Synthetic and decoded frames alike are timed by their index: 30 fps, strictly increasing.
        self._writer.write(dataclasses.replace(frame, pts=frame.index, time_base=self._TIME_BASE))

    write = encode  # the writer interface of pipeline.stream_frames

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    def close(self) -> None:
        self._writer.close()
        self._tmp.cleanup()


class _Upscaler:
    """The frame upscaler `vsr run` builds for the same options (``create_frame_upscaler``),
    with hooks to time its engine and stages one at a time.

    GPU-resident frames time themselves (``upscale_frame(frame, stage_seconds)``). Host frames
    are timed here with the stage functions ``HostFrameUpscaler`` runs, in its batches: the
    engine (luma through ``upscaler.backend``, host<->device copies included for GPU backends)
    and the CPU chroma resize.
    """

    def __init__(self, config: BenchConfig) -> None:
        from .media.encode import output_layout
        from .pipeline.upscaler import HostFrameUpscaler, create_frame_upscaler

        self.upscaler = create_frame_upscaler(config.engine, out_layout=output_layout(config.encode_options))
        self.host = isinstance(self.upscaler, HostFrameUpscaler)
        self.gpu_frames = None if self.host else self.upscaler
        self.backend = self.upscaler.backend if self.host else None
        self.batch_size = self.upscaler.batch_size if self.host else 1
        self.name = self.upscaler.description

    @property
    def on_device(self) -> bool:
        """Whether host frames go through a backend that runs on a GPU (copies each batch)."""
        return self.host and str(self.backend.device) != "cpu"

    def engine_only(self, frame: YuvFrame, iterations: int, warmup: int) -> tuple[float, str]:
        if self.gpu_frames is not None:
            self.gpu_frames.upscale_frame(frame)  # makes the buffers and the graph
            luma = self.gpu_frames.backend.luma_buffers((1, frame.height, frame.width), "uint8")
            torch = self.gpu_frames._torch
            stream = self.gpu_frames.backend.compute_stream
            with torch.no_grad(), (torch.cuda.stream(stream) if stream is not None else _nothing()):
                for _ in range(warmup):
                    luma["run"]()
                if stream is not None:
                    stream.synchronize()
                start = time.perf_counter()
                for _ in range(iterations):
                    luma["run"]()
                if stream is not None:
                    stream.synchronize()
            return iterations / (time.perf_counter() - start), "device-resident uint8, no copies"
        # The batch `vsr run` hands the engine: batch_size frames per call.
        batch = np.repeat(frame.luma[None, None], self.batch_size, axis=0).astype(np.float32) / np.float32(255)
        calls = max(1, -(-iterations // self.batch_size))
        for _ in range(max(1, -(-warmup // self.batch_size)) if warmup else 0):
            self.backend.upscale_luma(batch)
        start = time.perf_counter()
        for _ in range(calls):
            self.backend.upscale_luma(batch)
        note = "float32 in/out" + (f", batches of {self.batch_size}" if self.batch_size > 1 else "")
        note += ", with host<->device copies" if self.on_device else ""
        return calls * self.batch_size / (time.perf_counter() - start), note

    def frames(self, frames: list[YuvFrame], stage_seconds: dict[str, float] | None = None) -> list[YuvFrame]:
        """``frames`` upscaled one stage at a time; with ``stage_seconds``, each stage's time added there."""
        if self.gpu_frames is not None:
            return [self.gpu_frames.upscale_frame(frame, stage_seconds) for frame in frames]
        from .pipeline.stages import assemble, batched, upscale_luma

        out_layout = self.upscaler.out_layout
        outputs = []
        engine_s = chroma_s = 0.0
        for batch in batched(frames, self.batch_size):
            start = time.perf_counter()
            lumas = upscale_luma([frame.luma for frame in batch], self.backend)
            middle = time.perf_counter()
            outputs += [assemble(frame, luma, out_layout or frame.layout) for frame, luma in zip(batch, lumas)]
            engine_s += middle - start
            chroma_s += time.perf_counter() - middle
        if stage_seconds is not None:
            stage_seconds["engine"] = stage_seconds.get("engine", 0.0) + engine_s
            stage_seconds["chroma"] = stage_seconds.get("chroma", 0.0) + chroma_s
        return outputs

    def close(self) -> None:
        self.upscaler.close()


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def _decoded(config: BenchConfig) -> Iterator[YuvFrame]:
    from .media.decode import VideoReader

    with VideoReader(config.input) as reader:
        yield from reader.frames(max_frames=config.frames)


def _with_context_folded(config: BenchConfig, frames: list[YuvFrame]) -> tuple[BenchConfig, str | None]:
    """A network with a global context timed as `vsr run` runs it: with a clip's context folded
    into its convolutions (here the benchmark's frames', spread over them), not reading each frame's."""
    from .models.clip_context import CLIP_SAMPLES
    from .pipeline.context import engine_with_context_of, unfolded

    engine = config.engine
    if not unfolded(engine):
        return config, None
    step = max(1, len(frames) // (2 * CLIP_SAMPLES))
    picked = frames[::step][:2 * CLIP_SAMPLES]
    engine = engine_with_context_of(engine, [frame.luma for frame in picked], peak=(1 << picked[0].bit_depth) - 1)
    return (dataclasses.replace(config, engine=engine),
            f"its context read from {len(picked)} of the frames and folded into its convolutions, as vsr run runs it")


def run_bench(config: BenchConfig, *, on_upscaled: Callable[[YuvFrame], None] | None = None) -> BenchReport:
    """Benchmark the frame upscaler `vsr run` builds for ``config``'s options.

    ``on_upscaled`` is called with each frame the end-to-end loop upscaled, before it is
    encoded (tests check what was measured with it; it counts in the end-to-end time).
    """
    from .pipeline.pipeline import stream_frames

    if config.input is None and config.size is None:
        raise InputError("give a clip (--input) or a frame size (--size)")
    notes = []
    stage_seconds: dict[str, float] = {}
    if config.input is not None:
        start = time.perf_counter()
        frames = list(_decoded(config))
        stage_seconds["decode"] = time.perf_counter() - start
        if not frames:
            raise InputError(f"{config.input}: no frames decoded")
    else:
        frames = synthetic_frames(*config.size, config.frames)
        notes.append("synthetic frames (--size): no decode stage")
    count = len(frames)
    config, context_note = _with_context_folded(config, frames)
    notes += [context_note] if context_note else []
    upscaler = _Upscaler(config)
    try:
        engine_fps, engine_note = upscaler.engine_only(frames[0], count, config.warmup_frames)
        upscaler.frames(frames[: config.warmup_frames])
        outputs = upscaler.frames(frames, stage_seconds)
        layout = outputs[0].layout
        encoder = _Encoder(config, outputs[0].width, outputs[0].height, layout)
        start = time.perf_counter()
        for frame in outputs:
            encoder.encode(frame)
        encoder.close()
        stage_seconds["encode"] = time.perf_counter() - start
        del outputs

        source: Iterable[YuvFrame] = _decoded(config) if config.input is not None else frames
        encoder = _Encoder(config, frames[0].width * config.scale, frames[0].height * config.scale, layout,
                           on_frame=on_upscaled)
        start = time.perf_counter()
        # The shipped path: `vsr run`'s own chain (decode thread -> engine thread -> encoder)
        # around the same frame upscaler's upscale_frames that `vsr run` and its workers use.
        stream_frames(source, upscaler.upscaler, encoder)
        done = encoder.frames_written
        encoder.close()
        end_to_end_fps = done / (time.perf_counter() - start)
    finally:
        upscaler.close()
    if upscaler.gpu_frames is not None:
        notes.append("GPU-resident frames: each plane is uploaded once and downloaded once; "
                     "chroma is resized on the GPU")
    elif upscaler.on_device:
        notes.append(f"host frames with a GPU backend ({upscaler.name}): luma is copied to the device and back "
                     "per batch inside the engine stage (no separate upload/download stages); "
                     "chroma is resized on the CPU")
    else:
        notes.append("host frames on the CPU: no upload/download stages (the engine reads host memory)")
    stage_fps = {stage: (count / stage_seconds[stage] if stage_seconds.get(stage) else None) for stage in STAGE_ORDER}
    return BenchReport(
        config=_config_record(config),
        machine=machine_info(config.engine.device), versions=_versions(config.engine.device),
        input_hw=(frames[0].height, frames[0].width),
        output_hw=(frames[0].height * config.scale, frames[0].width * config.scale),
        frames=count, backend=upscaler.name, engine_only_fps=engine_fps, engine_note=engine_note,
        stage_fps=stage_fps, end_to_end_fps=end_to_end_fps, notes=notes,
    )


def _config_record(config: BenchConfig) -> dict:
    """The options as the report's JSON keeps them: flat, the engine's fields beside the others
    (as before the engine was one spec), paths as text."""
    record = asdict(config)
    engine = record.pop("engine")
    engine.pop("backend_options")
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in {**engine, **record}.items()}

