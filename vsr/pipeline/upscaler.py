"""The one seam for "upscale these frames": ``vsr run``, its segment workers, ``vsr live`` and
``vsr bench`` all build their frame upscaler here, so what is benchmarked is what ships.

A ``FrameUpscaler`` takes an iterator of ``YuvFrame`` and yields the upscaled frames in the
same order (it may keep a few in flight). Two kinds exist:

- host frames (``HostFrameUpscaler``): luma through any backend, batched, chroma resized
  bicubically by OpenCV on the CPU. Every backend works this way, GPU ones included
  (they copy luma to the device and back).
- GPU-resident frames (``backends.gpu_frames.GpuFrameUpscaler``): torch on CUDA; each plane
  is uploaded once and downloaded once, chroma is resized on the GPU too. ``--device cuda``
  with ``--backend auto`` or ``torch`` takes this path.
"""
from __future__ import annotations

import time
from typing import Iterable, Iterator, Protocol

from ..backends import EngineSpec, describe
from ..backends.base import Backend
from ..frames import YuvFrame
from .stages import assemble, batched, upscale_luma

__all__ = ["FrameUpscaler", "HostFrameUpscaler", "create_frame_upscaler", "EngineSpec"]


class FrameUpscaler(Protocol):
    """``description`` names the backend and device for the user (e.g. "openvino (cpu)").
    ``stage_seconds``: the time spent in each of its stages so far, summed over every frame
    (host frames: "engine" and "chroma"; GPU-resident frames: "upload", "engine", "chroma" and
    "download", as the device timed them)."""

    description: str
    scale: int
    stage_seconds: dict[str, float]

    def upscale_frames(self, frames: Iterable[YuvFrame]) -> Iterator[YuvFrame]: ...

    def close(self) -> None: ...


class HostFrameUpscaler:
    """Frames in host memory: luma through ``backend`` in batches, chroma bicubic on the CPU."""

    def __init__(self, backend: Backend, *, out_layout: str | None = None, batch_size: int = 1) -> None:
        self.backend, self.out_layout, self.batch_size = backend, out_layout, batch_size
        self.scale = backend.scale
        self.name = backend.name
        self.description = describe(backend)
        self.stage_seconds: dict[str, float] = {"engine": 0.0, "chroma": 0.0}

    def upscale_frames(self, frames: Iterable[YuvFrame]) -> Iterator[YuvFrame]:
        """``stages.upscale_frames``, with the network and the chroma resize timed apart."""
        seconds = self.stage_seconds
        for batch in batched(frames, self.batch_size):
            started = time.perf_counter()
            lumas = upscale_luma([frame.luma for frame in batch], self.backend)
            middle = time.perf_counter()
            upscaled = [assemble(frame, luma, self.out_layout or frame.layout) for frame, luma in zip(batch, lumas)]
            seconds["engine"] += middle - started
            seconds["chroma"] += time.perf_counter() - middle
            yield from upscaled

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "HostFrameUpscaler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def uses_gpu_frames(spec: EngineSpec) -> bool:
    """Whether ``spec`` runs on the GPU-resident path (torch on CUDA, shipped or .pt weights)."""
    onnx_weights = spec.weights is not None and str(spec.weights).endswith(".onnx")
    return spec.cuda and spec.backend in ("auto", "torch") and not onnx_weights


def create_frame_upscaler(spec: EngineSpec, *, out_layout: str | None = None) -> FrameUpscaler:
    """The frame upscaler for ``spec``: GPU-resident on CUDA with torch, host frames otherwise."""
    if uses_gpu_frames(spec):
        if spec.precision not in ("auto", "fp32"):
            from ..backends import BackendUnavailable

            raise BackendUnavailable(f"--precision {spec.precision} runs on the openvino backend (CPU) only")
        from ..backends.gpu_frames import GpuFrameUpscaler
        from ..backends.torch import torch_cuda_options

        from .stages import upscale_frames

        return GpuFrameUpscaler(spec.scale, spec.weights, torch_cuda_options(spec), out_layout=out_layout,
                                model=spec.model, host_frames=upscale_frames, context=spec.context)
    from ..backends import create_backend

    backend = create_backend(spec)
    return HostFrameUpscaler(backend, out_layout=out_layout, batch_size=spec.batch_size)
