"""Whole frames on the GPU: each decoded plane is uploaded once and each finished plane
downloaded once; ESPCN on luma, bicubic chroma and the float<->uint8 conversions all run
on the device, over static buffers made once per frame size (no per-frame allocations).

It lives in ``backends/`` because only backends know about device memory: the pipeline
hands it ``YuvFrame``s and gets ``YuvFrame``s back. On ``device='cpu'`` the same code runs
eagerly, which is how it is tested against the CPU stage (``pipeline.stages``, which it is handed for 10-bit frames).
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Iterable, Iterator

from ..frames import YuvFrame, chroma_shape
from .torch_cuda import TorchCudaBackend, TorchCudaOptions, _Graphed

#: Stage names, in order, for ``upscale_frame(..., stage_seconds=...)``.
STAGES = ("upload", "engine", "chroma", "download")


def describe_gpu_frames(options: TorchCudaOptions) -> str:
    """How the GPU-resident path is named to the user ("torch (cuda:0, fp16, GPU-resident frames)")."""
    return f"torch ({options.device}, {'fp16' if options.fp16 else 'fp32'}, GPU-resident frames)"


class GpuFrameUpscaler:
    """Upscale ``YuvFrame``s by ``scale`` on a torch device (see ``TorchCudaOptions``).

    ``out_layout`` picks the output chroma layout (default: each frame's own). ``host_frames``:
    the CPU stage (``pipeline.stages.upscale_frames``, which ``create_frame_upscaler`` hands in:
    backends never import the pipeline above them) that 10-bit frames go through, their luma still
    on this backend; without it a 10-bit frame is refused.
    """

    def __init__(self, scale: int, weights: os.PathLike | str | None = None,
                 options: TorchCudaOptions = TorchCudaOptions(), out_layout: str | None = None,
                 model: str = "espcn", host_frames: Callable | None = None, context=None) -> None:
        self.backend = TorchCudaBackend(scale, weights, options, model=model, context=context)
        self._host_frames = host_frames
        self.scale, self.out_layout = scale, out_layout
        self.name = "torch"
        self.description = describe_gpu_frames(options)
        self._torch = self.backend._torch
        self._chroma: dict[tuple, dict] = {}
        #: Each stage's time so far, summed over frames: device time (CUDA events, which add no
        #: wait: they are read after the frame's own final synchronise), host time on the CPU.
        self.stage_seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        with self._torch.cuda.device(self.backend.device) if self.backend.cuda else contextlib.nullcontext():
            self._timer = _FrameTimer(self._torch, self.backend.cuda)  # events live on the streams' device

    def upscale_frames(self, frames: Iterable[YuvFrame]) -> Iterator[YuvFrame]:
        for frame in frames:
            if frame.bit_depth > 8:
                # The static device buffers are 8-bit: 10-bit luma goes through the same network as
                # float in [0, 1] (its host copy, as every backend's), chroma bicubic on the CPU.
                if self._host_frames is None:
                    raise ValueError("a 10-bit frame: GpuFrameUpscaler needs host_frames (create_frame_upscaler "
                                     "passes pipeline.stages.upscale_frames)")
                yield from self._host_frames([frame], self.backend, out_layout=self.out_layout)
            else:
                yield self.upscale_frame(frame)

    def _chroma_buffers(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> dict:
        key = (in_hw, out_hw)
        if key not in self._chroma:
            torch, backend = self._torch, self.backend
            state = {
                "dev_in": torch.zeros((2, *in_hw), dtype=torch.uint8, device=backend.device),
                "dev_out": torch.zeros((2, *out_hw), dtype=torch.uint8, device=backend.device),
                "host_in": torch.zeros((2, *in_hw), dtype=torch.uint8, pin_memory=backend.cuda),
                "host_out": torch.zeros((2, *out_hw), dtype=torch.uint8, pin_memory=backend.cuda),
            }

            def resize() -> None:
                # Float32 here: chroma is cheap next to ESPCN, and fp16 would cost a grey level.
                planes = state["dev_in"][:, None].float()
                if in_hw != out_hw:
                    planes = torch.nn.functional.interpolate(planes, size=out_hw, mode="bicubic",
                                                             align_corners=False)
                state["dev_out"].copy_(planes[:, 0].add_(0.5).clamp_(0, 255))

            with torch.no_grad(), self._on(backend.compute_stream):
                state["run"] = _Graphed(torch, resize, backend.cuda and backend.options.cuda_graphs)
            if backend.cuda:
                backend.compute_stream.synchronize()
            self._chroma[key] = state
        return self._chroma[key]

    def _on(self, stream):
        return self._torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()

    def upscale_frame(self, frame: YuvFrame, stage_seconds: dict[str, float] | None = None) -> YuvFrame:
        """One frame. With ``stage_seconds``, the device is synchronised after each stage and
        the stage's wall time added there (for ``vsr bench``; it defeats overlap, so the
        pipeline leaves it out)."""
        torch, backend = self._torch, self.backend
        layout = self.out_layout or frame.layout
        out_hw = (frame.height * self.scale, frame.width * self.scale)
        luma = backend.luma_buffers((1, frame.height, frame.width), "uint8")
        chroma = self._chroma_buffers(frame.chroma_u.shape, chroma_shape(out_hw, layout))
        copy, compute = backend.copy_stream, backend.compute_stream
        clock = _StageClock(stage_seconds, backend)
        timer = self._timer

        with clock("upload"):
            luma["host_in"][0].numpy()[...] = frame.luma
            chroma["host_in"][0].numpy()[...] = frame.chroma_u
            chroma["host_in"][1].numpy()[...] = frame.chroma_v
            with self._on(copy), timer("upload", copy):
                luma["dev_in"].copy_(luma["host_in"], non_blocking=backend.cuda)
                chroma["dev_in"].copy_(chroma["host_in"], non_blocking=backend.cuda)
        with torch.no_grad():
            if backend.cuda:
                compute.wait_stream(copy)
            with clock("engine"), self._on(compute), timer("engine", compute):
                luma["run"]()
            with clock("chroma"), self._on(compute), timer("chroma", compute):
                chroma["run"]()
        with clock("download"):
            if backend.cuda:
                copy.wait_stream(compute)
            with self._on(copy), timer("download", copy):
                luma["host_out"].copy_(luma["dev_out"], non_blocking=backend.cuda)
                chroma["host_out"].copy_(chroma["dev_out"], non_blocking=backend.cuda)
            if backend.cuda:
                copy.synchronize()
            timer.add_to(self.stage_seconds)
            # Copies: the pinned buffers are reused by the next frame.
            planes = luma["host_out"][0].numpy().copy(), *chroma["host_out"].numpy().copy()
        return YuvFrame(planes[0], planes[1], planes[2], layout, frame.pts, frame.time_base, frame.index)

    def close(self) -> None:
        self._chroma.clear()
        self.backend.close()

    def __enter__(self) -> "GpuFrameUpscaler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _FrameTimer:
    """``with timer(stage, stream):`` times one frame's stage where it runs: between two CUDA
    events on ``stream`` (read by ``add_to`` once the frame is synchronised, so timing never
    makes the host wait), or by the host clock where there is no CUDA (eager CPU runs)."""

    def __init__(self, torch, cuda: bool) -> None:
        self.cuda = cuda
        self._events = {stage: (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                        for stage in STAGES} if cuda else {}
        self._host: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str, stream):
        if self.cuda:
            start, end = self._events[stage]
            start.record(stream)
            yield
            end.record(stream)
            return
        started = time.perf_counter()
        yield
        self._host[stage] = time.perf_counter() - started

    def add_to(self, totals: dict[str, float]) -> None:
        """Add this frame's stage times to ``totals`` (after the frame's last synchronise)."""
        for stage in STAGES:
            if self.cuda:
                start, end = self._events[stage]
                end.synchronize()  # already complete: the frame's copies waited for every stage
                totals[stage] += start.elapsed_time(end) / 1000
            else:
                totals[stage] += self._host.pop(stage, 0.0)


class _StageClock:
    """``with clock('engine'):`` adds the stage's wall time, device synchronised, to a dict."""

    def __init__(self, seconds: dict[str, float] | None, backend: TorchCudaBackend) -> None:
        self._seconds, self._backend = seconds, backend

    @contextlib.contextmanager
    def __call__(self, stage: str):
        if self._seconds is None:
            yield
            return
        sync = self._backend._torch.cuda.synchronize if self._backend.cuda else (lambda: None)
        sync()
        start = time.perf_counter()
        yield
        sync()
        self._seconds[stage] = self._seconds.get(stage, 0.0) + time.perf_counter() - start
