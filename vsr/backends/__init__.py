"""Inference backends and the choice between them.

Each backend module imports its library lazily, so choosing one never imports the others.
``auto`` tries them fastest-first and falls back only on ``BackendUnavailable``: any other
error is a real bug and is raised.
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import Backend, BackendUnavailable

BACKENDS = ("openvino", "onnxruntime", "torch", "tensorrt")
#: Fastest first: on CPUs OpenVINO (bf16) beat ONNX Runtime, which beat torch (benchmarks/); on NVIDIA GPUs a compiled
#: TensorRT plan is expected to beat torch, with ONNX Runtime last as it runs anywhere.
AUTO_ORDER = {"cpu": ("openvino", "onnxruntime", "torch"), "cuda": ("tensorrt", "torch", "onnxruntime")}

__all__ = ["Backend", "BackendUnavailable", "BACKENDS", "create_backend"]


def create_backend(
    name: str, scale: int, *, weights: os.PathLike | str | None = None, device: str = "cpu"
) -> Backend:
    """A ready backend for ``scale``: shipped weights, or ``weights`` (.pt checkpoint or .onnx)."""
    from ..models.weights import check_scale

    check_scale(scale)
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER["cuda" if device.startswith("cuda") else "cpu"]:
            try:
                return create_backend(candidate, scale, weights=weights, device=device)
            except BackendUnavailable as exc:
                reasons.append(f"{candidate}: {exc}")
        raise BackendUnavailable("no backend can run here: " + "; ".join(reasons))
    if name == "openvino":
        from .openvino import OpenVinoBackend, OpenVinoOptions

        return OpenVinoBackend(scale, _onnx_for(scale, weights), OpenVinoOptions(device=device))
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend, OrtOptions

        return OnnxRuntimeBackend(scale, _onnx_for(scale, weights), OrtOptions(device=device))
    if name == "torch" and device.startswith("cuda") and (weights is None or Path(weights).suffix != ".onnx"):
        from .torch_cuda import TorchCudaBackend, TorchCudaOptions

        return TorchCudaBackend(scale, weights, TorchCudaOptions(device=device))
    if name == "torch":
        from .torch import TorchBackend

        if weights is not None and Path(weights).suffix == ".onnx":
            raise BackendUnavailable("the torch backend needs .pt weights, not .onnx")
        return TorchBackend(scale, weights, device=device)
    if name == "tensorrt":
        from .tensorrt import TensorRTBackend, TensorRTOptions

        return TensorRTBackend(scale, _onnx_for(scale, weights), TensorRTOptions(device=device))
    raise BackendUnavailable(f"unknown backend {name!r}: choose auto or one of {', '.join(BACKENDS)}")


def _onnx_for(scale: int, weights: os.PathLike | str | None) -> Path:
    """The ONNX file to run: shipped, given, or exported once from a .pt checkpoint into a cache."""
    from ..errors import InputError
    from ..models.weights import shipped_weights

    if weights is None:
        return shipped_weights(scale, "onnx")
    weights = Path(weights)
    if not weights.is_file():
        raise InputError(f"{weights}: no such weights file")
    if weights.suffix == ".onnx":
        return weights
    from ..export import cached_onnx_export

    return cached_onnx_export(weights, scale)
