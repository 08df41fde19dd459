"""A re-parameterisable real-time network: trained with multi-branch convolutions, run as a plain
chain of 3x3 convolutions.

Training form (``RepSR``): every convolution is an ``RepConv`` block, the sum of linear branches
in the manner of ECBSR (Zhang et al. 2021) and SESR (Bhardwaj et al. 2022):

- a 3x3 convolution,
- a 1x1 convolution,
- a 1x1 expansion to ``expand`` x the output channels, then a 3x3 convolution,
- a 1x1 convolution, then fixed Sobel-x, Sobel-y and Laplacian filters with a learned scale per
  channel (edges are what super-resolution restores),
- the identity, where input and output channels agree.

Every branch is linear, so their sum is one 3x3 convolution: ``collapse()`` returns
``RepSRPlain``, the same network as plain convolutions, equal to the training form within float
rounding (tests check 1e-5). Why bother, when the function is the same: gradient descent on the
branches' parameters is not gradient descent on the merged kernel. The over-parameterisation
preconditions the optimisation, which small networks train measurably better with (ECBSR: +0.2-0.4 dB
over the plain network at the same inference cost).

Training computes the merged kernel of each block at every step and runs one convolution with it
(``RepConv.forward``; the explicit branches are ``forward_branches``). That is the same function
of the same parameters, so the same gradients by the chain rule, at the cost of the plain network
instead of five convolutions per layer (OREPA, Hu et al. 2022, makes the same observation). It is
exact at the borders too: the branches that start with a 1x1 convolution pad its output with its
bias (as ECBSR does), which is what a 3x3 convolution over the zero-padded input computes.

The body runs at LR resolution (``stride`` 1), or at half of it (``stride`` 2, as Bicubic++: a
stride-2 first convolution, a ``2 * scale`` pixel shuffle, a crop), which quarters the cost of
every layer and doubles the context each one sees: what compressed input, whose artefacts span
8x8 and 16x16 codec blocks, needs. A bicubic upscale of the input is added before the shuffle
(``BicubicSkip``, kept float under int8 like the residual rungs'), so the network learns only the
detail bicubic misses and an untrained network (zero last layer) is exactly bicubic.

Both forms take luma in [0, 1], (N, 1, H, W), and return (N, 1, H * scale, W * scale), not
clipped. Padded ("same") convolutions: ``CONTEXT_PX`` 0, like ``ResidualSR``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from . import CODEC_STATS, SUPPORTED_SCALES
from .bicubic import BicubicSkip

_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SOBEL_Y = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


class RepConv(nn.Module):
    """A 3x3 convolution ``cin -> cout`` (``stride`` 1 or 2, zero padding 1) trained as the sum of
    the branches in the module docstring; ``merged()`` is its (weight, bias)."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1, expand: int = 2) -> None:
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.conv3 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.conv1 = nn.Conv2d(cin, cout, 1, stride=stride)
        mid = cout * expand
        self.expand_in = nn.Conv2d(cin, mid, 1)
        self.expand_out = nn.Conv2d(mid, cout, 3, stride=stride)
        # One 1x1 convolution feeds each fixed edge filter; the filter's response is scaled per channel.
        self.edge_in = nn.ModuleList(nn.Conv2d(cin, cout, 1) for _ in range(3))
        self.edge_scale = nn.Parameter(torch.randn(3, cout) * 1e-3)
        self.edge_bias = nn.Parameter(torch.zeros(3, cout))
        self.register_buffer("edge_masks", torch.tensor((_SOBEL_X, _SOBEL_Y, _LAPLACIAN)), persistent=False)
        self.identity = cin == cout and stride == 1
        #: Compute the branches one by one (``forward_branches``) instead of the merged kernel.
        self.explicit = False

    def merged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (cout, cin, 3, 3), bias (cout,)) of the one convolution equal to the sum of branches."""
        weight = self.conv3.weight + F.pad(self.conv1.weight, (1, 1, 1, 1))
        bias = self.conv3.bias + self.conv1.bias
        # 1x1 a (mid, cin) then 3x3 k (cout, mid): weight k @ a per tap; the 1x1's bias meets every tap of k.
        a = self.expand_in.weight[:, :, 0, 0]
        k = self.expand_out.weight
        weight = weight + torch.einsum("omhw,mi->oihw", k, a)
        bias = bias + self.expand_out.bias + torch.einsum("omhw,m->o", k, self.expand_in.bias)
        for i, conv in enumerate(self.edge_in):
            mask = self.edge_scale[i][:, None, None] * self.edge_masks[i]  # (cout, 3, 3)
            weight = weight + conv.weight * mask[:, None]  # (cout, cin, 1, 1) x (cout, 1, 3, 3)
            bias = bias + self.edge_bias[i] + conv.bias * mask.sum(dim=(1, 2))
        if self.identity:
            eye = torch.zeros_like(weight)
            eye[torch.arange(self.cout), torch.arange(self.cin), 1, 1] = 1.0
            weight = weight + eye
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.explicit:
            return self.forward_branches(x)
        weight, bias = self.merged()
        return F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), stride=self.stride, padding=1)

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of the branches computed one by one (what ``forward`` equals)."""

        def bias_padded(y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            # A 1x1 output padded with its bias: the 1x1 applied to the zero-padded input.
            b = bias[None, :, None, None]
            return F.pad(y - b, (1, 1, 1, 1)) + b

        out = self.conv3(x) + self.conv1(x)
        out = out + self.expand_out(bias_padded(self.expand_in(x), self.expand_in.bias))
        for i, conv in enumerate(self.edge_in):
            y = bias_padded(conv(x), conv.bias)
            mask = (self.edge_scale[i][:, None, None] * self.edge_masks[i])[:, None]
            out = out + F.conv2d(y, mask, self.edge_bias[i], stride=self.stride, groups=self.cout)
        if self.identity:
            out = out + x
        return out

    def collapse(self) -> nn.Conv2d:
        weight, bias = self.merged()
        conv = nn.Conv2d(self.cin, self.cout, 3, stride=self.stride, padding=1)
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        return conv


def _activation(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(channels, init=0.1)
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"activation must be 'prelu' or 'relu', got {kind!r}")


#: Steps larger than this (in [0, 1] luma) are edges, not codec artefacts: clipped so that one
#: strong edge on a block boundary does not read as blocking.
_SMALL_STEP = 4 / 255


#: The statistics are read per tile of this many pixels and averaged over the tiles. Why: the phase
#: with the most small steps is a maximum, so its excess over the average phase shrinks as the
#: sample grows, and a whole frame read as one region looks cleaner than any 64-pixel patch of it
#: (x264 CRF 30 on the benchmark's clips: a median 0.43 for whole frames, 0.95 for 64-pixel crops
#: of the same frames). Training reads 64-pixel patches (40 pixels and a 12-pixel margin), so a
#: frame read in 64-pixel tiles gives the numbers training saw; a 64-pixel patch is one tile.
CODEC_TILE_PX = 64


def _tiles(length: int, dtype: torch.dtype, device: torch.device, phases: int = 1, steps: bool = False) -> torch.Tensor:
    """(length, tiles * phases) 0/1: position i belongs to tile i // CODEC_TILE_PX and (with
    ``phases``) phase i % phases. ``steps``: the positions are steps between pixels, and the step
    across a tile's border belongs to no tile (a 64-pixel patch has 63 steps). Built from ``length``
    with tensor ops, so an exported graph keeps the picture's size dynamic; the last tile may be
    partial."""
    index = torch.arange(length, device=device)
    starts = torch.arange(0, length, CODEC_TILE_PX, device=device)  # one per tile
    key = index // CODEC_TILE_PX * CODEC_TILE_PX + index % phases
    if steps:
        key = torch.where(index % CODEC_TILE_PX == CODEC_TILE_PX - 1, -1, key)
    targets = (starts[:, None] + torch.arange(phases, device=device)[None, :]).reshape(-1)
    return (key[:, None] == targets[None, :]).to(dtype)


def _grid_statistics(steps: torch.Tensor) -> list[torch.Tensor]:
    """Steps between neighbours along the last axis (N, 1, H, W-1) -> three (N,) numbers: how much
    more the 8-pixel and 4-pixel phase with the most small steps has than the average phase (a
    block-transform grid, wherever it lies: training crops are not aligned to it), and the log of
    the average small step (noise and fine texture; codecs flatten them); each per
    ``CODEC_TILE_PX`` tile, averaged over the tiles in proportion to their steps."""
    small = steps.abs().clamp(max=_SMALL_STEP)[:, 0]  # (N, H, W-1)
    bands = _tiles(small.shape[-2], small.dtype, small.device)  # (H, B)
    cells = _tiles(small.shape[-1], small.dtype, small.device, phases=8, steps=True)  # (W-1, T * 8)
    # Sums over counts, not means: a picture under 9 pixels has empty phases, which read 0, not
    # NaN (and the exported graph keeps no branch on the picture's size).
    sums = bands.transpose(0, 1) @ small @ cells  # (N, B, T * 8)
    counts = bands.sum(dim=0)[:, None] * cells.sum(dim=0)[None, :]  # (B, T * 8)
    phase = sums / counts.clamp(min=1)
    phase = phase.reshape(phase.shape[0], phase.shape[1], -1, 8)  # (N, B, T, 8)
    # A partial tile at the picture's edge counts for its size: its few steps are a noisy sample.
    weight = counts.reshape(counts.shape[0], -1, 8).sum(dim=-1)  # (B, T)
    half = (phase[..., :4] + phase[..., 4:]) / 2
    eps = 1e-4
    level = phase.mean(dim=-1)
    # Scaled to about unit range (measured on Set5 and BSD pictures, clean to x264 CRF 37: the grid
    # ratios 0.01-0.5, the log level -6 to -4) so that no input dominates the perceptron's first layer.
    per_tile = [10 * (torch.log(phase.amax(dim=-1) + eps) - torch.log(level + eps)),
                10 * (torch.log(half.amax(dim=-1) + eps) - torch.log(level + eps)),
                torch.log(level + eps) + 4.5]  # each (N, B, T)
    total = weight.sum().clamp(min=1)
    return [(t * weight).sum(dim=(1, 2)) / total for t in per_tile]


def codec_statistics(luma: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma in [0, 1] -> (N, CODEC_STATS): ``_grid_statistics`` across columns, then rows.

    Why: block codecs leave their transform grid (4 and 8 pixels in x264, more in x265) as small
    steps that line up on one phase, and take away fine texture and noise; a picture's content
    barely aligns with any grid. These are what the pooled features, averaged over every position,
    cannot see."""
    luma = luma.float()
    across = _grid_statistics(luma[..., :, 1:] - luma[..., :, :-1])
    down = _grid_statistics((luma[..., 1:, :] - luma[..., :-1, :]).transpose(-1, -2))
    return torch.stack(across + down, dim=1)


class GlobalContext(nn.Module):
    """Per-frame global context: the head's features averaged over the whole picture, through a
    small two-layer perceptron, give every body layer a gain and a shift per channel and the detail
    layer a gain per output channel (FiLM, Perez et al. 2018).

    Why: a 3x3 chain reaching 12 LR pixels cannot tell a clean fine texture from codec noise of the
    same size, so one set of weights must hedge between sharpening and smoothing. The average over
    the picture is a blind estimate of how the whole frame was degraded, which every pixel then
    shares. Its last layer starts at zero: a network given context starts as the one without.
    It costs one mean over the head's output and a few thousand multiply-adds per frame."""

    def __init__(self, channels: int, body_layers: int, tail_channels: int, hidden: int,
                 codec_stats: bool = False) -> None:
        super().__init__()
        self.channels, self.body_layers = channels, body_layers
        #: Also read ``codec_statistics`` of the input luma (the pooled features alone are content).
        self.codec_stats = codec_stats
        self.fc1 = nn.Linear(channels + (CODEC_STATS if codec_stats else 0), hidden)
        self.fc2 = nn.Linear(hidden, 2 * channels * body_layers + tail_channels)
        with torch.no_grad():
            self.fc2.weight.zero_()
            self.fc2.bias.zero_()

    def forward(self, features: torch.Tensor, luma: torch.Tensor | None = None
                ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """([(gain, shift)] per body layer, detail gain), each (N, C, 1, 1); a gain multiplies by 1 + gain.
        ``luma`` (N, 1, H, W) in [0, 1]: the input, which ``codec_stats`` needs."""
        return self.modulation(self.pooled(features, luma))

    def pooled(self, features: torch.Tensor, luma: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D): what the perceptron reads, every entry a mean over the picture (the features'
        mean, the codec statistics' mean over tiles), so a mean over frames is a clip's value."""
        pooled = features.mean(dim=(2, 3))
        if self.codec_stats:
            pooled = torch.cat([pooled, codec_statistics(luma).to(pooled.dtype)], dim=1)
        return pooled

    def modulation(self, pooled: torch.Tensor) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """``forward``'s gains and shifts from ``pooled``'s (N, D) values."""
        out = self.fc2(F.relu(self.fc1(pooled)))[:, :, None, None]
        c = self.channels
        layers = [(out[:, 2 * c * i:2 * c * i + c], out[:, 2 * c * i + c:2 * c * (i + 1)])
                  for i in range(self.body_layers)]
        return layers, out[:, 2 * c * self.body_layers:]


def _check(scale: int, stride: int) -> None:
    if scale not in SUPPORTED_SCALES:
        raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {scale}")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")


class _RepBase(nn.Module):
    """What both forms share: the skip, the shuffle and the crop around ``_features``."""

    CONTEXT_PX = 0

    def _setup(self, scale: int, channels: int, blocks: int, stride: int, act: str, context: int,
               codec_stats: bool = False) -> None:
        _check(scale, stride)
        if codec_stats and not context:
            # The statistics feed only the context's perceptron: without one they would be silently dropped.
            raise ValueError("codec_stats needs a context (context > 0 hidden units)")
        self.scale, self.channels, self.blocks, self.stride, self.act = scale, channels, blocks, stride, act
        self.shuffle = nn.PixelShuffle(scale * stride)
        self.bicubic_skip = BicubicSkip(scale)
        self.skip_shuffle = nn.PixelShuffle(scale)
        #: ``context`` hidden units > 0: the body is modulated by the picture's ``GlobalContext``.
        self.context = (GlobalContext(channels, blocks, self.out_channels, context, codec_stats)
                        if context else None)

    @property
    def receptive_px(self) -> int:
        # head + blocks + tail 3x3 convolutions, each one reaching ``stride`` LR pixels further
        # (measured: 12 LR pixels for stride 2 and 4 blocks, from an odd position; 11 from an even one).
        return (self.blocks + 2) * self.stride

    @property
    def out_channels(self) -> int:
        return (self.scale * self.stride) ** 2

    def forward(self, luma: torch.Tensor) -> torch.Tensor:
        return self.body(luma)

    def context_input(self, luma: torch.Tensor) -> torch.Tensor:
        """(N, D): the context's pooled input for each picture of ``luma`` (N, 1, H, W) in [0, 1]
        (``GlobalContext.pooled``). Averaged over a clip's frames, ``RepSRPlain.folded`` takes it."""
        if self.context is None:
            raise ValueError("this network has no context")
        return self.context.pooled(self._head(luma), luma)

    def _head(self, luma: torch.Tensor) -> torch.Tensor:
        return self._acts()[0](self._convs()[0](luma - 0.5))

    def body(self, luma: torch.Tensor) -> torch.Tensor:
        convs, acts = self._convs(), self._acts()
        x = self._head(luma)
        layers, detail_gain = self.context(x, luma) if self.context is not None else ([None] * self.blocks, None)
        for conv, act, modulation in zip(convs[1:], acts[1:], layers):
            y = conv(x)
            if modulation is not None:
                gain, shift = modulation
                y = y * (1 + gain) + shift
            x = act(y)
        # The detail layer and the skip in the weights' precision even under autocast: bf16 would
        # round the picture to ~1/256, a visible loss on smooth gradients.
        with torch.autocast(luma.device.type, enabled=False):
            tail = self._tail()
            detail = tail(x.to(self._tail_dtype()))
            if detail_gain is not None:
                detail = detail * (1 + detail_gain.to(detail.dtype))
            skip = self.bicubic_skip(luma).to(detail.dtype)
            if self.stride == 1:
                return self.shuffle(detail + skip)
            height, width = luma.shape[-2] * self.scale, luma.shape[-1] * self.scale
            # The half-resolution body covers ceil(H / 2) rows: its shuffle overhangs odd sizes by one scale.
            return self.shuffle(detail)[..., :height, :width] + self.skip_shuffle(skip)


class RepSR(_RepBase):
    """The training form: ``RepConv`` 1->C (stride ``stride``), ``blocks`` ``RepConv`` C->C, each
    followed by ``act``, a ``RepConv`` C->(scale * stride)**2, the pixel shuffle, the bicubic skip."""

    def __init__(self, scale: int, channels: int = 32, blocks: int = 2, stride: int = 1, act: str = "prelu",
                 expand: int = 2, context: int = 0, codec_stats: bool = False) -> None:
        super().__init__()
        self._setup(scale, channels, blocks, stride, act, context, codec_stats)
        self.expand = expand
        self.head = RepConv(1, channels, stride=stride, expand=expand)
        self.body_convs = nn.ModuleList(RepConv(channels, channels, expand=expand) for _ in range(blocks))
        self.acts = nn.ModuleList(_activation(act, channels) for _ in range(blocks + 1))
        self.tail = RepConv(channels, self.out_channels, expand=expand)
        # A zero last layer: the untrained network is exactly bicubic, so training only ever adds detail.
        with torch.no_grad():
            for p in self.tail.parameters():
                p.zero_()

    def _convs(self):
        return [self.head, *self.body_convs]

    def _acts(self):
        return self.acts

    def _tail(self):
        return self.tail

    def _tail_dtype(self):
        return self.tail.conv3.weight.dtype

    def explicit_branches(self, on: bool = True) -> "RepSR":
        """Run every block branch by branch (slower; the same function): what the tests compare."""
        for module in self.modules():
            if isinstance(module, RepConv):
                module.explicit = on
        return self

    def collapse(self) -> "RepSRPlain":
        """The inference form: the same function as plain 3x3 convolutions (eval mode)."""
        hidden = self.context.fc1.out_features if self.context is not None else 0
        stats = self.context is not None and self.context.codec_stats
        plain = RepSRPlain(self.scale, self.channels, self.blocks, self.stride, self.act, context=hidden,
                           codec_stats=stats)
        with torch.no_grad():
            for source, target in zip([*self._convs(), self.tail], [*plain.convs, plain.tail]):
                weight, bias = source.merged()
                target.weight.copy_(weight)
                target.bias.copy_(bias)
            for source, target in zip(self.acts, plain.acts):
                target.load_state_dict(source.state_dict())
            if self.context is not None:
                plain.context.load_state_dict(self.context.state_dict())
        return plain.to(self.tail.conv3.weight.device).eval()


class RepSRPlain(_RepBase):
    """The inference form of ``RepSR`` (``RepSR.collapse()``): plain 3x3 convolutions."""

    def __init__(self, scale: int, channels: int = 32, blocks: int = 2, stride: int = 1, act: str = "prelu",
                 expand: int = 2, context: int = 0, codec_stats: bool = False) -> None:
        super().__init__()
        self._setup(scale, channels, blocks, stride, act, context, codec_stats)
        self.convs = nn.ModuleList([nn.Conv2d(1, channels, 3, stride=stride, padding=1)]
                                   + [nn.Conv2d(channels, channels, 3, padding=1) for _ in range(blocks)])
        self.acts = nn.ModuleList(_activation(act, channels) for _ in range(blocks + 1))
        self.tail = nn.Conv2d(channels, self.out_channels, 3, padding=1)

    def _convs(self):
        return self.convs

    def _acts(self):
        return self.acts

    def _tail(self):
        return self.tail

    def _tail_dtype(self):
        return self.tail.weight.dtype

    def folded(self, pooled: torch.Tensor) -> "RepSRPlain":
        """The network without its context, the context's modulation for ``pooled`` (1, D) (a clip's
        ``context_input``, averaged over its frames) folded into the convolutions: a gain scales
        a convolution's output channel and a shift adds to its bias, exactly.

        Why: the modulation between each convolution and its activation is an element-wise pass
        that OpenVINO does not fuse into an int8 convolution: about 20 % more engine time on a
        2-core Zen 4 (benchmarks/results/realtime_rungs_context_s14.md). The frames of one clip
        share a context (read per frame or once per clip from frames spread over it, the gains
        scored within 0.002 dB of each other at CRF 30), so a clip runs the plain network."""
        if self.context is None:
            raise ValueError("this network has no context to fold")
        plain = RepSRPlain(self.scale, self.channels, self.blocks, self.stride, self.act)
        plain.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("context.")})
        with torch.no_grad():
            layers, detail_gain = self.context.modulation(pooled.reshape(1, -1).to(self.tail.weight.dtype))
            for conv, (gain, shift) in zip(plain.convs[1:], layers):
                factor = 1 + gain.reshape(-1)
                conv.weight.mul_(factor[:, None, None, None])
                conv.bias.copy_(conv.bias * factor + shift.reshape(-1))
            factor = 1 + detail_gain.reshape(-1)
            plain.tail.weight.mul_(factor[:, None, None, None])
            plain.tail.bias.mul_(factor)
        return plain.to(self.tail.weight.device).eval()


def plain_state_dict(state_dict: dict, scale: int, options: dict) -> dict:
    """The collapsed (inference-form) state dict of a training-form ``state_dict``."""
    net = RepSR(scale, **options)
    net.load_state_dict({k: v.float() for k, v in state_dict.items()})
    return net.collapse().state_dict()
