"""ONNX Runtime backend: the default on CPUs (the fastest we measured there, and no torch import)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import BackendBase, BackendUnavailable, as_batch


@dataclass(frozen=True)
class OrtOptions:
    """Tuning for ONNX Runtime.

    ``intra_op_threads``: threads inside one convolution; 0 lets ORT use one per physical
    core, which was fastest on our 2-core machine. ``device``: 'cpu', or 'cuda' where the
    onnxruntime-gpu package is installed.
    """

    intra_op_threads: int = 0
    device: str = "cpu"


class OnnxRuntimeBackend(BackendBase):
    name = "onnxruntime"

    @classmethod
    def _from_spec(cls, spec) -> "OnnxRuntimeBackend":
        from .files import onnx_for

        options = spec.options_for(OrtOptions, device=spec.device, intra_op_threads=spec.num_threads)
        return cls(spec.scale, onnx_for(spec.scale, spec.weights, spec.model, spec.context), options)

    def __init__(self, scale: int, onnx_path: os.PathLike | str, options: OrtOptions = OrtOptions()) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime)") from None
        providers = ["CPUExecutionProvider"]
        if options.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable("onnxruntime here has no CUDA provider (pip install onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.scale = scale
        self.device = options.device
        self._session = ort.InferenceSession(str(Path(onnx_path)), session_options, providers=providers)
        self._input = self._session.get_inputs()[0].name

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        (out,) = self._session.run(None, {self._input: as_batch(luma)})
        return np.clip(out, 0.0, 1.0, out=out)

    def close(self) -> None:
        self._session = None
