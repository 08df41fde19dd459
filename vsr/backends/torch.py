"""PyTorch backend: the reference implementation, and a GPU path where CUDA is available."""
from __future__ import annotations

import os

import numpy as np

from .base import BackendBase, BackendUnavailable, as_batch
from .torch_cuda import TorchCudaOptions  # the torch backend's options (``EngineSpec.backend_options``)


class TorchBackend(BackendBase):
    name = "torch"

    @classmethod
    def _from_spec(cls, spec) -> BackendBase:
        """On CUDA with .pt (or shipped) weights, the static-buffer GPU backend (``TorchCudaOptions``,
        fp16 unless --precision fp32); elsewhere this reference one. An .onnx is not torch's to run."""
        if spec.weights is not None and str(spec.weights).endswith(".onnx"):
            raise BackendUnavailable("the torch backend needs .pt weights, not .onnx")
        if spec.cuda:
            from .torch_cuda import TorchCudaBackend

            return TorchCudaBackend(spec.scale, spec.weights, torch_cuda_options(spec), model=spec.model,
                                    context=spec.context)
        return cls(spec.scale, spec.weights, device=spec.device, num_threads=spec.num_threads, model=spec.model,
                   context=spec.context)

    def __init__(self, scale: int, weights: os.PathLike | str | None = None, device: str = "cpu",
                 num_threads: int = 0, model: str = "espcn", context=None) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("torch is not installed (pip install torch)") from None
        from ..models.weights import load_model

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("torch sees no CUDA GPU")
        if num_threads:
            torch.set_num_threads(num_threads)
        self._torch = torch
        self.scale = scale
        self.device = device
        self._model = load_model(scale, weights, model, context).to(device)

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(as_batch(luma)).to(self.device)
            return self._model(x).clamp_(0.0, 1.0).cpu().numpy()

    def close(self) -> None:
        self._model = None


def torch_cuda_options(spec):
    """``TorchCudaOptions`` for ``spec``: its device, fp16 unless it asks fp32 (auto: the tensor
    cores' type), the rest from ``spec.backend_options``."""
    fp32 = {"fp16": False} if spec.precision == "fp32" else {}
    return spec.options_for(TorchCudaOptions, device=spec.device, **fp32)
