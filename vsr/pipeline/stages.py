"""The per-frame work of the video pipeline, as plain functions over iterators (no threads here).

``upscale_frames`` is the engine stage: luma through the backend (batched), chroma bicubic.
Threads are added around these iterators by ``pipeline.workers``; a test can run the same
chain in one thread.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from ..backends.base import Backend
from ..frames import YuvFrame, chroma_shape, float_to_uint8, layout_bit_depth, luma_to_float

#: The largest sample of each bit depth: 10-bit luma is scaled to [0, 1] by 1023 as 8-bit by 255.
PEAK = {8: 255, 10: 1023}


def float_to_samples(values: np.ndarray, peak: int) -> np.ndarray:
    """Float in [0, 1] -> uint8 (peak 255) or uint16 (peak 1023), rounded (in place on the way)."""
    if peak == 255:
        return float_to_uint8(values)
    values *= np.float32(peak)
    values += np.float32(0.5)
    np.clip(values, 0, peak, out=values)
    return values.astype(np.uint16)


def convert_depth(plane: np.ndarray, from_bits: int, to_bits: int) -> np.ndarray:
    """Samples of one bit depth as another (8 <-> 10): << 2, or >> 2 rounded, as swscale does."""
    if from_bits == to_bits:
        return plane
    if to_bits > from_bits:
        return plane.astype(np.uint16) << (to_bits - from_bits)
    shift = from_bits - to_bits
    return np.minimum((plane.astype(np.uint32) + (1 << (shift - 1))) >> shift, (1 << to_bits) - 1).astype(np.uint8)


def resize_plane(plane: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of one uint8 or uint16 plane (OpenCV: 20x faster than NumPy or swscale here)."""
    import cv2

    if plane.shape == out_hw:
        return plane
    return cv2.resize(plane, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_CUBIC)


def upscale_luma(lumas: list[np.ndarray], backend: Backend) -> np.ndarray:
    """Luma planes (same size), uint8 or 10-bit uint16 -> the same dtype (N, H * s, W * s)
    through the backend. 10-bit luma goes in and out as float in [0, 1]: no bits are lost to
    the network's input (int8 networks quantise their activations whatever comes in)."""
    if lumas[0].dtype == np.uint16:
        return float_to_samples(backend.upscale_luma(luma_to_float(lumas, PEAK[10]))[:, 0], PEAK[10])
    # Backends that convert on their side (inside the ONNX graph, on the GPU) override the float round trip.
    return backend.upscale_luma_uint8(np.stack(lumas))


def assemble(frame: YuvFrame, luma: np.ndarray, out_layout: str) -> YuvFrame:
    """The upscaled frame: new luma, and the source chroma resized to ``out_layout``'s size
    (and bit depth: a 10-bit source written 8-bit is rounded here, after the network)."""
    c_shape = chroma_shape(luma.shape, out_layout)
    bits, out_bits = frame.bit_depth, layout_bit_depth(out_layout)
    return YuvFrame(
        convert_depth(luma, bits, out_bits),
        convert_depth(resize_plane(frame.chroma_u, c_shape), bits, out_bits),
        convert_depth(resize_plane(frame.chroma_v, c_shape), bits, out_bits),
        out_layout,
        frame.pts,
        frame.time_base,
        frame.index,
    )


def batched(frames: Iterable[YuvFrame], batch_size: int) -> Iterator[list[YuvFrame]]:
    """Group consecutive frames of the same size into lists of at most ``batch_size``."""
    batch: list[YuvFrame] = []
    for frame in frames:
        if batch and (len(batch) == batch_size or frame.luma.shape != batch[0].luma.shape):
            yield batch
            batch = []
        batch.append(frame)
    if batch:
        yield batch


def upscale_frames(
    frames: Iterable[YuvFrame], backend: Backend, *, out_layout: str | None = None, batch_size: int = 1
) -> Iterator[YuvFrame]:
    """The engine stage: each frame upscaled by ``backend.scale``, chroma in ``out_layout``
    (default: the source's layout)."""
    for batch in batched(frames, batch_size):
        lumas = upscale_luma([f.luma for f in batch], backend)
        for frame, luma in zip(batch, lumas):
            yield assemble(frame, luma, out_layout or frame.layout)
