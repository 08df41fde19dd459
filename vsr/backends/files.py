"""Which model file a backend runs: the ONNX most backends compile (a leaf module: the
backends and the precision tuner import it without importing each other)."""
from __future__ import annotations

import os
from pathlib import Path


def onnx_for(scale: int, weights: os.PathLike | str | None, model: str = "espcn", context=None) -> Path:
    """The ONNX file to run: ``model``'s shipped one, the given one, or one exported once from a
    .pt checkpoint into a cache; with a ``context`` (``models.clip_context.ClipContext``) and a
    network that has a global context, that network with the context folded in, exported once
    from its .pt (an .onnx of your own cannot be folded: it runs its context per frame)."""
    from ..errors import InputError
    from ..models.weights import shipped_weights

    if weights is None:
        source = shipped_weights(scale, "onnx", model)
        if context is not None and has_global_context(scale, model):
            return _folded(shipped_weights(scale, "pt", model), scale, context, source)
        return source
    weights = Path(weights)
    if not weights.is_file():
        raise InputError(f"{weights}: no such weights file")
    if weights.suffix == ".onnx":
        return weights
    from ..export import cached_onnx_export

    source = cached_onnx_export(weights, scale)
    if context is not None and has_global_context(scale, model, weights):
        return _folded(weights, scale, context, source)
    return source


def has_global_context(scale: int, model: str, weights: os.PathLike | str | None = None) -> bool:
    """Whether the network ``model`` (or the .pt ``weights``) runs at ``scale`` reads a global
    context that a clip's context can be folded into (an .onnx cannot be folded: False)."""
    from ..models.registry import get_model

    if weights is None:
        return get_model(model).global_context(scale)
    if Path(weights).suffix != ".pt" or not Path(weights).is_file():
        return False
    from ..checkpoint import read_weights
    from ..models.weights import checkpoint_model

    return checkpoint_model(read_weights(weights)).global_context(scale)


def _folded(weights: Path, scale: int, context, source: Path) -> Path:
    from ..export import cached_folded_export
    from .int8 import onnx_digest

    return cached_folded_export(weights, scale, context, onnx_digest(source))
