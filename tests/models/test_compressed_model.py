"""The shipped model for compressed input: registered as such, loadable by name at every
scale, the same network on every CPU backend, and more than bicubic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vsr.backends import create_backend
from vsr.color import rgb_to_y
from vsr.models.registry import get_model
from vsr.models.weights import load_model, shipped_weights

from tests.conftest import synthetic_rgb

MODEL = "balanced-compressed"


def _luma(height: int, width: int) -> np.ndarray:
    return (rgb_to_y(synthetic_rgb(height, width, seed=4)) / 255.0).astype(np.float32)[None, None]


def test_registered_for_compressed_input_with_weights_and_scores():
    info = get_model(MODEL)
    assert info.degradation == "compressed" and info.arch == "residual"
    assert set(info.card_scores()) == {2, 3, 4}
    for scale in (2, 3, 4):
        assert shipped_weights(scale, "pt", MODEL).is_file() and shipped_weights(scale, "onnx", MODEL).is_file()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_loads_by_name_and_adds_to_bicubic(scale):
    network = load_model(scale, model=MODEL)
    x = torch.from_numpy(_luma(40, 56))
    with torch.no_grad():
        out = network(x)
        bicubic = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert out.shape == (1, 1, 40 * scale, 56 * scale)
    # The residual network starts as exactly bicubic (zero tail): trained weights move away from it.
    assert (out - bicubic).abs().mean().item() > 2e-3


@pytest.mark.parametrize("backend,kind", [("onnxruntime", "onnx"), ("onnxruntime", "pt"), ("openvino", "onnx"),
                                          ("openvino", "pt"), ("torch", "pt")])
def test_runs_on_every_cpu_backend_like_the_torch_network(backend, kind):
    scale = 3
    x = _luma(36, 44)
    with torch.no_grad():
        expected = load_model(scale, model=MODEL)(torch.from_numpy(x)).numpy()
    engine = create_backend(backend, scale, weights=shipped_weights(scale, kind, MODEL))
    try:
        out = np.asarray(engine.upscale_luma(x), dtype=np.float32)
    finally:
        engine.close()
    assert out.shape == expected.shape
    # OpenVINO computes in bf16 where the CPU has it natively: close, not equal.
    tolerance = 2e-2 if engine.name == "openvino" else 1e-4
    assert np.abs(out - expected).max() < tolerance
