"""The contract every inference backend meets."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import BackendUnavailable

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Backend", "BackendBase", "BackendUnavailable", "PRECISIONS", "as_batch"]

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
    #: Where it runs ("cpu", "cuda:0" ...) and its arithmetic where it has a choice (None: fp32).
    device: str
    precision: str | None
    #: The precision as ``describe`` says it ("int8, 6 of 7 convolutions float").
    precision_label: str | None
    #: Facts of the network it runs, from the model registry (``from_spec`` sets them): how
    #: far one input pixel reaches (the overlap tiles need) and the smallest input side it takes.
    receptive_px: int
    min_input_px: int

    @classmethod
    def from_spec(cls, spec) -> "Backend": ...

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray: ...

    def upscale_luma_uint8(self, luma: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class BackendBase:
    """The defaults of what ``Backend`` declares beyond ``upscale_luma``: every backend class
    derives from it, so callers read attributes instead of guessing them with ``getattr``."""

    name = ""
    device = "cpu"
    precision: str | None = None
    receptive_px = 4
    min_input_px = 5

    _precision_label: str | None = None

    @classmethod
    def from_spec(cls, spec) -> "Backend":
        """The backend ``spec`` (an ``EngineSpec`` with its precision resolved) describes, with the
        facts of its network. Each backend builds itself in ``_from_spec``."""
        backend = cls._from_spec(spec)
        backend.receptive_px, backend.min_input_px = spec.network_px()
        return backend

    @classmethod
    def _from_spec(cls, spec) -> "Backend":
        raise NotImplementedError

    @property
    def precision_label(self) -> str | None:
        return self._precision_label or self.precision

    @precision_label.setter
    def precision_label(self, label: str | None) -> None:
        self._precision_label = label

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def upscale_luma_uint8(self, luma: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W) -> uint8 (N, H * s, W * s) through ``upscale_luma``, rounded to nearest.
        Backends that convert on their side (inside the graph, on the GPU) override it."""
        from ..frames import float_to_uint8, luma_to_float

        return float_to_uint8(self.upscale_luma(luma_to_float(luma))[:, 0])

    def close(self) -> None:
        pass


def as_batch(luma: np.ndarray) -> np.ndarray:
    """Accept (H, W), (N, H, W) or (N, 1, H, W); return contiguous float32 (N, 1, H, W)."""
    import numpy as np  # here, not at the top: the CLI reads BACKENDS and PRECISIONS without NumPy

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
