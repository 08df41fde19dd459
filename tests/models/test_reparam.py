"""The re-parameterisable network (vsr.models.reparam): the training form's branches, its merged
kernels and the collapsed inference form compute the same function; every backend runs the
collapsed form."""
import numpy as np
import pytest
import torch

from vsr.models.reparam import RepConv, RepSR, RepSRPlain


def _randomised(module, std=0.1, seed=0):
    """Every parameter drawn at random (a trained network has no zero branches)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module


@pytest.mark.parametrize("cin,cout,stride", [(1, 16, 1), (16, 16, 1), (16, 9, 1), (1, 24, 2), (8, 8, 2)])
def test_merged_kernel_equals_the_branches(cin, cout, stride):
    """The one 3x3 convolution equals the sum of the five branches computed one by one, borders
    included (odd sizes, stride 2)."""
    # In float64: the merge is exact algebra, while float32 outputs of magnitude ~5 summed in
    # another order by another CPU's convolution kernels (AVX2 against AVX-512) differ by ~1e-5.
    block = _randomised(RepConv(cin, cout, stride=stride), std=0.2).double()
    x = torch.randn(2, cin, 13, 18, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    branches = block.forward_branches(x)
    merged = block(x)
    assert merged.shape == branches.shape
    assert torch.allclose(merged, branches, atol=1e-5, rtol=0)
    # The branches are there: dropping one (the identity, or the edge filters) changes the output.
    block.edge_scale.data.zero_()
    assert (block.forward_branches(x) - branches).abs().max() > 1e-3


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("options", [dict(channels=16, blocks=2, stride=1), dict(channels=8, blocks=3, stride=2),
                                     dict(channels=12, blocks=1, stride=1, act="relu"),
                                     dict(channels=8, blocks=2, stride=2, act="relu", context=6),
                                     dict(channels=8, blocks=2, stride=2, act="relu", context=6, codec_stats=True)])
def test_collapsed_form_equals_the_training_form(scale, options):
    """collapse() gives plain 3x3 convolutions that agree with the branch-by-branch training form
    within 1e-5, on odd frame sizes too (the stride-2 body's crop)."""
    net = _randomised(RepSR(scale, **options), std=0.05).eval().explicit_branches()
    plain = net.collapse()
    assert isinstance(plain, RepSRPlain)
    assert not any(isinstance(m, RepConv) for m in plain.modules())
    convs = [m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) for c in convs if c is not plain.bicubic_skip)
    luma = torch.rand(2, 1, 23, 17, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        trained, collapsed = net(luma), plain(luma)
    assert collapsed.shape == (2, 1, 23 * scale, 17 * scale)
    assert (trained - collapsed).abs().max().item() < 1e-5
    # The parameter count the registry reports is the collapsed form's.
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in net.parameters())


def test_global_context_starts_as_the_network_without_it_and_then_sees_the_whole_picture():
    """A network given a global context (``context`` hidden units) computes, before the context is
    trained, exactly what the same weights compute without it; once trained, one pixel's output
    depends on the rest of the picture (the average the context reads), which a 3x3 chain's
    12-pixel reach never sees."""
    gen = torch.Generator().manual_seed(4)
    plain = _randomised(RepSR(3, channels=8, blocks=2, stride=2, act="relu"), std=0.05).eval()
    context = RepSR(3, channels=8, blocks=2, stride=2, act="relu", context=6).eval()
    missing, unexpected = context.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("context.") for k in missing)
    picture = torch.rand(1, 1, 48, 64, generator=gen)
    with torch.no_grad():
        assert torch.equal(context(picture), plain(picture))
        _randomised(context.context, std=0.3, seed=5)
        out = context(picture)
        # The far half of the picture made flat: the near corner's pixels are 40 LR pixels away
        # from it, beyond the chain's reach, yet their output changes with the context.
        flattened = picture.clone()
        flattened[..., 32:] = 0.5
        corner = (slice(None), slice(None), slice(0, 24), slice(0, 24))
        assert torch.equal(plain(flattened)[corner], plain(picture)[corner])
        assert (context(flattened)[corner] - out[corner]).abs().max() > 1e-3


def test_codec_statistics_see_the_block_grid_wherever_it_lies():
    """The context's codec statistics (reparam.codec_statistics) tell a picture from its own x264
    round trip at CRF 23 and CRF 35, on the grid of columns and of rows, and read the same with the
    grid moved by a crop (training crops are not aligned to it)."""
    from tests.conftest import synthetic_rgb
    from vsr.color import rgb_to_y
    from vsr.degradations import codec_round_trip
    from vsr.models.reparam import codec_statistics

    clean = rgb_to_y(synthetic_rgb(184, 248, seed=7)).astype(np.uint8)

    def stats(picture, top=0, left=0):
        luma = torch.from_numpy(picture[top:, left:].astype(np.float32) / 255)[None, None]
        return codec_statistics(luma)[0].numpy()

    grid = [0, 3]  # the 8-pixel grid's excess, across columns and down rows
    previous = stats(clean)
    for crf in (23, 35):
        coded = codec_round_trip([clean], "h264", crf, "superfast")[0]
        now = stats(coded)
        assert (now[grid] > previous[grid] + 0.2).all(), (crf, now, previous)
        np.testing.assert_allclose(stats(coded, 3, 5)[grid], now[grid], rtol=0.15)
        previous = now
    # A batch reads each picture on its own, and a picture under the 8-pixel grid reads numbers.
    pair = torch.rand(2, 1, 40, 36, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(codec_statistics(pair)[1:], codec_statistics(pair[1:]), atol=1e-6)
    assert torch.isfinite(codec_statistics(torch.rand(1, 1, 5, 6))).all()



def test_a_whole_picture_reads_what_its_64_pixel_tiles_read():
    """Training reads the statistics on 64-pixel patches; a frame is read in 64-pixel tiles and
    averaged, so it gets the numbers its patches would (a maximum over phases shrinks as the sample
    grows: read as one region, a coded frame would look cleaner than any patch of it)."""
    from tests.conftest import synthetic_rgb
    from vsr.color import rgb_to_y
    from vsr.degradations import codec_round_trip
    from vsr.models.reparam import CODEC_TILE_PX, codec_statistics

    tile = CODEC_TILE_PX
    clean = rgb_to_y(synthetic_rgb(3 * tile, 4 * tile, seed=11)).astype(np.uint8)
    coded = codec_round_trip([clean], "h264", 30, "medium")[0]
    luma = torch.from_numpy(coded.astype(np.float32) / 255)[None, None]
    patches = torch.cat([luma[..., y:y + tile, x:x + tile] for y in range(0, 3 * tile, tile)
                         for x in range(0, 4 * tile, tile)])
    each = codec_statistics(patches)
    np.testing.assert_allclose(codec_statistics(luma)[0].numpy(), each.mean(dim=0).numpy(), atol=1e-4)
    # What the tiles fix: the same picture read as one region reads a smaller grid excess.
    grid = [0, 3]
    one_region = _one_region(luma)[0]
    assert one_region[grid].mean() < each.mean(dim=0)[grid].mean() - 0.1, (one_region, each.mean(dim=0))


def _one_region(luma: torch.Tensor) -> torch.Tensor:
    """``codec_statistics`` with a tile as large as the picture (how the thirteenth session read them)."""
    from unittest import mock

    from vsr.models import reparam

    with mock.patch.object(reparam, "CODEC_TILE_PX", max(luma.shape[-2:])):
        return reparam.codec_statistics(luma)


def test_codec_statistics_without_a_context_are_refused():
    """The statistics feed only the context's perceptron: asking for them alone is an error, not a no-op."""
    with pytest.raises(ValueError, match="needs a context"):
        RepSR(3, 16, 1, stride=2, act="relu", codec_stats=True)
    assert RepSR(3, 16, 1, stride=2, act="relu", context=8, codec_stats=True).context.codec_stats


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_context_with_codec_statistics_exports_and_runs_on_the_cpu_backends(tmp_path, backend):
    """A checkpoint whose context reads codec statistics runs on ONNX Runtime and OpenVINO fp32
    as torch runs it, on odd sizes and on a picture under the 8-pixel grid."""
    from vsr.backends import create_backend
    from vsr.models.weights import load_model

    options = dict(channels=8, blocks=2, stride=2, act="relu", context=6, codec_stats=True)
    net = _randomised(RepSR(2, **options), std=0.05).eval()
    path = tmp_path / "stats_x2.pt"
    torch.save({"arch": "reparam", "model": "stats-probe", "scale": 2, "options": options,
                "state_dict": net.state_dict()}, path)
    reference = load_model(2, path)
    engine = create_backend(backend, 2, weights=path, **({"precision": "fp32"} if backend == "openvino" else {}))
    try:
        for height, width in ((37, 53), (6, 7), (90, 160)):
            luma = torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(height))
            with torch.no_grad():
                expected = reference(luma).clamp(0, 1).numpy()
            out = engine.upscale_luma(luma.numpy())
            assert np.abs(out - expected).max() < 1e-4, (height, width)
    finally:
        engine.close()


def test_untrained_network_is_bicubic():
    """A zero last layer: before training the network is exactly the bicubic upscale the residual
    rungs start from (their skip is checked against interpolate in test_bicubic_skip)."""
    from vsr.models.nets import ResidualSR

    luma = torch.rand(1, 1, 20, 24, generator=torch.Generator().manual_seed(0))
    for stride in (1, 2):
        net = RepSR(3, channels=8, blocks=1, stride=stride).eval()
        with torch.no_grad():
            assert torch.allclose(net(luma), ResidualSR(3, channels=4, blocks=1).eval()(luma), atol=1e-6)


def test_loading_a_training_checkpoint_runs_the_collapsed_form(tmp_path):
    """A `vsr train` checkpoint holds the training form (resume, --init); loading it for inference
    (torch backend, export) gives the collapsed network with the same output."""
    from vsr.models.weights import load_model

    net = _randomised(RepSR(2), std=0.05).eval()
    path = tmp_path / "realtime_x2.pt"
    torch.save({"arch": "reparam", "model": "realtime", "scale": 2, "state_dict": net.state_dict(),
                "options": dict(channels=32, blocks=2, stride=1, act="prelu")}, path)
    loaded = load_model(2, path)
    assert isinstance(loaded, RepSRPlain)
    luma = torch.rand(1, 1, 16, 20)
    with torch.no_grad():
        assert (loaded(luma) - net(luma)).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["realtime", "realtime-compressed"])
def test_shipped_realtime_rungs_are_collapsed_and_match_on_every_cpu_backend(name):
    """The shipped ONNX is the collapsed graph (only 3x3 convolutions besides the bicubic skip),
    and ONNX Runtime, OpenVINO fp32 and torch agree on a real image."""
    import onnx

    from vsr.backends import create_backend
    from vsr.models.registry import get_model
    from vsr.models.weights import load_model

    info = get_model(name)
    if not info.weights_path(3).is_file():
        pytest.skip(f"{name}'s weights are not in this installation")
    graph = onnx.load(str(info.weights_path(3))).graph
    kernels = [next(a.ints for a in node.attribute if a.name == "kernel_shape")
               for node in graph.node if node.op_type == "Conv"]
    assert sorted(map(tuple, kernels)).count((3, 3)) == len(kernels) - 1  # + the 5x5 bicubic skip
    from tests.conftest import synthetic_rgb
    from vsr.color import rgb_to_y

    luma = (rgb_to_y(synthetic_rgb(40, 56, seed=3)) / 255.0).astype(np.float32)[None, None]
    with torch.no_grad():
        reference = load_model(3, model=name)(torch.from_numpy(luma)).clamp(0, 1).numpy()
    for backend, options in (("onnxruntime", {}), ("openvino", {"precision": "fp32"}), ("torch", {})):
        engine = create_backend(backend, 3, model=name, **options)
        try:
            out = engine.upscale_luma(luma)
        finally:
            engine.close()
        assert np.abs(out - reference).max() < 1e-4, backend
