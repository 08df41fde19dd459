"""Loading model weights: the shipped ones (through importlib.resources) or a user's file."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError, UnsupportedScale
from . import SUPPORTED_SCALES

WEIGHT_KINDS = ("pt", "onnx")


def check_scale(scale: int) -> int:
    if scale not in SUPPORTED_SCALES:
        raise UnsupportedScale(
            f"unsupported scale {scale}: choose one of {', '.join(map(str, SUPPORTED_SCALES))}"
        )
    return scale


def shipped_weights(scale: int, kind: str = "onnx", model: str = "espcn") -> Path:
    """Path of the weights of ``model`` shipped inside the package for ``scale`` (``kind``: 'pt' or 'onnx')."""
    from .registry import get_model

    check_scale(scale)
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"kind must be one of {WEIGHT_KINDS}, got {kind!r}")
    info = get_model(model)
    if scale not in info.scales:
        raise UnsupportedScale(f"model {model} has no x{scale} weights (it has {', '.join(f'x{s}' for s in info.scales)})")
    # The package is installed as plain files (not zipped), so the resource is a real path.
    path = info.weights_path(scale, kind)
    if not path.is_file():
        raise InputError(f"shipped weights of {model} for x{scale} are missing from the installation ({path})")
    return path


def checkpoint_model(checkpoint: dict):
    """The ``ModelInfo`` a checkpoint was trained as: its ``model`` name, or, for a user's run of
    an architecture with other options, a one-off entry built from ``arch`` and ``options``."""
    from dataclasses import replace

    from .registry import MODELS, get_model

    name = checkpoint.get("model") or checkpoint.get("arch", "espcn")
    if name in MODELS and "options" not in checkpoint:
        return MODELS[name]
    options = tuple(sorted(checkpoint.get("options", {}).items()))
    base = next((m for m in MODELS.values() if m.arch == checkpoint.get("arch", "espcn")), get_model("espcn"))
    # The checkpoint's options are the whole truth for its network: no scale's extras on top.
    return replace(get_model(name) if name in MODELS else base, options=options or base.options, scale_options=())


def load_model(scale: int, weights: os.PathLike | str | None = None, model: str = "espcn", context=None):
    """The network in eval mode (fp32) with the shipped weights of ``model`` for ``scale``, or
    those in ``weights`` (whose checkpoint says which architecture they are; ``model`` is then
    not needed); a network with a global context gets ``context`` (``clip_context.ClipContext``)
    folded in where one is given (``RepSRPlain.folded``)."""
    import torch

    from ..checkpoint import read_weights

    check_scale(scale)
    path = weights if weights is not None else shipped_weights(scale, "pt", model)
    checkpoint = read_weights(path)
    if checkpoint["scale"] != scale:
        raise UnsupportedScale(f"{path}: weights are for x{checkpoint['scale']}, not x{scale}")
    network = checkpoint_model(checkpoint).build(scale)
    # Shipped weights may be stored in fp16 (half the size, < 0.01 dB): computed in fp32.
    network.load_state_dict({k: v.to(torch.float32) for k, v in checkpoint["state_dict"].items()})
    # A re-parameterised network runs as its collapsed form: every backend gets plain convolutions.
    if hasattr(network, "collapse"):
        network = network.collapse()
    if context is not None and getattr(network, "context", None) is not None:
        network = network.folded(torch.tensor(context.pooled, dtype=torch.float32))
    return network.eval()

