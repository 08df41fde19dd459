"""PyTorch on a CUDA GPU, tuned: fp16, channels_last, CUDA graphs, pinned copies on a side stream.

``device='cpu'`` runs the same code without graphs, pinned memory or streams (fp16 still
works on the CPU, slowly): that is how the tests check its logic on machines without a GPU.
The CUDA-only parts follow PyTorch's documentation (CUDA semantics: streams, pinned
memory, CUDA graphs) and are exercised by the ``needs_cuda`` tests.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .base import BackendBase, BackendUnavailable, as_batch


@dataclass(frozen=True)
class TorchCudaOptions:
    """Tuning for the torch GPU path.

    ``fp16``: half weights and activations (tensor cores; Y within 2e-3 of fp32).
    ``channels_last``: NHWC activations, the layout cuDNN's fp16 convolutions want.
    ``cuda_graphs``: capture the whole network once per input shape and replay it, which
    removes the per-kernel launch cost (large next to ESPCN's ~10 small kernels); a video
    has one shape, so one capture. Turn it off when every frame has a new size.
    ``max_shapes``: how many shapes keep their buffers and graphs (least recently used go).
    """

    device: str = "cuda"
    fp16: bool = True
    channels_last: bool = True
    cuda_graphs: bool = True
    max_shapes: int = 4


class _Graphed:
    """``fn`` over static buffers: replayed as a CUDA graph on CUDA, called as is elsewhere."""

    def __init__(self, torch, fn: Callable[[], None], use_graph: bool) -> None:
        self._fn, self._graph = fn, None
        if use_graph:
            # Warm up on a side stream first (cuDNN picks algorithms, allocator settles),
            # as PyTorch's CUDA-graph documentation asks, then capture.
            warmup = torch.cuda.Stream()
            warmup.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(warmup):
                for _ in range(3):
                    fn()
            torch.cuda.current_stream().wait_stream(warmup)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                fn()

    def __call__(self) -> None:
        self._graph.replay() if self._graph is not None else self._fn()


class TorchCudaBackend(BackendBase):
    """ESPCN on a torch device with static per-shape buffers (see ``TorchCudaOptions``)."""

    name = "torch"

    def __init__(self, scale: int, weights: os.PathLike | str | None = None,
                 options: TorchCudaOptions = TorchCudaOptions(), model: str = "espcn", context=None) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("torch is not installed (pip install torch)") from None
        from ..models.weights import load_model

        self.cuda = options.device.startswith("cuda")
        if self.cuda and not torch.cuda.is_available():
            raise BackendUnavailable("torch sees no CUDA GPU")
        self._torch, self.options, self.scale, self.device = torch, options, scale, torch.device(options.device)
        self.dtype = torch.float16 if options.fp16 else torch.float32
        self._format = torch.channels_last if options.channels_last else torch.contiguous_format
        model = load_model(scale, weights, model, context).to(self.device, self.dtype)
        self._model = model.to(memory_format=self._format).eval()
        # Copies run on their own stream so they can overlap compute queued by other callers.
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.compute_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._states: dict[tuple, dict] = {}

    # -- device-side API (used by GpuFrameUpscaler) ------------------------------------------
    def luma_buffers(self, shape: tuple[int, int, int], kind: str = "uint8") -> dict:
        """Static buffers for (N, H, W) luma: ``dev_in`` / ``dev_out`` on the device (uint8 or
        float32 per ``kind``), pinned ``host_in`` / ``host_out``, and ``run`` which fills
        ``dev_out`` from ``dev_in`` on the current stream. Made once per shape and kind."""
        torch = self._torch
        key = (kind, tuple(shape))
        state = self._states.pop(key, None)
        if state is None:
            if len(self._states) >= self.options.max_shapes:
                self._states.pop(next(iter(self._states)))  # least recently used
            n, h, w = shape
            s, dtype = self.scale, (torch.uint8 if kind == "uint8" else torch.float32)
            state = {
                "dev_in": torch.zeros((n, h, w), dtype=dtype, device=self.device),
                "dev_out": torch.zeros((n, h * s, w * s), dtype=dtype, device=self.device),
                "host_in": torch.zeros((n, h, w), dtype=dtype, pin_memory=self.cuda),
                "host_out": torch.zeros((n, h * s, w * s), dtype=dtype, pin_memory=self.cuda),
            }
            with torch.no_grad():
                if self.cuda:
                    with torch.cuda.stream(self.compute_stream):
                        state["run"] = _Graphed(torch, lambda: self._forward(state), self.options.cuda_graphs)
                    self.compute_stream.synchronize()
                else:
                    state["run"] = _Graphed(torch, lambda: self._forward(state), False)
        self._states[key] = state
        return state

    def _forward(self, state: dict) -> None:
        """dev_in -> dev_out: the conversions happen on the device, next to the network."""
        x = state["dev_in"][:, None].to(self.dtype)
        if state["dev_in"].dtype == self._torch.uint8:
            x = x * (1 / 255)
        y = self._model(x.contiguous(memory_format=self._format))[:, 0].float()
        if state["dev_out"].dtype == self._torch.uint8:
            # +0.5 then truncation rounds, as the CPU stage's float_to_uint8 does.
            state["dev_out"].copy_(y.mul_(255).add_(0.5).clamp_(0, 255))
        else:
            state["dev_out"].copy_(y.clamp_(0, 1))

    # -- Backend protocol ----------------------------------------------------------------------
    def _round_trip(self, array: np.ndarray, kind: str) -> np.ndarray:
        torch = self._torch
        state = self.luma_buffers(array.shape, kind)
        state["host_in"].copy_(torch.from_numpy(array))
        if not self.cuda:
            state["dev_in"].copy_(state["host_in"])
            with torch.no_grad():
                state["run"]()
            return state["dev_out"].numpy().copy()
        with torch.cuda.stream(self.copy_stream):
            state["dev_in"].copy_(state["host_in"], non_blocking=True)
        self.compute_stream.wait_stream(self.copy_stream)
        with torch.cuda.stream(self.compute_stream), torch.no_grad():
            state["run"]()
        self.copy_stream.wait_stream(self.compute_stream)
        with torch.cuda.stream(self.copy_stream):
            state["host_out"].copy_(state["dev_out"], non_blocking=True)
        self.copy_stream.synchronize()
        return state["host_out"].numpy().copy()

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        return self._round_trip(as_batch(luma)[:, 0], "float32")[:, None]

    def upscale_luma_uint8(self, luma: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W) -> uint8 (N, H*s, W*s): a quarter of the bytes over PCIe each way."""
        return self._round_trip(np.ascontiguousarray(luma, dtype=np.uint8), "uint8")

    def close(self) -> None:
        if self.cuda and self._states:
            self.compute_stream.synchronize()
            self.copy_stream.synchronize()
        self._states.clear()
        self._model = None

    def __enter__(self) -> "TorchCudaBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
