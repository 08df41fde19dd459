import numpy as np
import pytest
import torch

from vsr.errors import UnsupportedScale
from vsr.models.espcn import ESPCN
from vsr.models.weights import load_model, shipped_weights


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape_and_layers(scale):
    model = ESPCN(scale)
    out = model(torch.rand(2, 1, 13, 21))
    assert out.shape == (2, 1, 13 * scale, 21 * scale)
    assert [tuple(c.weight.shape) for c in (model.conv1, model.conv2, model.conv3)] == [
        (64, 1, 5, 5), (32, 64, 3, 3), (scale * scale, 32, 3, 3)]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pixel_shuffle_order(scale):
    """Channel dy * scale + dx of the last conv lands at offset (dy, dx) of each output block
    (plus the model's fixed 0.5 output offset)."""
    model = ESPCN(scale)
    with torch.no_grad():
        model.conv3.weight.zero_()
        model.conv3.bias.copy_(torch.arange(scale * scale, dtype=torch.float32))
    out = model(torch.rand(1, 1, 6, 7))[0, 0]
    for dy in range(scale):
        for dx in range(scale):
            assert torch.all(out[dy::scale, dx::scale] == dy * scale + dx + 0.5)


def test_reflect_context_keeps_borders_consistent():
    """A pixel's output depends only on its 9x9 neighbourhood: cropping far away changes nothing."""
    model = ESPCN(3).eval()
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        full = model(x)
        crop = model(x[..., :, :30])
    torch.testing.assert_close(full[..., 12:18, : 3 * 20], crop[..., 12:18, : 3 * 20])


def test_unsupported_scale():
    with pytest.raises(ValueError):
        ESPCN(5)
    with pytest.raises(UnsupportedScale, match="choose one of 2, 3, 4"):
        load_model(7)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_weights_load(scale):
    model = load_model(scale)
    assert model.scale == scale and not model.training
    assert shipped_weights(scale, "onnx").stat().st_size > 50_000


def test_wrong_scale_weights_rejected(tmp_path):
    with pytest.raises(UnsupportedScale, match="x2, not x3"):
        load_model(3, shipped_weights(2, "pt"))


def test_flat_input_stays_flat():
    """A trained model maps a flat grey frame to (nearly) the same flat grey."""
    model = load_model(3)
    with torch.no_grad():
        out = model(torch.full((1, 1, 16, 16), 0.5)).numpy()
    assert np.abs(out - 0.5).max() < 0.02
