"""PyTorch backend: the reference implementation, and a GPU path where CUDA is available."""
from __future__ import annotations

import os

import numpy as np

from .base import BackendBase, BackendUnavailable, as_batch


class TorchBackend(BackendBase):
    name = "torch"

    def __init__(self, scale: int, weights: os.PathLike | str | None = None, device: str = "cpu",
                 num_threads: int = 0, model: str = "espcn") -> None:
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
        self._model = load_model(scale, weights, model).to(device)

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(as_batch(luma)).to(self.device)
            return self._model(x).clamp_(0.0, 1.0).cpu().numpy()

    def close(self) -> None:
        self._model = None
