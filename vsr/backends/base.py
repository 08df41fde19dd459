"""The contract every inference backend meets."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import BackendUnavailable

__all__ = ["Backend", "BackendUnavailable", "PRECISIONS", "as_batch"]

#: What ``--precision`` accepts. auto: OpenVINO times what this CPU runs and keeps the fastest
#: (backends/precision.py, called by ``create_backend``); the other backends run fp32.
PRECISIONS = ("auto", "fp32", "bf16", "int8")


@runtime_checkable
class Backend(Protocol):
    """Runs a model of the ladder (ESPCN by default) on luma.

    ``upscale_luma`` takes float32 luma in [0, 1] shaped (N, 1, H, W) and returns float32
    (N, 1, H * scale, W * scale), clipped to [0, 1]. Backends own their device memory;
    callers only ever see NumPy arrays. ``close`` frees sessions and device buffers.
    """

    name: str
    scale: int

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def as_batch(luma: np.ndarray) -> np.ndarray:
    """Accept (H, W), (N, H, W) or (N, 1, H, W); return contiguous float32 (N, 1, H, W)."""
    luma = np.asarray(luma, dtype=np.float32)
    if luma.ndim == 2:
        luma = luma[None, None]
    elif luma.ndim == 3:
        luma = luma[:, None]
    if luma.ndim != 4 or luma.shape[1] != 1:
        raise ValueError(f"expected luma shaped (N, 1, H, W), got {luma.shape}")
    if min(luma.shape[2:]) < 5:
        raise ValueError(f"luma must be at least 5x5 pixels, got {luma.shape[3]}x{luma.shape[2]}")
    return np.ascontiguousarray(luma)
