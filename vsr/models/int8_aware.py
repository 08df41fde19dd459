"""Quantisation-aware fine-tuning: train a network while its convolutions see int8 rounding.

Why: NNCF's post-training int8 of the tanh networks (ESPCN, espcn7) rounds each tanh output to
8 bits (a step of 2/255 over [-1, 1]); the layers after it were trained on exact values, and on
Set5 that alone costs 0.07-0.27 dB (benchmarks/results/int8_quality.md). A short fine-tune with
the rounding in the forward pass lets the weights settle where it does not hurt; NNCF then
quantises the fine-tuned float network as before (``vsr.backends.int8``).

The simulation follows the int8 model NNCF builds for OpenVINO (read back from its FakeQuantize
nodes and weight scales): every convolution's input per tensor on 256 levels, symmetric around
zero (signed: [-a * 128 / 127, a], a step of a / 127; unsigned after a ReLU: [0, a], a / 255),
``a`` the largest magnitude seen on the calibration batches, except before the first
convolution, whose range spans the whole [0, 1] input (``vsr.backends.int8.span_input_range``);
the weights per output channel, symmetric, 255 levels ([-127, 127] times max|w| / 127).
Everything else (additions, the bicubic skip, the pixel shuffle) stays float, as the recipe in
``vsr.backends.int8`` leaves it.

Rounding passes gradients straight through (the straight-through estimator); the ranges are
measured once, before training, and then held: NNCF measures them again on the result.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["Int8AwareConv2d", "SplitConv2d", "make_int8_aware"]


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def fake_quantize_activation(x: torch.Tensor, amax: float, signed: bool) -> torch.Tensor:
    """``x`` rounded to the 256 levels of NNCF's symmetric per-tensor activation quantiser."""
    if signed:
        step = amax / 127.0
        return _round_ste(x / step).clamp(-128, 127) * step
    step = amax / 255.0
    return _round_ste(x / step).clamp(0, 255) * step


def fake_quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (out, in, kh, kw) rounded per output channel to 255 symmetric levels."""
    step = weight.detach().abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / 127.0
    return _round_ste(weight / step).clamp(-127, 127) * step


class Int8AwareConv2d(nn.Conv2d):
    """A ``Conv2d`` whose input and weights are rounded as the int8 model will round them.
    Same parameters and state_dict as the plain convolution (a checkpoint loads into either);
    the input range is an attribute, not a buffer, so saved weights carry nothing extra.
    ``round_input`` / ``round_weight`` switch either rounding off (to measure one quantiser alone,
    or for weights the export keeps exact: ``SplitConv2d``)."""

    input_amax: float
    input_signed: bool
    round_input: bool = True
    round_weight: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.round_input:
            x = fake_quantize_activation(x, self.input_amax, self.input_signed)
        return self._conv_forward(x, fake_quantize_weight(self.weight) if self.round_weight else self.weight, self.bias)


@torch.no_grad()
def make_int8_aware(model: nn.Module, batches: Iterable[torch.Tensor], forward=None) -> dict[str, tuple[float, bool]]:
    """Turn every ``Conv2d`` of ``model`` into an ``Int8AwareConv2d`` in place, its input range
    measured on ``batches`` (LR inputs as ``forward`` takes them; default ``model.body``).
    Returns {conv name: (range, signed)}."""
    forward = forward or model.body
    convs = {name: m for name, m in model.named_modules() if type(m) is nn.Conv2d}
    seen: dict[str, list[float]] = {name: [0.0, 0.0] for name in convs}  # [min, max]
    called: list[str] = []

    def observer(name):
        def hook(module, args):
            x = args[0].detach()
            if name not in called:
                called.append(name)
            seen[name][0] = min(seen[name][0], float(x.min()))
            seen[name][1] = max(seen[name][1], float(x.max()))
        return hook

    handles = [m.register_forward_pre_hook(observer(name)) for name, m in convs.items()]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            forward(batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    ranges = {}
    for name, conv in convs.items():
        low, high = seen[name]
        signed = low < 0
        conv.__class__ = Int8AwareConv2d
        conv.input_amax = max(abs(low), abs(high), 1e-6)
        conv.input_signed = signed
        if called and name == called[0]:
            # The network's input, luma - 0.5, ranged as the int8 model ranges it: all of it.
            conv.input_amax, conv.input_signed = 0.5, True
        ranges[name] = (conv.input_amax, conv.input_signed)
    return ranges


class SplitConv2d(nn.Module):
    """``conv`` stored as two for int8: ``on_grid``, its weights rounded to the per-output-channel
    int8 grid (``fake_quantize_weight``), and ``remainder``, what that rounding left out, summed.
    Equal to ``conv`` in float; per-channel int8 then quantises the first exactly and the second on
    a grid 254 times finer: about 16 bits of weight for twice the multiply-adds of this one layer.

    Why: the last layer of ESPCN has only scale² output channels, each one phase of the picture;
    8 bits of its weights alone cost 0.065-0.091 dB on Set5 (results/int8_loss_budget.md). Two
    convolutions rather than one of twice the channels sliced in two: OpenVINO ran the slices in
    33 ms a 640x360 plane at x3, the two convolutions in 26 ms (one unsplit: 23 ms).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        shape = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
        self.on_grid = nn.Conv2d(conv.in_channels, conv.out_channels, **shape)
        self.remainder = nn.Conv2d(conv.in_channels, conv.out_channels, bias=False, **shape)
        with torch.no_grad():
            rounded = fake_quantize_weight(conv.weight)
            self.on_grid.weight.copy_(rounded)
            self.on_grid.bias.copy_(conv.bias)
            self.remainder.weight.copy_(conv.weight - rounded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.on_grid(x) + self.remainder(x)
