"""Inference backends and the choice between them.

Each backend module imports its library lazily, so choosing one never imports the others.
``auto`` tries them fastest-first and falls back only on ``BackendUnavailable``: any other
error is a real bug and is raised.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .base import PRECISIONS, Backend, BackendUnavailable

BACKENDS = ("openvino", "onnxruntime", "torch", "tensorrt")
#: Fastest first: on CPUs OpenVINO (bf16) beat ONNX Runtime, which beat torch (benchmarks/); on NVIDIA GPUs a compiled
#: TensorRT plan is expected to beat torch, with ONNX Runtime last as it runs anywhere.
AUTO_ORDER = {"cpu": ("openvino", "onnxruntime", "torch"), "cuda": ("tensorrt", "torch", "onnxruntime")}

__all__ = ["Backend", "BackendUnavailable", "BACKENDS", "EngineSpec", "PRECISIONS", "check_device", "check_cuda_device", "create_backend",
           "describe", "visible_gpus"]


_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def check_device(device: str) -> str:
    """``device`` if it is cpu, cuda or cuda:N; otherwise a clear error (never a silent CPU run)."""
    if not _DEVICE.fullmatch(device):
        raise BackendUnavailable(f"unknown device {device!r}: choose cpu, cuda or cuda:N")
    return device


def check_cuda_device(device: str) -> str:
    """A CUDA ``device`` ("cuda" or "cuda:N") that is really there, or one clear error naming
    what is visible (CUDA_VISIBLE_DEVICES included): never a traceback from deep inside torch."""
    import os

    check_device(device)
    if not device.startswith("cuda"):
        return device
    try:
        import torch
    except ImportError:
        return device  # the backends say what they need
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    if count == 0:
        why = "" if torch.version.cuda else ": this torch is built without CUDA"
        raise BackendUnavailable(f"--device {device}: no CUDA GPU is visible here{where}{why}")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= count:
        raise BackendUnavailable(f"--device {device}: there is no such GPU; {count} visible{where}: "
                                 f"cuda:0 to cuda:{count - 1}")
    return device


def visible_gpus(gpus: str, current: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for ``--gpus 0,2``: the GPUs as the machine numbers them, or, when
    CUDA_VISIBLE_DEVICES is already set (``current``), positions in that list."""
    try:
        wanted = [int(part) for part in gpus.split(",") if part.strip() != ""]
    except ValueError:
        raise BackendUnavailable(f"--gpus {gpus}: give GPU numbers separated by commas, e.g. 0,2") from None
    if not wanted or min(wanted) < 0 or len(set(wanted)) != len(wanted):
        raise BackendUnavailable(f"--gpus {gpus}: give distinct GPU numbers separated by commas, e.g. 0,2")
    if current is None:
        return ",".join(map(str, wanted))
    listed = [part.strip() for part in current.split(",") if part.strip()]
    if max(wanted) >= len(listed):
        raise BackendUnavailable(f"--gpus {gpus}: CUDA_VISIBLE_DEVICES={current} lists {len(listed)} GPUs; "
                                 f"--gpus counts in that list (0 to {len(listed) - 1})")
    return ",".join(listed[i] for i in wanted)


@dataclass(frozen=True)
class EngineSpec:
    """Which network runs where, as one picklable value: the driver builds it once and it
    reaches every worker process and Ray task unchanged.

    ``num_threads``: CPU threads for the engine (0: the library's default, every core); when
    several workers share a machine each gets its share. ``batch_size``: frames per network call.
    ``precision``: auto, fp32, bf16 or int8 (``PRECISIONS``); only OpenVINO runs bf16 and int8.
    """

    scale: int = 3
    #: Which model of the ladder (``vsr models``); ignored when ``weights`` is given (a
    #: checkpoint names its own architecture).
    model: str = "espcn"
    backend: str = "auto"
    device: str = "cpu"
    weights: Path | None = None
    num_threads: int = 0
    batch_size: int = 1
    precision: str = "auto"

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.weights is None:
            from ..models.registry import get_model

            get_model(self.model)  # an unknown name fails here, in the driver, not in every worker

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def create_backend(
    name: str, scale: int, *, model: str = "espcn", weights: os.PathLike | str | None = None, device: str = "cpu",
    num_threads: int = 0, precision: str = "auto",
) -> Backend:
    """A ready backend for ``scale``: the shipped weights of ``model``, or ``weights`` (.pt
    checkpoint or .onnx). ``num_threads`` caps the CPU threads of the engine (0: the library's
    default). ``precision``: one of ``PRECISIONS``; bf16 and int8 run on OpenVINO only, the others
    refuse them."""
    from ..models.weights import check_scale

    check_scale(scale)
    check_device(device)
    if precision not in PRECISIONS:
        raise BackendUnavailable(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    backend = _create(name, scale, model=model, weights=weights, device=device, num_threads=num_threads,
                      precision=precision)
    if weights is not None and name != "tensorrt" and backend.name != "tensorrt":
        _check_weights_scale(backend, scale, weights)
    # What callers that cut or check pictures need to know of the network (tiles' overlap, the
    # smallest input); an .onnx says nothing of it, so the most demanding model's values hold.
    info = model_info(model, weights)
    backend.receptive_px = info.receptive_px if info else max(m.receptive_px for m in _ladder())
    backend.min_input_px = info.min_input_px if info else max(m.min_input_px for m in _ladder())
    return backend


def describe(backend: Backend) -> str:
    """The backend as the user reads it: name, precision where it has one, device ("openvino bf16 (cpu)",
    "openvino int8, 6 of 7 convolutions float (cpu)")."""
    precision = backend.precision_label
    return f"{backend.name}{f' {precision}' if precision else ''} ({backend.device})"


def _ladder():
    from ..models.registry import MODELS

    return MODELS.values()


def model_info(model: str, weights: os.PathLike | str | None = None):
    """The ``ModelInfo`` of what runs: ``model``, or the architecture a .pt checkpoint names;
    None for an .onnx file (it does not say)."""
    from ..models.registry import get_model

    if weights is None:
        return get_model(model)
    if Path(weights).suffix == ".onnx":
        return None
    from ..models.weights import checkpoint_model, load_checkpoint

    return checkpoint_model(load_checkpoint(weights))


def _check_weights_scale(backend: Backend, scale: int, weights: os.PathLike | str) -> None:
    """Given weights may be for another factor (an .onnx says nothing until it runs): a
    picture cropped to the wrong size was the result. One 8x8 call tells (milliseconds)."""
    import numpy as np

    from ..errors import UnsupportedScale

    side_px = 16  # above every model's mirrored context
    out = backend.upscale_luma(np.zeros((1, 1, side_px, side_px), np.float32))
    if out.shape[-2:] != (side_px * scale, side_px * scale):
        backend.close()
        factor = out.shape[-1] / side_px
        raise UnsupportedScale(f"{weights}: these weights upscale x{factor:g}, not x{scale} (--scale)")


def _create(name: str, scale: int, *, model: str, weights, device: str, num_threads: int,
            precision: str = "auto") -> Backend:
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER["cuda" if device.startswith("cuda") else "cpu"]:
            try:
                return _create(candidate, scale, model=model, weights=weights, device=device,
                               num_threads=num_threads, precision=precision)
            except BackendUnavailable as exc:
                reasons.append(f"{candidate}: {exc}")
        raise BackendUnavailable("no backend can run here: " + "; ".join(reasons))
    if name == "openvino":
        from .openvino import OpenVinoBackend, OpenVinoOptions, require_openvino

        onnx = _onnx_for(scale, weights, model)
        if precision == "auto":
            # Decided here, above the backend: timing the candidates builds OpenVinoBackend once each.
            require_openvino(device)
            from .precision import choose_precision

            precision, _ = choose_precision(onnx, scale)
        return OpenVinoBackend(scale, onnx, OpenVinoOptions(device=device, num_threads=num_threads, precision=precision))
    if precision not in ("auto", "fp32"):
        # Only OpenVINO has bf16 kernels worth having off AMX and an int8 path (NNCF) in vsr.
        raise BackendUnavailable(f"--precision {precision} runs on the openvino backend only; {name} runs fp32 "
                                 "(use --precision fp32 or auto)")
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend, OrtOptions

        return OnnxRuntimeBackend(scale, _onnx_for(scale, weights, model), OrtOptions(device=device,
                                                                               intra_op_threads=num_threads))
    if name == "torch" and device.startswith("cuda") and (weights is None or Path(weights).suffix != ".onnx"):
        from .torch_cuda import TorchCudaBackend, TorchCudaOptions

        return TorchCudaBackend(scale, weights, TorchCudaOptions(device=device), model=model)
    if name == "torch":
        from .torch import TorchBackend

        if weights is not None and Path(weights).suffix == ".onnx":
            raise BackendUnavailable("the torch backend needs .pt weights, not .onnx")
        return TorchBackend(scale, weights, device=device, num_threads=num_threads, model=model)
    if name == "tensorrt":
        from .tensorrt import TensorRTBackend, TensorRTOptions

        return TensorRTBackend(scale, _onnx_for(scale, weights, model), TensorRTOptions(device=device))
    raise BackendUnavailable(f"unknown backend {name!r}: choose auto or one of {', '.join(BACKENDS)}")


def _onnx_for(scale: int, weights: os.PathLike | str | None, model: str = "espcn") -> Path:
    """The ONNX file to run: ``model``'s shipped one, the given one, or one exported once from a
    .pt checkpoint into a cache."""
    from ..errors import InputError
    from ..models.weights import shipped_weights

    if weights is None:
        return shipped_weights(scale, "onnx", model)
    weights = Path(weights)
    if not weights.is_file():
        raise InputError(f"{weights}: no such weights file")
    if weights.suffix == ".onnx":
        return weights
    from ..export import cached_onnx_export

    return cached_onnx_export(weights, scale)
