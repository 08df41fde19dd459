"""Every backend and precision this machine runs agrees with the torch reference (issue 24):
parametrised over the library's own lists (``backends.BACKENDS``, ``PRECISIONS``), so a new
backend or precision is held to the same bounds without touching this file. What cannot run
here (TensorRT without a GPU, bf16 without native support, int8 without NNCF) is skipped with
the backend's own reason."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vsr.backends import BACKENDS, PRECISIONS
from vsr.color import rgb_to_y
from vsr.metrics import psnr

from tests.conftest import DATA, synthetic_rgb, upscale_or_skip

#: Largest difference from torch fp32, in 8-bit grey levels, per precision: fp32 differs by
#: summation order only; bf16 keeps 8 bits of mantissa in the features (about one level out);
#: int8 is judged by PSNR against the reference instead (its error is spread, not bounded).
MAX_LEVELS = {"fp32": 0.05, "bf16": 3.0}
INT8_MIN_PSNR_DB = 40.0


def _luma() -> np.ndarray:
    """A real photo where the shared data is (Set5's butterfly: edges and flat wings), else a
    synthetic photo-like image; float32 (1, 1, H, W) in [0, 1]."""
    path = DATA / "set5" / "butterfly.png"
    if path.is_file():
        from PIL import Image

        rgb = np.asarray(Image.open(path).convert("RGB"))[:96, :120]
    else:
        rgb = synthetic_rgb(96, 120)
    return (rgb_to_y(rgb) / 255.0).astype(np.float32)[None, None]


@pytest.mark.parametrize("model", ["espcn", "realtime"])
@pytest.mark.parametrize("precision", [p for p in PRECISIONS if p != "auto"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_matches_the_torch_reference(backend, precision, model):
    from vsr.models.weights import load_model

    luma = _luma()
    with torch.no_grad():
        reference = load_model(3, model=model)(torch.from_numpy(luma)).clamp(0, 1).numpy()
    out = upscale_or_skip(backend, 3, luma, label=f"{backend} {precision}", model=model, precision=precision)
    assert out.shape == reference.shape and out.dtype == np.float32
    if precision == "int8":
        assert psnr(reference[0, 0], out[0, 0], peak=1.0) >= INT8_MIN_PSNR_DB
    else:
        levels = np.abs(out - reference).max() * 255
        assert levels <= MAX_LEVELS[precision], f"{backend} {precision}: {levels:.3f} grey levels from torch"
