"""Where TensorRT plans are cached, and under which name (pure functions: no TensorRT needed).

A plan only runs on the GPU model and TensorRT version that built it, for the shapes its
optimisation profile covers, and computes what its ONNX file said when it was built. The
file name carries all of these, so a plan built for anything else is never found, let
alone loaded: a changed model, shape range, precision, TensorRT or GPU means a new build.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir, text_digest

PRECISIONS = ("fp16", "fp32")

Shape = tuple[int, int, int, int]  # (N, 1, H, W)


@dataclass(frozen=True)
class ShapeRange:
    """The optimisation profile of the network input, as (N, 1, H, W) shapes.

    TensorRT tunes kernels for ``opt`` and accepts any shape between ``min`` and ``max``.
    """

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for shape in (self.min, self.opt, self.max):
            if len(shape) != 4 or shape[1] != 1 or min(shape) < 1:
                raise ValueError(f"input shapes must be (N, 1, H, W) with positive sizes, got {shape}")
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise ValueError(f"shape range must satisfy min <= opt <= max, got {self.min} {self.opt} {self.max}")

    @classmethod
    def for_frames(cls, height_px: int, width_px: int, batch: int = 1) -> "ShapeRange":
        """A profile for exactly one input size: the fastest plan for one video's frames."""
        shape = (batch, 1, height_px, width_px)
        return cls(shape, shape, shape)

    def covers(self, shape: Shape) -> bool:
        return all(a <= s <= b for a, s, b in zip(self.min, shape, self.max))

    def tag(self) -> str:
        """``1x1x360x640-1x1x360x640-1x1x360x640`` style text for file names."""
        return "-".join("x".join(map(str, s)) for s in (self.min, self.opt, self.max))


def _slug(text: str) -> str:
    """File-name-safe text: 'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090'."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def plan_name(
    *,
    onnx_sha256: str,
    shapes: ShapeRange,
    precision: str,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
) -> str:
    """The plan's file name: every input that makes a plan unusable elsewhere is in it.

    Readable parts (precision, shapes, TensorRT, GPU) help people clear the cache by hand;
    a hash over all the raw parts keeps names unique even where slugging merges two texts.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", onnx_sha256):
        raise ValueError("onnx_sha256 must be a hex SHA-256 digest")
    major, minor = compute_capability
    raw = "|".join([onnx_sha256, shapes.tag(), precision, tensorrt_version, gpu_name, f"{major}.{minor}"])
    key = text_digest(raw, 16)
    return (f"espcn_{onnx_sha256[:12]}_{shapes.tag()}_{precision}_trt{_slug(tensorrt_version)}"
            f"_{_slug(gpu_name)}_sm{major}{minor}_{key}.plan")


def timing_cache_name(*, tensorrt_version: str, gpu_name: str, compute_capability: tuple[int, int]) -> str:
    """One timing cache per TensorRT version and GPU: kernel timings do not depend on the model."""
    major, minor = compute_capability
    return f"timing_trt{_slug(tensorrt_version)}_{_slug(gpu_name)}_sm{major}{minor}.cache"


def engine_dir() -> Path:
    """The plan cache folder: ``$VSR_ENGINE_DIR``, else vsr's cache folder's ``engines/``
    (``$VSR_CACHE_DIR/engines``, by default ``~/.cache/vsr/engines``), the same for a source
    checkout and an installed wheel. Callers create it when they write; ``vsr build-engine
    --engine-dir`` and ``TensorRTOptions.engine_dir`` name another."""
    configured = os.environ.get("VSR_ENGINE_DIR")
    if configured:
        return Path(configured)
    return cache_dir("engines")
