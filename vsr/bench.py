"""``vsr bench``: how fast each stage runs, and the whole chain, against the paper's target.

Stages are timed one at a time (the device is synchronised around each), so their fps do
not add up to the end-to-end figure, which runs `vsr run`'s own chain (decode thread ->
engine thread -> encoder) around the frame upscaler `vsr run` builds for the same options. Everything is single-pass over at
most ``frames`` frames, so runs stay short.
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
from typing import Iterable, Iterator

import numpy as np

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
    and TensorRT autotuning, ORT's first-run allocations)."""

    scale: int = 3
    backend: str = "onnxruntime"
    device: str = "cpu"
    input: Path | None = None
    size: tuple[int, int] | None = (640, 360)
    frames: int = 60
    warmup_frames: int = 5
    encoder: str = "libx264"
    encoder_preset: str = "ultrafast"


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


def _machine(device: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "device": f"CPU ({cpu}, {os.cpu_count()} cores)"}
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), device=f"GPU {props.name}")
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

    def __init__(self, config: BenchConfig, width: int, height: int, layout: str) -> None:
        from .media.encode import EncodeOptions, VideoSpec, VideoWriter

        self._tmp = tempfile.TemporaryDirectory(prefix="vsr-bench-")
        self._writer = VideoWriter(
            Path(self._tmp.name) / "bench.mp4", width=width, height=height,
            source=VideoSpec(time_base=self._TIME_BASE, average_fps=30.0),
            options=EncodeOptions(codec=config.encoder, preset=config.encoder_preset, pix_fmt=layout, audio=False),
        )

    def encode(self, frame: YuvFrame) -> None:
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
    """The frame upscaler `vsr run` would build for the same options (``create_frame_upscaler``),
    with hooks to time its engine and stages one at a time."""

    def __init__(self, config: BenchConfig) -> None:
        from .backends import EngineSpec
        from .pipeline.upscaler import create_frame_upscaler

        self.upscaler = create_frame_upscaler(EngineSpec(scale=config.scale, backend=config.backend,
                                                         device=config.device))
        self.gpu_frames = self.upscaler if hasattr(self.upscaler, "upscale_frame") else None
        self.backend = None if self.gpu_frames is not None else self.upscaler.backend
        self.name = self.upscaler.description

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
        batch = frame.luma[None, None].astype(np.float32) / np.float32(255)
        for _ in range(warmup):
            self.backend.upscale_luma(batch)
        start = time.perf_counter()
        for _ in range(iterations):
            self.backend.upscale_luma(batch)
        on_device = getattr(self.backend, "device", "cpu") != "cpu"
        note = "float32 in/out" + (", with host<->device copies" if on_device else "")
        return iterations / (time.perf_counter() - start), note

    def frame(self, frame: YuvFrame, stage_seconds: dict[str, float] | None = None) -> YuvFrame:
        if self.gpu_frames is not None:
            return self.gpu_frames.upscale_frame(frame, stage_seconds)
        from .pipeline.stages import assemble, upscale_luma

        start = time.perf_counter()
        (luma,) = upscale_luma([frame.luma], self.backend)
        middle = time.perf_counter()
        out = assemble(frame, luma, frame.layout)
        if stage_seconds is not None:
            stage_seconds["engine"] = stage_seconds.get("engine", 0.0) + middle - start
            stage_seconds["chroma"] = stage_seconds.get("chroma", 0.0) + time.perf_counter() - middle
        return out

    def close(self) -> None:
        self.upscaler.close()


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def _decoded(config: BenchConfig) -> Iterator[YuvFrame]:
    from .media.decode import VideoReader

    with VideoReader(config.input) as reader:
        yield from reader.frames(max_frames=config.frames)


def run_bench(config: BenchConfig) -> BenchReport:
    from .pipeline.pipeline import stream_frames

    if config.input is None and config.size is None:
        raise InputError("give a clip (--input) or a frame size (--size)")
    notes = []
    stage_seconds: dict[str, float] = {}
    if config.input is not None:
        start = time.perf_counter()
        frames = list(_decoded(config))
        stage_seconds["decode"] = time.perf_counter() - start
    else:
        frames = synthetic_frames(*config.size, config.frames)
        notes.append("synthetic frames (--size): no decode stage")
    count = len(frames)
    upscaler = _Upscaler(config)
    try:
        engine_fps, engine_note = upscaler.engine_only(frames[0], count, config.warmup_frames)
        for frame in frames[: config.warmup_frames]:
            upscaler.frame(frame)
        outputs = [upscaler.frame(frame, stage_seconds) for frame in frames]
        layout = outputs[0].layout
        encoder = _Encoder(config, outputs[0].width, outputs[0].height, layout)
        start = time.perf_counter()
        for frame in outputs:
            encoder.encode(frame)
        encoder.close()
        stage_seconds["encode"] = time.perf_counter() - start
        del outputs

        source: Iterable[YuvFrame] = _decoded(config) if config.input is not None else frames
        encoder = _Encoder(config, frames[0].width * config.scale, frames[0].height * config.scale, layout)
        start = time.perf_counter()
        # The shipped path: `vsr run`'s own chain (decode thread -> engine thread -> encoder)
        # around the same frame upscaler that `vsr run` and its segment workers build.
        stream_frames(source, upscaler.upscaler, encoder)
        done = encoder.frames_written
        encoder.close()
        end_to_end_fps = done / (time.perf_counter() - start)
    finally:
        upscaler.close()
    if upscaler.gpu_frames is None and config.device == "cpu":
        notes.append("CPU backend: no upload/download stages (the engine reads host memory)")
    elif upscaler.gpu_frames is None:
        notes.append(f"host frames on {config.device}: luma is copied to the device and back inside the engine "
                     "stage; chroma is resized on the CPU")
    stage_fps = {stage: (count / stage_seconds[stage] if stage_seconds.get(stage) else None) for stage in STAGE_ORDER}
    return BenchReport(
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        machine=_machine(config.device), versions=_versions(config.device),
        input_hw=(frames[0].height, frames[0].width),
        output_hw=(frames[0].height * config.scale, frames[0].width * config.scale),
        frames=count, backend=upscaler.name, engine_only_fps=engine_fps, engine_note=engine_note,
        stage_fps=stage_fps, end_to_end_fps=end_to_end_fps, notes=notes,
    )
