"""Inference backends and the choice between them.

Each backend module imports its library lazily, so choosing one never imports the others.
``auto`` tries them fastest-first and falls back only on ``BackendUnavailable``: any other
error is a real bug and is raised.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .base import PRECISIONS, Backend, BackendUnavailable

from .files import onnx_for
from .registry import REGISTRY, auto_order, entry
from .registry import parse_options as parse_backend_options

BACKENDS = tuple(REGISTRY)

__all__ = ["Backend", "BackendUnavailable", "BACKENDS", "EngineSpec", "PRECISIONS", "check_device", "check_cuda_device",
           "create_backend", "describe", "onnx_for", "parse_backend_options", "visible_gpus"]


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
    #: checkpoint names its own architecture). "auto" is for ``vsr run`` and ``vsr live`` to
    #: resolve from their input (``tuning.model_choice``) before any backend is built.
    model: str = "espcn"
    backend: str = "auto"
    device: str = "cpu"
    weights: Path | None = None
    num_threads: int = 0
    batch_size: int = 1
    precision: str = "auto"
    #: The backend's own tuning, an instance of its options class (``registry.REGISTRY``:
    #: ``TensorRTOptions`` for tensorrt ...), for what the fields above do not say (TensorRT's
    #: workspace, OpenVINO's int8 calibration ...); the fields above win where both say something.
    backend_options: object | None = None
    #: A clip's context (``models.clip_context.ClipContext``), folded into a network that has a
    #: global context, so the clip runs it as a plain network (``RepSRPlain.folded``); None: each
    #: frame reads its own context (or the network has none, and this is ignored).
    context: object | None = None

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.precision not in PRECISIONS:
            raise BackendUnavailable(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.backend != "auto":
            entry(self.backend)
        if self.backend_options is not None:
            if self.backend == "auto":
                raise BackendUnavailable("backend options are for one backend: name it (--backend)")
            expected = entry(self.backend).load_options()
            if not isinstance(self.backend_options, expected):
                raise BackendUnavailable(f"the {self.backend} backend takes {expected.__name__}, "
                                         f"not {type(self.backend_options).__name__}")
        if self.weights is None and self.model != "auto":
            from ..models.registry import get_model

            get_model(self.model)  # an unknown name fails here, in the driver, not in every worker

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def network_px(self) -> tuple[int, int]:
        """(receptive_px, min_input_px) of the network this spec runs: how far one input pixel
        reaches (the overlap tiles need; ``WHOLE_PICTURE_PX`` for a network with a global context)
        and the smallest input side it takes. An .onnx says
        nothing of its network, so the most demanding model's values hold for it, unless its graph
        pools over the whole picture (``onnx_reads_whole_picture``)."""
        info = model_info(self.model, self.weights)
        if info is not None:
            # A folded context is a constant: the network then reaches only as far as its convolutions.
            reach_px = info.receptive_px if self.context is not None else info.reach_px(self.scale)
            return reach_px, info.min_input_px
        from ..models.registry import WHOLE_PICTURE_PX

        ladder_px = max(m.receptive_px for m in _ladder())
        reach_px = WHOLE_PICTURE_PX if onnx_reads_whole_picture(self.weights) else ladder_px
        return reach_px, max(m.min_input_px for m in _ladder())

    def options_for(self, options_class: type, **from_spec):
        """``backend_options`` (or the class's defaults) with what this spec decides put in:
        ``from_spec`` maps the options' field names to the spec's values."""
        base = self.backend_options if self.backend_options is not None else options_class()
        return dataclasses.replace(base, **from_spec)


def create_backend(spec: EngineSpec | str, scale: int | None = None, **fields) -> Backend:
    """A ready backend for ``spec``: the network it names on the backend it names, ``auto``
    resolved first (the backend: the first of ``registry.auto_order`` that runs here; the
    precision: ``precision.resolve_precision``), so every backend is built from concrete values.

    ``create_backend("onnxruntime", 3, model="realtime")`` is short for
    ``create_backend(EngineSpec(backend="onnxruntime", scale=3, model="realtime"))``.
    """
    from ..models.weights import check_scale

    if not isinstance(spec, EngineSpec):
        spec = EngineSpec(backend=spec, **({"scale": scale} if scale is not None else {}), **fields)
    check_scale(spec.scale)
    if spec.model == "auto" and spec.weights is None:
        raise ValueError("model auto is chosen from an input (vsr run, vsr live): name a model to build a backend")
    if spec.backend == "auto":
        reasons = []
        for candidate in auto_order(spec.device):
            try:
                return create_backend(dataclasses.replace(spec, backend=candidate))
            except BackendUnavailable as exc:
                reasons.append(f"{candidate}: {exc}")
        raise BackendUnavailable("no backend can run here: " + "; ".join(reasons))
    from .precision import resolve_precision

    backend = entry(spec.backend).load().from_spec(resolve_precision(spec))
    if spec.weights is not None and spec.backend != "tensorrt":
        _check_weights_scale(backend, spec.scale, spec.weights)
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
    from ..checkpoint import read_weights
    from ..models.weights import checkpoint_model

    return checkpoint_model(read_weights(weights))


#: ONNX operators that pool over whole axes: a graph with one lets every output pixel depend on
#: the whole picture (a global context), which no tile overlap short of the picture covers.
_WHOLE_PICTURE_OPS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceSum",
                                "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceProd",
                                "ReduceSumSquare"})


def onnx_reads_whole_picture(path: os.PathLike | str) -> bool:
    """Whether an .onnx graph pools over whole axes (``_WHOLE_PICTURE_OPS``), read without its
    weights; False where the ``onnx`` package is not installed or the file is no graph (the
    ladder's reach holds then)."""
    try:
        import onnx
    except ImportError:
        return False
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # not a readable graph: the backend that loads it says so, in its words
        return False
    return any(node.op_type in _WHOLE_PICTURE_OPS for node in graph.node)


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
