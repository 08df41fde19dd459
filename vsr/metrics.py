"""PSNR and SSIM on luma, with the border shave the SR literature uses."""
from __future__ import annotations

import numpy as np

__all__ = ["psnr", "ssim", "shave"]


def shave(image: np.ndarray, border_px: int) -> np.ndarray:
    if border_px <= 0:
        return image
    return image[border_px:-border_px, border_px:-border_px]


def psnr(reference: np.ndarray, test: np.ndarray, *, border_px: int = 0, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB between two same-shape images on a [0, peak] scale."""
    ref = shave(np.asarray(reference, dtype=np.float64), border_px)
    out = shave(np.asarray(test, dtype=np.float64), border_px)
    if ref.shape != out.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {out.shape}")
    mse = np.mean((ref - out) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(peak * peak / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D image with a symmetric 1-D kernel."""
    k = len(kernel)
    rows = sum(kernel[i] * image[i : image.shape[0] - k + 1 + i, :] for i in range(k))
    return sum(kernel[i] * rows[:, i : rows.shape[1] - k + 1 + i] for i in range(k))


def ssim(reference: np.ndarray, test: np.ndarray, *, border_px: int = 0, peak: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03)."""
    ref = shave(np.asarray(reference, dtype=np.float64), border_px)
    out = shave(np.asarray(test, dtype=np.float64), border_px)
    if ref.shape != out.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {out.shape}")
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    w = _gaussian_window()
    mu1, mu2 = _filter_valid(ref, w), _filter_valid(out, w)
    var1 = _filter_valid(ref * ref, w) - mu1 * mu1
    var2 = _filter_valid(out * out, w) - mu2 * mu2
    cov = _filter_valid(ref * out, w) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / ((mu1**2 + mu2**2 + c1) * (var1 + var2 + c2))
    return float(ssim_map.mean())
