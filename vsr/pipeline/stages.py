"""The per-frame work of the video pipeline, as plain functions over iterators (no threads here).

``upscale_frames`` is the engine stage: luma through the backend (batched), chroma bicubic.
Threads are added around these iterators by ``pipeline.workers``; a test can run the same
chain in one thread.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from ..backends.base import Backend
from ..frames import YuvFrame, chroma_shape


def luma_to_float(lumas: list[np.ndarray]) -> np.ndarray:
    """uint8 (H, W) planes -> float32 (N, 1, H, W) in [0, 1]."""
    batch = np.stack(lumas)[:, None].astype(np.float32)
    batch *= np.float32(1 / 255)
    return batch


def float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float in [0, 1] -> uint8, rounded (scales ``values`` in place on the way)."""
    values *= np.float32(255)
    values += np.float32(0.5)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def resize_plane(plane: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of one uint8 plane (OpenCV: 20x faster than NumPy or swscale here)."""
    import cv2

    if plane.shape == out_hw:
        return plane
    return cv2.resize(plane, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_CUBIC)


def upscale_luma(lumas: list[np.ndarray], backend: Backend) -> np.ndarray:
    """uint8 luma planes (same size) -> uint8 (N, H * s, W * s) through the backend."""
    upscaler = getattr(backend, "upscale_luma_uint8", None)
    if upscaler is not None:  # backends that convert on their side (inside the ONNX graph, on the GPU)
        return upscaler(np.stack(lumas))
    return float_to_uint8(backend.upscale_luma(luma_to_float(lumas))[:, 0])


def assemble(frame: YuvFrame, luma: np.ndarray, out_layout: str) -> YuvFrame:
    """The upscaled frame: new luma, and the source chroma resized to ``out_layout``'s size."""
    c_shape = chroma_shape(luma.shape, out_layout)
    return YuvFrame(
        luma,
        resize_plane(frame.chroma_u, c_shape),
        resize_plane(frame.chroma_v, c_shape),
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
