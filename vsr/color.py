"""Colour conversions (ITU-R BT.601, studio range) and float <-> uint8 helpers.

The network sees luma only: the eye resolves detail in luminance far better than in
colour, so chroma is resized with a plain bicubic filter and luma gets the model.
"""
from __future__ import annotations

import numpy as np


__all__ = [
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "rgb_to_y",
    "to_uint8",
]

# BT.601 with Y in [16, 235] and Cb/Cr in [16, 240]; the same numbers as MATLAB's rgb2ycbcr.
_RGB_TO_YCBCR = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ]
) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 255] (any dtype) -> float64 YCbCr in [0, 255] (studio range)."""
    return np.asarray(rgb, dtype=np.float64) @ _RGB_TO_YCBCR.T + _YCBCR_OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Float YCbCr in [0, 255] -> RGB in [0, 255] as ``dtype`` (float64 unless asked), not clipped."""
    return (np.asarray(ycbcr, dtype=dtype) - _YCBCR_OFFSET.astype(dtype)) @ _YCBCR_TO_RGB.T.astype(dtype)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Luma of an RGB or greyscale uint8 image, rounded to uint8 as MATLAB's rgb2ycbcr returns it."""
    if rgb.ndim == 2:
        return np.asarray(rgb, dtype=np.uint8)
    return to_uint8(rgb_to_ycbcr(rgb[..., :3])[..., 0])


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Round and clip float values in [0, 255] to uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)

