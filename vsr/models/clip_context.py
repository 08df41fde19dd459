"""A clip's context: what a network with a global context (``reparam.GlobalContext``) reads from
a picture, averaged over frames spread through one clip, so the clip runs the network with that
context folded into its convolutions (``RepSRPlain.folded``): a plain network, as fast as one
without a context, which int8 quantises as any other.

Torch-free: a ``ClipContext`` travels in ``EngineSpec`` to segment workers and Ray, which fold
it again only where their cache lacks the file (``export.cached_folded_export``)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["CLIP_SAMPLES", "ClipContext", "measure_context", "timing_context"]

#: How many points of a clip its context is read at (two frames each, ``media.decode.sample_frames``).
#: Read from the first 8 frames of a 90-frame CRF 30 clip, the folded network scored 0.014 dB below
#: the per-frame context; from 8 frames spread over it, 0.001 dB (fourteenth-session checkpoint,
#: three clips): a clip's compression and content vary through it more than within a second.
CLIP_SAMPLES = 4


@dataclass(frozen=True)
class ClipContext:
    """The mean over ``frames`` frames of the context's pooled input (``context_input``)."""

    pooled: tuple[float, ...]
    frames: int

    @property
    def digest(self) -> str:
        """12 hex characters naming the folded network in caches (the float32 values' SHA-256)."""
        return hashlib.sha256(np.asarray(self.pooled, np.float32).tobytes()).hexdigest()[:12]

    @classmethod
    def neutral(cls, size: int) -> "ClipContext":
        """A context of zeros: for timing a folded network, which costs the same whatever it folds."""
        return cls(tuple([0.0] * size), 0)


def timing_context(info, scale: int) -> ClipContext | None:
    """What ``info`` (a ``ModelInfo``) is timed with at ``scale``: a neutral context where its network
    has a global context (a run folds the clip's, ``tuning.resolve_clip_context``), else None."""
    from . import CODEC_STATS

    options = info.options_at(scale)
    if not options.get("context", 0):
        return None
    return ClipContext.neutral(options["channels"] + (CODEC_STATS if options.get("codec_stats") else 0))


def measure_context(network, lumas: list[np.ndarray], peak: int = 255) -> ClipContext:
    """The ``ClipContext`` of ``lumas`` ((H, W) uint8 or 10-bit planes, one per frame) for
    ``network`` (a collapsed ``RepSRPlain`` with a context)."""
    import torch

    from ..frames import luma_to_float

    with torch.no_grad():
        pooled = torch.cat([network.context_input(torch.from_numpy(luma_to_float([luma], peak)))
                            for luma in lumas])
    return ClipContext(tuple(float(v) for v in pooled.double().mean(0)), len(lumas))
