"""Which model file a backend runs: the ONNX most backends compile (a leaf module: the
backends and the precision tuner import it without importing each other)."""
from __future__ import annotations

import os
from pathlib import Path


def onnx_for(scale: int, weights: os.PathLike | str | None, model: str = "espcn") -> Path:
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
