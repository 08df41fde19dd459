import numpy as np
import pytest
import torch

from vsr.export import export_onnx
from vsr.models.weights import load_model, shipped_weights

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_onnx_matches_torch_for_any_size(tmp_path, scale):
    model = load_model(scale)
    path = export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(scale)
    for shape in [(1, 1, 17, 23), (2, 1, 40, 31), (1, 1, 90, 160)]:
        x = rng.random(shape, dtype=np.float32)
        (onnx_out,) = session.run(None, {"luma": x})
        with torch.no_grad():
            torch_out = model(torch.from_numpy(x)).numpy()
        assert onnx_out.shape == (shape[0], 1, shape[2] * scale, shape[3] * scale)
        np.testing.assert_allclose(onnx_out, torch_out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_onnx_is_the_shipped_checkpoint(scale):
    session = ort.InferenceSession(str(shipped_weights(scale, "onnx")), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 1, 24, 30), dtype=np.float32)
    with torch.no_grad():
        expected = load_model(scale)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"luma": x})[0], expected, atol=1e-5, rtol=0)
