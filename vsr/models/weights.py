"""Loading ESPCN weights: the shipped ones (through importlib.resources) or a user's file."""
from __future__ import annotations

import os
from importlib import resources
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


def shipped_weights(scale: int, kind: str = "onnx") -> Path:
    """Path of the weights shipped inside the package for ``scale`` (``kind``: 'pt' or 'onnx')."""
    check_scale(scale)
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"kind must be one of {WEIGHT_KINDS}, got {kind!r}")
    resource = resources.files("vsr.models") / "weights" / f"espcn_x{scale}.{kind}"
    # The package is installed as plain files (not zipped), so the resource is a real path.
    path = Path(str(resource))
    if not path.is_file():
        raise InputError(f"shipped weights for x{scale} are missing from the installation ({path})")
    return path


def load_checkpoint(path: os.PathLike | str) -> dict:
    """Read a checkpoint written by ``vsr train`` (a dict with 'scale' and 'state_dict')."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise InputError(f"{path}: not a vsr checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "scale" not in checkpoint:
        raise InputError(f"{path}: not a vsr checkpoint (no 'scale' / 'state_dict')")
    return checkpoint


def load_espcn(scale: int, weights: os.PathLike | str | None = None):
    """An ``ESPCN`` in eval mode with the shipped weights for ``scale``, or those in ``weights``."""
    from .espcn import ESPCN

    check_scale(scale)
    checkpoint = load_checkpoint(weights if weights is not None else shipped_weights(scale, "pt"))
    if checkpoint["scale"] != scale:
        raise UnsupportedScale(f"{weights}: weights are for x{checkpoint['scale']}, not x{scale}")
    model = ESPCN(scale)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
