"""The frame that flows through the video pipeline: planar 8- or 10-bit YUV plus its timing."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: Chroma layouts the pipeline carries, by (horizontal, vertical) subsampling factor: 8-bit
#: (uint8 planes) and 10-bit (uint16 planes holding 0-1023, FFmpeg's ``*p10le``).
CHROMA_SUBSAMPLING = {"yuv420p": (2, 2), "yuv422p": (2, 1), "yuv444p": (1, 1),
                      "yuv420p10le": (2, 2), "yuv422p10le": (2, 1), "yuv444p10le": (1, 1)}
TEN_BIT_SUFFIX = "10le"


def layout_bit_depth(layout: str) -> int:
    """8 or 10: the bits per sample of a layout of ``CHROMA_SUBSAMPLING``."""
    return 10 if layout.endswith(TEN_BIT_SUFFIX) else 8


def with_bit_depth(layout: str, bit_depth: int) -> str:
    """``layout``'s chroma subsampling at ``bit_depth`` (8 or 10): yuv420p + 10 -> yuv420p10le."""
    base = layout[: -len(TEN_BIT_SUFFIX)] if layout.endswith(TEN_BIT_SUFFIX) else layout
    return base + TEN_BIT_SUFFIX if bit_depth > 8 else base


def sample_dtype(layout: str) -> np.dtype:
    return np.dtype(np.uint16 if layout_bit_depth(layout) > 8 else np.uint8)


@dataclass(frozen=True)
class YuvFrame:
    """One decoded (or upscaled) picture.

    ``luma`` is (H, W) uint8; ``chroma_u`` / ``chroma_v`` are uint8 planes subsampled as
    ``layout`` says (``yuv420p``, ``yuv422p`` or ``yuv444p``); the 10-bit layouts
    (``yuv420p10le`` ...) hold uint16 planes with values 0-1023. ``pts`` counts ``time_base``
    units, so ``pts_seconds`` is the presentation time; ``index`` is the decode order.
    """

    luma: np.ndarray
    chroma_u: np.ndarray
    chroma_v: np.ndarray
    layout: str
    pts: int | None
    time_base: Fraction | None
    index: int

    def __post_init__(self) -> None:
        if self.layout not in CHROMA_SUBSAMPLING:
            raise ValueError(f"layout must be one of {sorted(CHROMA_SUBSAMPLING)}, got {self.layout!r}")
        dtype = sample_dtype(self.layout)
        if self.luma.dtype != dtype or self.luma.ndim != 2:
            raise ValueError(f"{self.layout} luma must be a 2-D {dtype} array, got {self.luma.dtype} {self.luma.shape}")
        expected = chroma_shape(self.luma.shape, self.layout)
        for plane in (self.chroma_u, self.chroma_v):
            if plane.shape != expected or plane.dtype != dtype:
                raise ValueError(f"{self.layout} chroma must be {dtype} {expected}, got {plane.dtype} {plane.shape}")

    @property
    def bit_depth(self) -> int:
        return layout_bit_depth(self.layout)

    @property
    def width(self) -> int:
        return self.luma.shape[1]

    @property
    def height(self) -> int:
        return self.luma.shape[0]

    @property
    def pts_seconds(self) -> float | None:
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)


def chroma_shape(luma_hw: tuple[int, int], layout: str) -> tuple[int, int]:
    """Chroma plane (height, width) for a luma size, rounding up as FFmpeg does for odd sizes."""
    sub_x, sub_y = CHROMA_SUBSAMPLING[layout]
    return (-(-luma_hw[0] // sub_y), -(-luma_hw[1] // sub_x))


# The uint8 <-> float round trip of luma through a network: the pipeline's stages and the
# backends' default upscale_luma_uint8 share it, so every path rounds the same way.


def luma_to_float(lumas: list[np.ndarray], peak: int = 255) -> np.ndarray:
    """uint8 (or 10-bit uint16) (H, W) planes -> float32 (N, 1, H, W) in [0, 1]."""
    batch = np.stack(lumas)[:, None].astype(np.float32)
    batch *= np.float32(1 / peak)
    return batch


def float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float in [0, 1] -> uint8, rounded (scales ``values`` in place on the way)."""
    values *= np.float32(255)
    values += np.float32(0.5)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)
