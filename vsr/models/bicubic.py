"""Bicubic upscaling by an integer factor as one fixed convolution: the skip a network adds its detail to.

For an integer ``scale``, torch's bicubic upscale (Keys' cubic with a = -0.75, ``align_corners=False``)
puts each output pixel ``(i * scale + py, j * scale + px)`` at a fixed sub-pixel offset from input
pixel ``(i, j)``: it is a 5x5 filter per phase, so the whole upscale is a 5x5 convolution to
``scale**2`` channels followed by the pixel shuffle that the networks already end with. The networks
add it to their last convolution's output before that shuffle.

Why not ``interpolate``: OpenVINO's CPU ``Interpolate`` (cubic) took 56-60 ms of a 640x360 plane at
x3 on a 2-core AMD EPYC (Zen 4), more than all of ESPCN's arithmetic in int8; the convolution
takes about a millisecond (benchmarks/results/cpu_levers.md). NNCF leaves it float by its name
(``vsr.backends.int8.FLOAT_SKIP_NAME``): it carries the picture itself.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["BicubicSkip", "bicubic_kernel"]

#: Keys' cubic convolution parameter, as torch's (and OpenCV's) bicubic.
A = -0.75
#: Input pixels either side the kernel reaches at any phase (offsets -2..2).
REACH_PX = 2


def _cubic(x: float) -> float:
    x = abs(x)
    if x <= 1:
        return ((A + 2) * x - (A + 3)) * x * x + 1
    if x < 2:
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A
    return 0.0


def bicubic_kernel(scale: int) -> torch.Tensor:
    """(scale**2, 1, 5, 5) float64: output channel ``py * scale + px`` holds phase (py, px)."""
    taps = torch.zeros(scale, 2 * REACH_PX + 1, dtype=torch.float64)
    for phase in range(scale):
        # Where output pixel i * scale + phase falls between input pixels, relative to pixel i.
        offset = (phase + 0.5) / scale - 0.5
        base = math.floor(offset)
        t = offset - base
        for k, weight in enumerate((_cubic(t + 1), _cubic(t), _cubic(1 - t), _cubic(2 - t))):
            taps[phase, base - 1 + k + REACH_PX] = weight
    kernel = taps[:, None, :, None] * taps[None, :, None, :]  # (py, px, ky, kx)
    return kernel.reshape(scale * scale, 1, 2 * REACH_PX + 1, 2 * REACH_PX + 1)


class BicubicSkip(nn.Module):
    """(N, 1, H, W) luma -> (N, scale**2, H, W): its bicubic upscale before the pixel shuffle.

    ``context_px``: pixels of real context the input already carries on every side (ESPCN's
    mirrored border); the rest of the 2 px the kernel reaches is the edge pixel repeated, which is
    what ``interpolate`` does at a border. Computed in the kernel's precision even under autocast:
    bf16 would round the picture to ~1/256. The kernel is a non-persistent buffer: checkpoints
    hold learned weights only.
    """

    def __init__(self, scale: int, context_px: int = 0) -> None:
        super().__init__()
        self.scale = scale
        self.context_px = context_px
        self.register_buffer("kernel", bicubic_kernel(scale).float(), persistent=False)

    def forward(self, luma: torch.Tensor) -> torch.Tensor:
        trim = self.context_px - REACH_PX
        if trim > 0:
            luma = luma[..., trim:-trim, trim:-trim]
        elif trim < 0:
            luma = nn.functional.pad(luma, (-trim,) * 4, mode="replicate")
        with torch.autocast(luma.device.type, enabled=False):
            return nn.functional.conv2d(luma.to(self.kernel.dtype), self.kernel)
