"""Shared fixtures: the shared data folder (skipped when absent) and media the tests make."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VSR_TEST_DATA", REPO.parent / "shared" / "data"))


def _torch_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _tensorrt_gpu() -> bool:
    """TensorRT imports and cuda-python sees a GPU (what the TensorRT backend itself needs)."""
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False
    err, count = cudart.cudaGetDeviceCount()
    return err == cudart.cudaError_t.cudaSuccess and count > 0


def pytest_collection_modifyitems(config, items):
    have_data = DATA.is_dir()
    have_cuda = None
    have_tensorrt = None
    for item in items:
        if "needs_data" in item.keywords and not have_data:
            item.add_marker(pytest.mark.skip(reason=f"shared data not found at {DATA} (set VSR_TEST_DATA)"))
        if "needs_cuda" in item.keywords:
            have_cuda = _torch_cuda() if have_cuda is None else have_cuda
            if not have_cuda:
                item.add_marker(pytest.mark.skip(reason="no CUDA GPU visible to torch"))
        if "needs_tensorrt" in item.keywords:
            have_tensorrt = _tensorrt_gpu() if have_tensorrt is None else have_tensorrt
            if not have_tensorrt:
                item.add_marker(pytest.mark.skip(reason="needs TensorRT, cuda-python and a CUDA GPU"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def synthetic_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients, sharp-edged shapes, stripes and fine noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([
        90 + 80 * np.sin(xx / 23.0) * np.cos(yy / 31.0),
        120 + 60 * np.cos((xx + yy) / 17.0),
        100 + 70 * np.sin(np.hypot(xx - width / 2, yy - height / 2) / 9.0),
    ], axis=-1)
    for _ in range(12):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(5, max(6, height // 5))
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(20, 235, size=3)
    stripes = (np.sin(xx / 2.5) > 0)[..., None] * 40.0
    image[height // 3 : height // 2] += stripes[height // 3 : height // 2]
    image += rng.normal(0, 3, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """A folder of three synthetic PNGs of different sizes."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i, (h, w) in enumerate([(96, 120), (81, 75), (120, 96)]):
        Image.fromarray(synthetic_rgb(h, w, seed=i)).save(folder / f"img{i}.png")
    return folder
