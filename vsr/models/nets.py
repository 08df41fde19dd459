"""The networks of the model ladder besides ESPCN: the seven-layer ESPCN and the residual-block
network. Each takes luma in [0, 1], shape (N, 1, H, W), and returns (N, 1, H * scale, W * scale),
not clipped (callers clip), like ``ESPCN``.

Every network here has ``CONTEXT_PX`` (the pixels of context around each output pixel that
``body`` consumes: 0 for padded networks) and ``body(x)``, the network without its own border
handling; training feeds ``body`` patches that already carry their context, inference calls
``forward``. Tiling and the trainer read ``receptive_px`` to know how far a pixel's influence
reaches.
"""
from __future__ import annotations

import torch
from torch import nn

from . import SUPPORTED_SCALES
from .bicubic import BicubicSkip


def _check(scale: int) -> int:
    if scale not in SUPPORTED_SCALES:
        raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {scale}")
    return scale


class ESPCN7(nn.Module):
    """ESPCN with seven convolutions (the seed project's deeper ESPCN): 5x5 1->64, 3x3 64->32,
    four 3x3 32->32, 3x3 32->scale**2, tanh between them, pixel shuffle; unpadded like ESPCN,
    the input mirrored by ``CONTEXT_PX`` in ``forward``. About 60k parameters at x3: the rung
    between ESPCN (22k) and the residual networks, with the same border handling as ESPCN.
    """

    #: 2 (the 5x5) + 6 x 1 (the 3x3s).
    CONTEXT_PX = 8

    def __init__(self, scale: int, channels: int = 32) -> None:
        super().__init__()
        self.scale = _check(scale)
        layers = [nn.Conv2d(1, 64, 5), nn.Conv2d(64, channels, 3)]
        layers += [nn.Conv2d(channels, channels, 3) for _ in range(4)]
        self.convs = nn.ModuleList(layers)
        self.last = nn.Conv2d(channels, scale * scale, 3)
        self.shuffle = nn.PixelShuffle(scale)
        for conv in self.convs:
            nn.init.xavier_normal_(conv.weight)
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.last.weight, std=1e-3)
        nn.init.zeros_(self.last.bias)

    @property
    def receptive_px(self) -> int:
        return self.CONTEXT_PX

    def forward(self, luma: torch.Tensor) -> torch.Tensor:
        c = self.CONTEXT_PX
        return self.body(nn.functional.pad(luma, (c, c, c, c), mode="reflect"))

    def body(self, luma_with_context: torch.Tensor) -> torch.Tensor:
        x = luma_with_context - 0.5
        for conv in self.convs:
            x = torch.tanh(conv(x))
        # The last layer in the weights' precision even under autocast (see ESPCN.head).
        with torch.autocast(x.device.type, enabled=False):
            return self.shuffle(self.last(x.to(self.last.weight.dtype))) + 0.5


class ResidualBlock(nn.Module):
    """conv 3x3, ReLU, conv 3x3, times ``residual_scale``, added back (EDSR's block, no batch norm:
    normalisation hurts super-resolution, and the scale keeps deep stacks stable)."""

    def __init__(self, channels: int, residual_scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x))) * self.residual_scale


class ResidualSR(nn.Module):
    """The residual-block network of the seed project: conv 3x3 1->C, ``blocks`` residual blocks,
    conv 3x3 C->C added to the first features (a long skip), conv 3x3 C->scale**2, pixel shuffle,
    plus a bicubic upscale of the input (a global skip: the network only learns the detail that
    bicubic misses, which makes it train fast and start from bicubic quality).

    Padded ("same") convolutions: a frame border sees zeros beyond it, centred on mid-grey (the
    input is shifted by -0.5), which with the bicubic skip leaves no visible border effect.
    """

    CONTEXT_PX = 0

    def __init__(self, scale: int, channels: int = 32, blocks: int = 6, residual_scale: float = 0.2) -> None:
        super().__init__()
        self.scale = _check(scale)
        self.channels, self.blocks = channels, blocks
        self.head = nn.Conv2d(1, channels, 3, padding=1)
        self.body_blocks = nn.Sequential(*(ResidualBlock(channels, residual_scale) for _ in range(blocks)))
        self.body_end = nn.Conv2d(channels, channels, 3, padding=1)
        self.tail = nn.Conv2d(channels, scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        # The bicubic upscale as a fixed convolution added before the shuffle (vsr.models.bicubic):
        # the same pixels as interpolate(), at a small fraction of OpenVINO's cost.
        self.bicubic_skip = BicubicSkip(scale)
        # A zero tail: the untrained network is exactly bicubic, so training only ever adds detail.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def receptive_px(self) -> int:
        # Each 3x3 convolution reaches one pixel further: head, 2 per block, body_end, tail.
        return 3 + 2 * self.blocks

    def forward(self, luma: torch.Tensor) -> torch.Tensor:
        return self.body(luma)

    def body(self, luma: torch.Tensor) -> torch.Tensor:
        features = self.head(luma - 0.5)
        features = features + self.body_end(self.body_blocks(features))
        # The detail layer and the skip in the weights' precision even under autocast: bf16
        # would round the picture to ~1/256, a visible loss on smooth gradients.
        with torch.autocast(luma.device.type, enabled=False):
            detail = self.tail(features.to(self.tail.weight.dtype))
            return self.shuffle(detail + self.bicubic_skip(luma).to(detail.dtype))
