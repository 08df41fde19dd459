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

__all__ = ["CLIP_SAMPLES", "FIRST_FRAMES", "FIRST_SPACING_S", "ClipContext", "FirstFrames", "measure_context",
           "timing_context"]

#: How many points of a clip its context is read at (two frames each, ``media.decode.sample_frames``).
#: Read from the first 8 frames of a 90-frame CRF 30 clip, the folded network scored 0.014 dB below
#: the per-frame context; from 8 frames spread over it, 0.001 dB (fourteenth-session checkpoint,
#: three clips): a clip's compression and content vary through it more than within a second.
CLIP_SAMPLES = 4
#: A source with no clip to read ahead (a camera, a stream, a pipe) reads its context from its first
#: FIRST_FRAMES frames, one every FIRST_SPACING_S of media time. On CRF 30 clips the first frame alone
#: scored 0.034 dB below the per-frame context, the first eight consecutive frames 0.014 below (the
#: fifteenth session's study): spread over two seconds, the frames see more of the clip.
FIRST_FRAMES = 8
FIRST_SPACING_S = 0.25


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


class FirstFrames:
    """The lumas a source with no clip to read ahead reads its context from: from its first frame,
    one every ``spacing_s`` of media time, until there are ``count`` (``complete``)."""

    def __init__(self, count: int | None = None, spacing_s: float | None = None) -> None:
        self.count = FIRST_FRAMES if count is None else count
        self.spacing_s = FIRST_SPACING_S if spacing_s is None else spacing_s
        self.lumas: list[np.ndarray] = []
        self.peak = 255
        self._last_pts_s: float | None = None

    @property
    def complete(self) -> bool:
        return len(self.lumas) >= self.count

    @property
    def span_s(self) -> float:
        """The media time the kept frames span, as planned (``count`` frames ``spacing_s`` apart)."""
        return self.count * self.spacing_s

    def offer(self, picture, pts_s: float) -> bool:
        """Keep ``picture`` (a ``YuvFrame``) when it is ``spacing_s`` after the last kept one, or the
        first; True once complete."""
        if self.complete or (self._last_pts_s is not None and pts_s - self._last_pts_s < self.spacing_s):
            return self.complete
        self._last_pts_s = pts_s
        self.lumas.append(picture.luma.copy())  # a capture thread or decoder may reuse its buffers
        self.peak = (1 << picture.bit_depth) - 1
        return self.complete
