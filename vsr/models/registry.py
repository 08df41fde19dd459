"""Every shipped model, by name: what it is, how to build it, and where its weights are.

Torch-free, so ``vsr models`` and the ONNX-only backends never import torch. ``rank`` orders the
ladder by quality: ``espcn`` < ``espcn7`` < ``realtime`` / ``realtime-compressed`` <
``realtime-compressed-plus`` < ``balanced`` / ``balanced-compressed`` < ``quality``; ``--model auto``
times them cheapest first (multiply-adds per pixel, ``macs_per_lr_px``) and takes the best that
keeps up. ``degradation`` says what
input the model was trained for: "bicubic" is clean downscaled input (the literature's
benchmark), "compressed" is video that went through a lossy codec at low resolution.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import InputError
from . import CODEC_STATS

#: What a checkpoint or command that names no model means (training, export, eval, bench); `vsr run`
#: and `vsr live` default to ``--model auto`` instead (``tuning.model_choice``).
DEFAULT_MODEL = "espcn"
#: ``vsr upscale``'s model: images are clean input, and the real-time clean rung upscales a
#: 12-megapixel photo in seconds on two cores (x2: 7.4 s to JPEG), the larger rungs in 2-8 times that
#: (docs/models.md, "Why vsr upscale defaults to realtime").
IMAGE_MODEL = "realtime"

#: The real-time rungs' shapes (``vsr.models.reparam``), chosen by engine time against ESPCN on the
#: CPU (benchmarks/results/realtime_shapes_x3.md).
REALTIME_OPTIONS = (("channels", 32), ("blocks", 3), ("stride", 1), ("act", "relu"))
#: The compressed-input rung at about ESPCN's cost: a body at half the LR resolution (stride 2, as
#: Bicubic++) runs 48 channels x 6 layers for the multiply-adds of 32 x 5 at full resolution, and
#: each layer reaches twice as far, across the codec's 8x8 and 16x16 blocks (receptive field 12 LR
#: pixels against 5). Trained from scratch on codec round trips (training/realtime/commands.txt).
REALTIME_PLUS_OPTIONS = (("channels", 48), ("blocks", 4), ("stride", 2), ("act", "relu"))
#: How far one input pixel reaches in a network with a global context (``reparam.GlobalContext``):
#: the whole picture, so tiles must be the whole picture too.
WHOLE_PICTURE_PX = 1 << 30


@dataclass(frozen=True)
class ModelInfo:
    """One model of the ladder. ``arch`` and ``options`` build the network (``build``);
    ``rank`` orders the ladder by quality (higher: better and slower)."""

    name: str
    arch: str
    summary: str
    rank: int
    options: tuple[tuple[str, int | float], ...] = ()
    #: Options one scale adds or changes over ``options``: ((scale, ((name, value), ...)), ...), for
    #: a rung whose networks are not all alike (one scale trained with a global context first).
    scale_options: tuple[tuple[int, tuple[tuple[str, int | float], ...]], ...] = ()
    scales: tuple[int, ...] = (2, 3, 4)
    degradation: str = "bicubic"
    #: Pixels of context the network's ``body`` consumes around each output pixel.
    context_px: int = 0
    #: How far one input pixel influences the output (LR pixels): the overlap tiles need.
    receptive_px: int = 4
    aliases: tuple[str, ...] = field(default=())

    @property
    def min_input_px(self) -> int:
        """The smallest input side the network takes: its mirrored context must fit inside the
        picture (reflect padding needs a side above the pad), and never under vsr's 5 px."""
        return max(5, self.context_px + 1)

    def options_at(self, scale: int) -> dict:
        """The options that build the network for ``scale``: ``options`` with ``scale_options``'s."""
        return dict(self.options) | dict(dict(self.scale_options).get(scale, ()))

    def global_context(self, scale: int) -> bool:
        """Whether the network for ``scale`` reads the whole picture (a ``reparam`` option ``context`` > 0)."""
        return self.options_at(scale).get("context", 0) > 0

    def reach_px(self, scale: int) -> int:
        """How far one input pixel influences the output at ``scale``: ``receptive_px``, or the
        whole picture (``WHOLE_PICTURE_PX``) for a network with a global context."""
        return WHOLE_PICTURE_PX if self.global_context(scale) else self.receptive_px

    def build(self, scale: int):
        """The untrained network for ``scale`` (imports torch)."""
        from .espcn import ESPCN
        from .nets import ESPCN7, ResidualSR
        from .reparam import RepSR

        classes = {"espcn": ESPCN, "espcn7": ESPCN7, "residual": ResidualSR, "reparam": RepSR}
        return classes[self.arch](scale, **self.options_at(scale))

    def macs_per_lr_px(self, scale: int = 3) -> int:
        """Multiply-adds per low-resolution pixel of the network as it runs (for ``reparam``: the
        collapsed form), bicubic skip included: what orders the ladder by cost."""
        o = self.options_at(scale)
        r2 = scale * scale
        if self.arch == "espcn":
            return 25 * 64 + 9 * 64 * 32 + 9 * 32 * r2
        if self.arch == "espcn7":
            c = o.get("channels", 32)
            return 25 * 64 + 9 * 64 * c + 4 * 9 * c * c + 9 * c * r2
        if self.arch == "reparam":
            c, blocks, stride = o["channels"], o["blocks"], o.get("stride", 1)
            out = r2 * stride * stride
            # A global context adds a mean and a gain and shift per value (its perceptron is per frame).
            film = (c + 2 * blocks * c + out) if o.get("context", 0) else 0
            return round((9 * c + blocks * 9 * c * c + 9 * c * out + film) / (stride * stride)) + 25 * r2
        c, blocks = o["channels"], o["blocks"]
        return 9 * c + (2 * blocks + 1) * 9 * c * c + 9 * c * r2 + 25 * r2

    def weights_path(self, scale: int, kind: str = "onnx") -> Path:
        """Where the shipped weights for ``scale`` are (they may be missing from an installation)."""
        return Path(str(resources.files("vsr.models") / "weights" / f"{self.name}_x{scale}.{kind}"))

    def card_scores(self) -> dict[int, dict]:
        """Set5 results recorded next to the weights by ``vsr eval --json`` (scale -> mean scores)."""
        scores = {}
        for scale in self.scales:
            path = self.weights_path(scale).parent / f"{self.name}_set5_x{scale}.json"
            if self.name == "espcn" and not path.is_file():
                path = path.parent / f"set5_x{scale}.json"  # espcn's results predate the ladder
            if path.is_file():
                scores[scale] = json.loads(path.read_text())["mean"]
        return scores

    def params(self, scale: int) -> int:
        """Trainable parameters at ``scale``, counted from the architecture (no torch needed)."""
        o = self.options_at(scale)
        r2 = scale * scale
        if self.arch == "espcn":
            return (25 * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 * r2 + r2)
        if self.arch == "espcn7":
            c = o.get("channels", 32)
            return (25 * 64 + 64) + (9 * 64 * c + c) + 4 * (9 * c * c + c) + (9 * c * r2 + r2)
        if self.arch == "reparam":
            # The collapsed form's parameters: what runs (training adds branches that merge away).
            c, blocks, stride = o["channels"], o["blocks"], o.get("stride", 1)
            out = r2 * stride * stride
            prelu = c * (blocks + 1) if o.get("act", "prelu") == "prelu" else 0
            hidden, modulations = o.get("context", 0), 2 * blocks * c + out
            # The context reads the pooled features and, with ``codec_stats``, CODEC_STATS more numbers.
            reads = c + (CODEC_STATS if o.get("codec_stats") else 0)
            context = (reads * hidden + hidden + hidden * modulations + modulations) if hidden else 0
            return (9 * c + c) + blocks * (9 * c * c + c) + (9 * c * out + out) + prelu + context
        c, blocks = o["channels"], o["blocks"]
        conv = 9 * c * c + c
        return (9 * c + c) + blocks * 2 * conv + conv + (9 * c * r2 + r2)


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("espcn", "espcn", "ESPCN (Shi et al. 2016): 3 layers, tanh; the fastest", rank=0,
                  context_px=4, receptive_px=4),
        ModelInfo("espcn7", "espcn7", "seven-layer ESPCN: 7 unpadded layers, tanh", rank=1,
                  context_px=8, receptive_px=8),
        ModelInfo("realtime", "reparam", "five 3x3 convolutions, 32 channels, ReLU, bicubic skip, trained "
                  "re-parameterised; faster than ESPCN on the CPU in int8", rank=2, options=REALTIME_OPTIONS,
                  receptive_px=5),
        ModelInfo("realtime-compressed", "reparam", "realtime, fine-tuned for compressed video (codec-degraded "
                  "low-resolution input)", rank=2, options=REALTIME_OPTIONS, degradation="compressed",
                  receptive_px=5),
        ModelInfo("realtime-compressed-plus", "reparam", "six 3x3 convolutions, 48 channels, the body at half "
                  "resolution (it sees across codec blocks), ReLU, bicubic skip, trained re-parameterised on "
                  "compressed video; about ESPCN's cost; reads a clip's context (its features averaged and "
                  "codec statistics of the input), folded into its convolutions per clip", rank=3,
                  options=REALTIME_PLUS_OPTIONS + (("context", 32), ("codec_stats", True)),
                  degradation="compressed", receptive_px=12),
        ModelInfo("balanced", "residual", "residual network, 32 channels x 6 blocks, bicubic skip", rank=4,
                  options=(("channels", 32), ("blocks", 6)), receptive_px=15),
        ModelInfo("balanced-compressed", "residual", "balanced, fine-tuned for compressed video (codec-degraded "
                  "low-resolution input)", rank=4, options=(("channels", 32), ("blocks", 6)),
                  degradation="compressed", receptive_px=15),
        ModelInfo("quality", "residual", "residual network, 64 channels x 8 blocks, bicubic skip", rank=5,
                  options=(("channels", 64), ("blocks", 8)), receptive_px=19),
    )
}


def get_model(name: str) -> ModelInfo:
    """The model called ``name``; an unknown name is one clear line listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}: choose one of {', '.join(MODELS)} (see `vsr models`)") from None


def shipped_models() -> list[ModelInfo]:
    """The models whose weights are in this installation, fastest first."""
    return sorted((m for m in MODELS.values() if m.weights_path(m.scales[0]).is_file()), key=lambda m: m.rank)
