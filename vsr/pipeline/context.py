"""A network's global context read from the input and folded into its weights (``EngineSpec.context``).

`vsr run` on a file reads it from frames spread over the clip, once in the driver
(``tuning.resolve_clip_context``); an input read once (a pipe, a stream) from its first seconds, held
back here until the network is folded; `vsr live` from a camera or stream the same way while it plays
(``live_fold``); `vsr bench` from its own frames. Below the driver and the live loop, above the
backends: each gets back an ``EngineSpec`` that the frame upscaler builds as any other.
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Iterator

from ..backends import EngineSpec
from ..backends.files import has_global_context
from ..models.clip_context import FirstFrames, measure_context
from ..models.weights import load_model

__all__ = ["FIRST_FRAMES_BUFFER_BYTES", "engine_with_context_of", "engine_with_first_frames_context", "unfolded"]


def unfolded(engine: EngineSpec) -> bool:
    """Whether ``engine``'s network reads a global context that no clip's context is folded into yet
    (not an .onnx of one's own: it has no weights to fold)."""
    return engine.context is None and has_global_context(engine.scale, engine.model, engine.weights)


#: The most decoded frames a pipe's first-frames context holds back before it is folded (the
#: frames are upscaled afterwards): at 4K input that is about 40 frames, at 1080p all two seconds.
FIRST_FRAMES_BUFFER_BYTES = 512 << 20


def engine_with_first_frames_context(engine: EngineSpec, frames: Iterator) -> tuple[EngineSpec, Iterator, str | None]:
    """For an input that cannot be read twice (a pipe, a stream), whose network has a global
    context: read ahead through its first seconds (``models.clip_context.FirstFrames``, at most
    ``FIRST_FRAMES_BUFFER_BYTES`` of frames), and return ``engine`` with their context, the frames
    again from the first, and the line that says so. Unchanged where there is nothing to fold."""
    if not unfolded(engine):
        return engine, frames, None
    first = FirstFrames()
    held, held_bytes = [], 0
    for frame in frames:
        held.append(frame)
        held_bytes += frame.luma.nbytes + frame.chroma_u.nbytes + frame.chroma_v.nbytes
        pts_s = frame.pts_seconds if frame.pts_seconds is not None else len(held) / 30.0
        if first.offer(frame, pts_s) or held_bytes >= FIRST_FRAMES_BUFFER_BYTES:
            break
    if not first.lumas:
        return engine, iter(held), None
    engine = engine_with_context_of(engine, first.lumas, peak=first.peak)
    note = (f"its context read from its first {len(first.lumas)} frames (the input is read once) and folded into its "
            "convolutions (one plain network for the whole input)")
    return engine, itertools.chain(held, frames), note


def engine_with_context_of(engine: EngineSpec, lumas: list, peak: int = 255, network=None) -> EngineSpec:
    """``engine`` with the mean context of ``lumas`` ((H, W) planes, one per frame) for its network
    (``network``, where the caller has it loaded): what a clip's sampled frames give `vsr run`, and a
    live camera's first seconds give `vsr live`."""
    network = network if network is not None else load_model(engine.scale, engine.weights, engine.model)
    context = measure_context(network, lumas, peak=peak)
    return replace(engine, context=context)
