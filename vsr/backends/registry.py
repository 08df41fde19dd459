"""The one table of inference backends: what each is called, where its class and its options
live, which precisions it has and where ``auto`` tries it on each kind of device. ``create_backend``, the CLI's
choices, ``auto``'s order and ``--backend-option`` all read it: a new backend is one entry here
and one module with a class that has ``from_spec``.

Nothing here imports a backend's module (or NumPy): ``vsr --help`` reads this table.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

__all__ = ["BackendEntry", "REGISTRY", "auto_order", "entry", "parse_options"]


@dataclass(frozen=True)
class BackendEntry:
    name: str
    #: Module holding ``backend_class`` and ``options_class``: a name under ``vsr.backends``, or a
    #: dotted path (a backend kept outside the package).
    module: str
    backend_class: str
    #: The dataclass ``EngineSpec.backend_options`` takes for this backend (its own tuning).
    options_class: str
    #: What ``--precision`` may ask of it (auto is resolved to one of these, above the backend).
    precisions: tuple[str, ...] = ("fp32",)
    #: Place in ``auto``'s order per device kind, fastest first (None: never picked by auto).
    auto_rank_cpu: int | None = None
    auto_rank_cuda: int | None = None

    def load(self) -> type:
        """The backend class (imports its module, never its library: those import lazily)."""
        return getattr(self._module(), self.backend_class)

    def load_options(self) -> type:
        return getattr(self._module(), self.options_class)

    def _module(self):
        return importlib.import_module(self.module if "." in self.module else f"vsr.backends.{self.module}")


#: Fastest first on each device: on CPUs OpenVINO beat ONNX Runtime, which beat torch (benchmarks/);
#: on NVIDIA GPUs a compiled TensorRT plan is expected to beat torch, with ONNX Runtime last as it runs anywhere.
REGISTRY: dict[str, BackendEntry] = {e.name: e for e in (
    BackendEntry("openvino", "openvino", "OpenVinoBackend", "OpenVinoOptions",
                 precisions=("fp32", "bf16", "int8"), auto_rank_cpu=0),
    BackendEntry("onnxruntime", "onnxruntime", "OnnxRuntimeBackend", "OrtOptions", auto_rank_cpu=1, auto_rank_cuda=2),
    BackendEntry("torch", "torch", "TorchBackend", "TorchCudaOptions", auto_rank_cpu=2, auto_rank_cuda=1),
    BackendEntry("tensorrt", "tensorrt", "TensorRTBackend", "TensorRTOptions", auto_rank_cuda=0),
)}


def device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def auto_order(device: str) -> tuple[str, ...]:
    """The backends ``auto`` tries on ``device``, fastest first."""
    kind = device_kind(device)
    ranked = [(getattr(e, f"auto_rank_{kind}"), e.name) for e in REGISTRY.values()]
    return tuple(name for rank, name in sorted(r for r in ranked if r[0] is not None))


def entry(name: str) -> BackendEntry:
    from .base import BackendUnavailable

    try:
        return REGISTRY[name]
    except KeyError:
        raise BackendUnavailable(f"unknown backend {name!r}: choose auto or one of {', '.join(REGISTRY)}") from None


#: Options fields that other flags decide (the spec's own fields): refused as --backend-option.
_THREADS = "vsr run (which shares the cores among its workers) or --threads (vsr bench)"
_SET_BY_FLAGS = {"device": "--device", "num_threads": _THREADS, "intra_op_threads": _THREADS,
                 "precision": "--precision", "fp16": "--precision"}


def parse_options(name: str, pairs: list[str] | tuple[str, ...]):
    """``--backend-option KEY=VALUE`` pairs as an instance of backend ``name``'s options class,
    each value converted to its field's type (int, float, bool, text or path); None for none.
    Fields of other kinds (TensorRT's shape ranges ...) are for the library, not the command line."""
    import dataclasses
    import typing

    from .base import BackendUnavailable

    if not pairs:
        return None
    if name == "auto":
        raise BackendUnavailable("--backend-option is for one backend: name it with --backend")
    options_class = entry(name).load_options()
    hints = typing.get_type_hints(options_class)
    fields = [f.name for f in dataclasses.fields(options_class)]
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            settable = [f for f in fields if f not in _SET_BY_FLAGS]
            if not settable:
                raise BackendUnavailable(f"--backend-option {pair}: the {name} backend has no options beyond "
                                         "--device and --precision")
            raise BackendUnavailable(f"--backend-option {pair}: give KEY=VALUE, KEY one of "
                                     f"{', '.join(settable)} ({name})")
        if key in _SET_BY_FLAGS:
            raise BackendUnavailable(f"--backend-option {key}: set by {_SET_BY_FLAGS[key]}")
        values[key] = _convert(f"--backend-option {pair}", hints[key], text.strip())
    return options_class(**values)


def _convert(what: str, hint, text: str):
    import typing
    from pathlib import Path

    from .base import BackendUnavailable

    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    kind = kinds[0] if len(kinds) == 1 else None
    try:
        if kind is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes", "on")
        if kind in (int, float, str, Path):
            return kind(text)
    except ValueError:
        raise BackendUnavailable(f"{what}: not a valid {kind.__name__}") from None
    raise BackendUnavailable(f"{what}: this option is set from Python (EngineSpec.backend_options), "
                             "not the command line")
