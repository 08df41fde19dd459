"""ESPCN (Shi et al. 2016, arXiv:1609.05158): the network alone, no I/O."""
from __future__ import annotations

import torch
from torch import nn

from . import SUPPORTED_SCALES
from .bicubic import BicubicSkip


class ESPCN(nn.Module):
    """Efficient sub-pixel convolutional network for one upscaling factor.

    Call it with a float tensor of luma (Y) in [0, 1], shape (N, 1, H, W); it returns
    (N, 1, H * scale, W * scale), not clipped (callers clip to [0, 1]).

    Layers as in the paper: conv 5x5 1->64, tanh, conv 3x3 64->32, tanh,
    conv 3x3 32->scale**2, pixel shuffle, all unpadded ("valid"). ``forward`` first
    mirrors ``CONTEXT_PX`` pixels around the input, so the output covers the whole
    input: the network then sees plausible image content at the borders instead of
    the zeros that per-layer padding would feed it, which is also what it trains on
    (``body`` takes patches that already carry their context). Inputs must be at
    least ``CONTEXT_PX + 1`` pixels high and wide.
    """

    #: Pixels of context each output pixel needs on every side: (5 // 2) + (3 // 2) + (3 // 2).
    CONTEXT_PX = 4

    def __init__(self, scale: int) -> None:
        super().__init__()
        if scale not in SUPPORTED_SCALES:
            raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {scale}")
        self.scale = scale
        self.conv1 = nn.Conv2d(1, 64, kernel_size=5)
        self.conv2 = nn.Conv2d(64, 32, kernel_size=3)
        self.conv3 = nn.Conv2d(32, scale * scale, kernel_size=3)
        self.shuffle = nn.PixelShuffle(scale)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.conv1, self.conv2):
            # Xavier suits tanh; a zero bias keeps the activations centred at start.
            nn.init.xavier_normal_(conv.weight)
            nn.init.zeros_(conv.bias)
        # A small last layer starts the model close to a constant, which Adam then shapes.
        nn.init.normal_(self.conv3.weight, std=1e-3)
        nn.init.zeros_(self.conv3.bias)

    def forward(self, luma: torch.Tensor) -> torch.Tensor:
        c = self.CONTEXT_PX
        return self.body(nn.functional.pad(luma, (c, c, c, c), mode="reflect"))

    def body(self, luma_with_context: torch.Tensor) -> torch.Tensor:
        """(N, 1, H + 8, W + 8) -> (N, 1, H * scale, W * scale): the unpadded network."""
        return self.head(self.features(luma_with_context))

    def features(self, luma_with_context: torch.Tensor) -> torch.Tensor:
        """The two feature-extraction layers (where nearly all the arithmetic is)."""
        # Centring the input on mid-grey keeps tanh away from saturation and speeds training up.
        return torch.tanh(self.conv2(torch.tanh(self.conv1(luma_with_context - 0.5))))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The sub-pixel convolution layer and the pixel shuffle, in the weights' precision even
        under autocast: its output is the picture itself, and bf16 would round it to ~1/256."""
        with torch.autocast(features.device.type, enabled=False):
            return self.shuffle(self.conv3(features.to(self.conv3.weight.dtype))) + 0.5

    @property
    def receptive_px(self) -> int:
        return self.CONTEXT_PX


class ESPCNSkip(ESPCN):
    """ESPCN re-parameterised for int8: the same three layers, but the last convolution adds
    detail to a fixed bicubic upscale of the input (``BicubicSkip``, float) instead of drawing
    the whole picture. The form ``NAME_xS.int8.onnx`` of ESPCN ships in (made by ``tools/espcn_int8.py``).

    Why: in plain ESPCN every int8 rounding lands on the picture itself; here the picture comes
    through the float skip and int8 only touches the detail. Built from trained ESPCN weights by
    ``tools/espcn_int8.py`` (the last layer refitted by least squares: equal in float to the
    network it came from, within 0.003 dB on Set5), then fine-tuned with int8 simulated.
    ``split_last_conv`` writes the last layer as two int8-exact halves for export
    (``int8_aware.SplitConv2d``).
    """

    def __init__(self, scale: int) -> None:
        super().__init__(scale)
        self.bicubic_skip = BicubicSkip(scale, context_px=self.CONTEXT_PX)

    def body(self, luma_with_context: torch.Tensor) -> torch.Tensor:
        features = self.features(luma_with_context)
        with torch.autocast(features.device.type, enabled=False):
            detail = self.conv3(features.to(self.bicubic_skip.kernel.dtype))
            return self.shuffle(detail + self.bicubic_skip(luma_with_context).to(detail.dtype))

    def split_last_conv(self) -> "ESPCNSkip":
        """Write the last layer as ``SplitConv2d`` (in place; for export to int8, not training)."""
        from .int8_aware import SplitConv2d

        self.conv3 = SplitConv2d(self.conv3)
        return self
