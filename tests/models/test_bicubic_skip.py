"""The bicubic skip as a fixed convolution, and ESPCN's int8 form built on it: the skip equals
torch's bicubic, the residual networks kept their pixels, the split last layer is exact in float
and on the int8 grid, and OpenVINO's int8 model of ESPCN keeps the skip float."""
from __future__ import annotations

import numpy as np
import pytest

from vsr.color import rgb_to_y

from tests.conftest import REPO, needs_nncf, synthetic_rgb

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _luma(height: int, width: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(rgb_to_y(synthetic_rgb(height, width, seed=seed)).astype(np.float32) / 255)[None, None]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_skip_is_torch_bicubic(scale):
    """The conv + pixel shuffle gives interpolate()'s pixels, at the borders (edge repeated) and
    with ESPCN's 4 px of mirrored context taken from the input."""
    from vsr.models.bicubic import BicubicSkip, bicubic_kernel

    luma = _luma(37, 53, seed=scale)
    reference = F.interpolate(luma, scale_factor=scale, mode="bicubic", align_corners=False)
    ours = F.pixel_shuffle(BicubicSkip(scale)(luma), scale)
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max() < 1e-5
    padded = F.pad(luma, (4, 4, 4, 4), mode="reflect")
    inner = F.interpolate(padded, scale_factor=scale, mode="bicubic", align_corners=False)
    inner = inner[..., 4 * scale:-4 * scale, 4 * scale:-4 * scale]
    assert (F.pixel_shuffle(BicubicSkip(scale, context_px=4)(padded), scale) - inner).abs().max() < 1e-5
    # Each phase's weights sum to one: flat grey stays flat grey.
    assert torch.allclose(bicubic_kernel(scale).sum(dim=(1, 2, 3)), torch.ones(scale * scale, dtype=torch.float64))


def test_residual_networks_carry_the_skip_as_a_convolution():
    """The shipped residual ONNX files hold no Resize (OpenVINO's CPU cubic Interpolate took
    56-60 ms of a 640x360 plane at x3) and give the picture the torch network gives."""
    import onnx
    import onnxruntime as ort

    from vsr.models.registry import shipped_models
    from vsr.models.weights import load_model

    luma = _luma(30, 44, seed=1)
    for info in (m for m in shipped_models() if m.arch == "residual"):
        for scale in info.scales:
            path = info.weights_path(scale)
            ops = {node.op_type for node in onnx.load(str(path)).graph.node}
            assert "Resize" not in ops, f"{path.name}: re-export it (tools/ship_model.py)"
            with torch.no_grad():
                expected = load_model(scale, model=info.name)(luma).numpy()
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = session.run(None, {"luma": luma.numpy()})[0]
            assert np.abs(got - expected).max() < 1e-4, f"{path.name}"


def test_split_conv_is_exact_in_float_and_on_the_int8_grid():
    from vsr.models.int8_aware import SplitConv2d, fake_quantize_weight

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 9, 3)
    split = SplitConv2d(conv)
    x = torch.randn(2, 32, 12, 12)
    with torch.no_grad():
        assert (split(x) - conv(x)).abs().max() < 1e-5
        on_grid, remainder = split.on_grid.weight, split.remainder.weight
        assert torch.equal(fake_quantize_weight(on_grid), on_grid)
        # Per-channel int8 of both halves: ~16 bits of the weights, against 8 for the conv alone.
        two_halves = (split.on_grid._conv_forward(x, fake_quantize_weight(on_grid), split.on_grid.bias)
                      + split.remainder._conv_forward(x, fake_quantize_weight(remainder), None))
        one = conv._conv_forward(x, fake_quantize_weight(conv.weight), conv.bias)
        exact = conv(x)
        assert (two_halves - exact).abs().max() * 50 < (one - exact).abs().max()
    assert remainder.abs().max() <= conv.weight.abs().amax() / 254 + 1e-7


def _espcn_int8_tool():
    """tools/espcn_int8.py, the script that makes the shipped ``espcn_xS.int8.onnx``, as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("espcn_int8", REPO / "tools" / "espcn_int8.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_espcn_skip_reproduces_espcn_in_float():
    """tools/espcn_int8.py's ``skip_from_espcn`` refits the last layer on one picture's patches; on
    another picture the skip form gives ESPCN's output to a fraction of a grey level."""
    from vsr.models.weights import load_model

    tool = _espcn_int8_tool()
    espcn = load_model(3, model="espcn").eval()
    fit = _luma(160, 200, seed=7).unfold(2, 40, 30).unfold(3, 40, 30).reshape(-1, 1, 40, 40)
    skip = tool.skip_from_espcn(espcn, fit).eval()
    other = _luma(60, 80, seed=8)
    with torch.no_grad():
        difference = (skip(other) - espcn(other)).abs() * 255
        split = tool.skip_from_espcn(espcn, fit).eval().split_last_conv()
        assert (split(other) - skip(other)).abs().max() < 1e-5
    assert difference.mean() < 0.25 and difference.max() < 3


@needs_nncf
def test_openvino_int8_of_espcn_keeps_the_skip_float():
    """In the shipped espcn_x3.int8.onnx's int8 model, the learned convolutions read int8 (a
    FakeQuantize before each: conv1, conv2 and both halves of the split last layer) and the bicubic
    skip reads the float input (none before it)."""
    from vsr.backends.int8 import FLOAT_SKIP_NAME, RECIPE, calibration_patches, int8_source, quantize_int8
    from vsr.models.weights import shipped_weights

    source = int8_source(shipped_weights(3, "onnx"))
    assert source.name == "espcn_x3.int8.onnx"
    model = quantize_int8(source, calibration_patches(3)[:8], RECIPE)
    convs = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    fed_by_quantizer = {op.get_friendly_name(): op.input_value(0).get_node().get_type_name() == "FakeQuantize"
                        for op in convs}
    skips = [name for name in fed_by_quantizer if FLOAT_SKIP_NAME in name]
    assert len(skips) == 1 and not fed_by_quantizer[skips[0]]
    assert sum(fed_by_quantizer.values()) == 4  # conv1, conv2 and the last layer's two halves
