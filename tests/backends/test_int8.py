"""int8 beyond parity: where NNCF puts its quantisers, the int8-aware fine-tune (its simulation
against OpenVINO's real int8 model, and `vsr train --int8-aware`), which network int8 quantises
(``int8_source``), and the recorded Set5 losses that ``--precision auto`` trusts."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from vsr.color import rgb_to_y

from tests.conftest import has_nncf, needs_nncf, synthetic_rgb

torch = pytest.importorskip("torch")




@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "vsr-cache"))


def _fake_quantizers(model):
    """[(levels, [consumer op types])] of every FakeQuantize in an OpenVINO model."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize":
            consumers = [t.get_node().get_type_name() for t in op.output(0).get_target_inputs()]
            found.append((op.get_attributes()["levels"], consumers))
    return found


@needs_nncf
def test_recipe_quantises_convolution_inputs_only():
    """The residual networks' sums, residual scale and bicubic skip stay float: NNCF's default
    placement also rounded the final detail + bicubic sum to 8 bits (0.10 dB on Set5 x3 for
    balanced, against 0.02 dB for convolutions alone)."""
    from vsr.backends.int8 import RECIPE, Int8Recipe, calibration_patches, quantize_int8
    from vsr.models.weights import shipped_weights

    onnx, patches = shipped_weights(2, "onnx", "balanced"), calibration_patches(2)[:8]
    ours = _fake_quantizers(quantize_int8(onnx, patches, RECIPE))
    convs = 1 + 6 * 2 + 1 + 1  # head, two per block, body_end, tail
    assert len(ours) == convs
    assert all(levels == 256 and set(consumers) == {"Convolution"} for levels, consumers in ours)
    default = _fake_quantizers(quantize_int8(onnx, patches, Int8Recipe(quantize_elementwise=True)))
    assert any("Add" in consumers for _, consumers in default)  # what the recipe avoids


@needs_nncf
def test_a_global_context_stays_float_in_int8(tmp_path):
    """A network whose context reads codec statistics (reparam.codec_statistics: sums of luma
    steps under 4/255) gets quantisers before its convolutions only: NNCF's placement also
    rounded the steps and their sums to 8 bits, which cost 0.08 dB on Set5 x3 against 0.02."""
    import torch

    from vsr.backends.int8 import RECIPE, calibration_patches, quantize_int8
    from vsr.export import export_onnx
    from vsr.models.reparam import RepSR

    torch.manual_seed(0)
    net = RepSR(3, channels=8, blocks=2, stride=2, act="relu", context=6, codec_stats=True).eval()
    onnx = export_onnx(net.collapse(), tmp_path / "context_x3.onnx")
    ours = _fake_quantizers(quantize_int8(onnx, calibration_patches(3)[:8], RECIPE))
    assert len(ours) == 1 + 2 + 1  # head, body, tail
    assert all(set(consumers) == {"Convolution"} for _, consumers in ours)


@needs_nncf
@pytest.mark.parametrize("model", ["espcn", "espcn7", "balanced"])
def test_int8_keeps_the_whole_uint8_range(model):
    """The shipped calibration patches span 12-247 of 255; NNCF ranged the first quantiser on
    them, so int8 ESPCN turned a white 255 into 246 and a black 0 into 9. The input's quantiser
    now spans [0, 1]: flat black, white and a full ramp come out as fp32 has them."""
    from vsr.backends.openvino import OpenVinoBackend, OpenVinoOptions
    from vsr.models.weights import shipped_weights

    onnx = shipped_weights(3, "onnx", model)
    fp32 = OpenVinoBackend(3, onnx, OpenVinoOptions(precision="fp32"))
    int8 = OpenVinoBackend(3, onnx, OpenVinoOptions(precision="int8"))
    ramp = np.tile(np.arange(256, dtype=np.uint8), (24, 1))
    frames = np.stack([np.zeros((24, 256), np.uint8), np.full((24, 256), 255, np.uint8), ramp])
    ours, reference = int8.upscale_luma_uint8(frames).astype(int), fp32.upscale_luma_uint8(frames).astype(int)
    assert reference[0].mean() <= 2 and reference[1].mean() >= 253  # what int8 must keep
    # int8's own noise is a few levels pixel by pixel (measured: 3 at most), none on average.
    assert np.abs(ours - reference).max() <= 4
    # Flat black and white as fp32 keeps them, or nearer the truth: ESPCN's int8 network, whose
    # bicubic skip carries flat areas exactly, gives 0 and 255 where fp32 ESPCN gives 1 and 254.
    for frame, level in ((0, 0), (1, 255)):
        assert abs(ours[frame].mean() - level) <= abs(reference[frame].mean() - level) + 1.0
    assert abs((ours[2] - reference[2]).mean()) <= 1.0
    ends = np.abs(ours[2] - reference[2])[:, np.r_[0:24, -24:0]]  # the ramp's 0-7 and 248-255
    assert ends.mean() <= 1.0


@needs_nncf
@pytest.mark.parametrize("model", ["espcn", "balanced"])
def test_int8_aware_simulation_matches_openvino_int8(model):
    """The fine-tune's rounding (models/int8_aware.py) costs what the int8 model's costs: on a
    picture neither saw, the torch simulation departs from fp32 by as much as OpenVINO's NNCF
    model does (the rounding points differ pixel by pixel: NNCF corrects biases, and summation
    orders differ; on Set5 x3 the two gave the same PSNR within 0.001 dB, espcn 32.4495 against
    32.4486, balanced 33.0686 against 33.0687)."""
    import openvino as ov

    from vsr.backends.int8 import calibration_patches, quantize_int8
    from vsr.metrics import psnr
    from vsr.models.int8_aware import Int8AwareConv2d, make_int8_aware
    from vsr.models.weights import load_model, shipped_weights

    scale = 3
    luma = rgb_to_y(synthetic_rgb(90, 120, seed=5)).astype(np.float32)[None, None] / 255
    patches = calibration_patches(scale)
    compiled = ov.Core().compile_model(quantize_int8(shipped_weights(scale, "onnx", model), patches), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    real = np.clip(compiled(luma)[0][0, 0], 0, 1)
    network = load_model(scale, model=model)
    with torch.no_grad():
        fp32 = network(torch.from_numpy(luma)).clamp(0, 1)[0, 0].numpy()
        make_int8_aware(network, [torch.from_numpy(patches)], forward=network.forward)
        assert any(isinstance(module, Int8AwareConv2d) for module in network.modules())
        simulated = network(torch.from_numpy(luma)).clamp(0, 1)[0, 0].numpy()
    # Unrounded: the int8 error is a fraction of a grey level, rounding to 8 bits would hide it.
    real_error_db = psnr(fp32 * 255, real * 255)
    simulated_error_db = psnr(fp32 * 255, simulated * 255)
    # Measured: espcn 48.85 / 48.73 dB, balanced 58.55 / 58.51 dB (real / simulated).
    assert 40.0 <= real_error_db <= 70.0  # int8 rounding is there, and small
    assert abs(simulated_error_db - real_error_db) <= 1.5


def test_int8_aware_conv_keeps_the_plain_state_dict():
    """An int8-aware network saves and loads as the plain one (ranges are attributes, not buffers),
    rounds ReLU outputs unsigned and the rest signed, and its rounding reaches the output."""
    from vsr.models.int8_aware import Int8AwareConv2d, make_int8_aware
    from vsr.models.weights import load_model

    plain = load_model(2, model="balanced")
    aware = load_model(2, model="balanced")
    batch = torch.rand(4, 1, 24, 24)
    ranges = make_int8_aware(aware, [batch], forward=aware.forward)
    assert set(aware.state_dict()) == set(plain.state_dict())
    assert all(isinstance(m, Int8AwareConv2d) for name, m in aware.named_modules() if name in ranges)
    assert ranges["body_blocks.0.conv2"][1] is False  # after a ReLU: unsigned
    assert ranges["head"][1] is True  # luma - 0.5: signed
    with torch.no_grad():
        difference = (aware(batch) - plain(batch)).abs()
    assert 0 < difference.max() < 0.05
    # Each rounding can be switched off (int8_loss_budget, espcn_int8's exact split weights).
    for conv in (m for m in aware.modules() if isinstance(m, Int8AwareConv2d)):
        conv.round_input = conv.round_weight = False
    with torch.no_grad():
        assert torch.allclose(aware(batch), plain(batch))


def test_train_int8_aware_fine_tunes_from_init(image_dir, tmp_path):
    """`vsr train --int8-aware --init W`: the log names the measured input ranges, the run trains
    in fp32, and the checkpoint says it is int8-aware and loads into the plain network."""
    from click.testing import CliRunner

    from vsr.cli import main
    from vsr.models.weights import load_model, shipped_weights

    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", str(image_dir), "--scale", "3", "--epochs", "2", "--batch-size", "8", "--lr", "1e-5",
        "--init", str(shipped_weights(3, "pt")), "--int8-aware", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "int8-aware: input ranges conv1 ±" in result.output
    best = torch.load(out / "espcn_x3.pt", weights_only=False)
    assert best["int8_aware"] is True
    config = torch.load(out / "espcn_x3_last.pt", weights_only=False)["config"]
    assert config["int8_aware"] == "True"
    network = load_model(3, out / "espcn_x3.pt")
    shipped = load_model(3)
    moved = max((a - b).abs().max().item() for a, b in zip(network.parameters(), shipped.parameters()))
    assert 0 < moved < 0.05  # fine-tuned, not retrained


def test_train_int8_aware_without_init_is_one_clear_error(image_dir, tmp_path):
    from click.testing import CliRunner

    from vsr.cli import main

    result = CliRunner().invoke(main, ["train", str(image_dir), "--scale", "3", "--int8-aware",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: --int8-aware fine-tunes a trained network: give its weights with --init")


def test_int8_source_is_the_int8_aware_file_beside_the_model(tmp_path):
    from vsr.backends import int8
    from vsr.models.weights import shipped_weights

    shipped = shipped_weights(3, "onnx")
    assert int8.int8_source(shipped) == shipped.with_name("espcn_x3.int8.onnx")
    assert int8.int8_source(shipped).is_file()
    mine = tmp_path / "mine.onnx"
    shutil.copy(shipped, mine)
    assert int8.int8_source(mine) == mine  # no fine-tune beside it: the model itself
    shutil.copy(shipped.with_name("espcn_x3.int8.onnx"), tmp_path / "mine.int8.onnx")
    assert int8.int8_source(mine) == tmp_path / "mine.int8.onnx"
    assert int8.int8_source(tmp_path / "mine.int8.onnx") == tmp_path / "mine.int8.onnx"
    # The recorded loss follows the network actually quantised.
    assert int8.recorded_loss_db(mine) == int8.recorded_loss_db(shipped)


@needs_nncf
def test_int8_cache_quantises_the_int8_aware_network(tmp_path, monkeypatch):
    from vsr.backends import int8
    from vsr.models.weights import shipped_weights

    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path / "cache"))
    seen = []
    real = int8.quantize_int8
    monkeypatch.setattr(int8, "quantize_int8", lambda onnx, *a, **k: seen.append(onnx) or real(onnx, *a, **k))
    path, cached = int8.cached_int8_model(shipped_weights(3, "onnx"), 3)
    assert not cached and seen == [shipped_weights(3, "onnx").with_name("espcn_x3.int8.onnx")]
    assert path.parent.name.startswith("espcn_x3.int8_")


def test_every_shipped_network_is_recorded_within_the_int8_bound():
    """benchmarks/int8_quality.py --record measured every shipped model at every scale with the
    recipe ``--precision int8`` uses for it (``shipped_recipe``: accuracy control's float
    convolutions included), and every one is within 0.05 dB of fp32 on Set5, so auto considers
    int8 for all of them."""
    from vsr.backends import int8
    from vsr.backends import precision as auto
    from vsr.hardware import int8_arithmetic
    from vsr.models.registry import shipped_models

    records = int8.accuracy_records()
    for info in shipped_models():
        for scale in info.scales:
            onnx = info.weights_path(scale)
            record = records[int8.onnx_digest(int8.int8_source(onnx))]
            assert record["model"] == info.name and record["scale"] == scale
            assert record["recipe"] == int8.shipped_recipe(onnx).tag
            # Within the bound on CPUs with VNNI/AMX (what int8 is for) wherever measured there, and on
            # at least one kind of CPU (realtime-compressed-plus was measured only without VNNI so far;
            # espcn loses more than the bound without it, where auto runs it in fp32).
            losses = {kind: record.get(field) for kind, field in int8.LOSS_FIELD.items()}
            assert losses["vnni"] is None or losses["vnni"] <= int8.MAX_LOSS_DB, (info.name, scale, losses)
            assert any(loss is not None and loss <= int8.MAX_LOSS_DB for loss in losses.values()), \
                (info.name, scale, losses)
            # A network with a global context was measured with each picture's context folded in, as
            # vsr run runs it: the record holds for its folds, not for the network reading its own.
            assert (record.get("measured") == int8.FOLDED) == info.global_context(scale), (info.name, scale)
            here = int8.recorded_loss_db(onnx)
            assert (here is None) == (info.global_context(scale) or losses[int8_arithmetic()] is None)
            if has_nncf():
                assert ("int8" in auto.candidates(onnx)) == (here is not None and here <= int8.MAX_LOSS_DB)


def test_accuracy_control_records_name_convolutions_of_the_network():
    """int8_float_convs.json names, for each network accuracy control had to help, convolutions
    that network has (the bicubic skip not counted), and no other network's recipe changes."""
    openvino = pytest.importorskip("openvino")
    from vsr.backends import int8
    from vsr.models.registry import shipped_models

    records = int8._weights_json(int8.FLOAT_CONVS_RESOURCE)
    assert records, "accuracy control recorded nothing"
    controlled = 0
    for info in shipped_models():
        for scale in info.scales:
            source = int8.int8_source(info.weights_path(scale))
            record = records.get(int8.onnx_digest(source))
            recipe = int8.shipped_recipe(info.weights_path(scale))
            if record is None:
                assert recipe == int8.RECIPE
                continue
            controlled += 1
            convs = int8._learned_convs(openvino.Core().read_model(str(source)))
            assert record["float_convs"] and all(0 <= i < len(convs) for i in record["float_convs"])
            assert recipe.float_convs == tuple(record["float_convs"])
    assert controlled == len(records)  # no record of a network no longer shipped


@needs_nncf
def test_float_convs_leave_those_convolutions_unquantised():
    """``Int8Recipe(float_convs=...)``: no quantiser feeds the convolutions named (so OpenVINO
    runs them float), every other learned convolution stays int8. espcn x2's shipped recipe keeps
    the int8-grid half of its last layer float."""
    from vsr.backends import int8
    from vsr.models.weights import shipped_weights

    onnx = shipped_weights(2, "onnx")
    recipe = int8.shipped_recipe(onnx)
    assert recipe.float_convs == (2,) and "floatc2" in recipe.tag
    model = int8.quantize_int8(int8.int8_source(onnx), int8.calibration_patches(2)[:8], recipe)
    quantised = [conv.input_value(0).get_node().get_type_name() == "FakeQuantize"
                 for conv in int8._learned_convs(model)]
    assert quantised == [True, True, False, True]
    assert "on_grid" in int8._learned_convs(model)[2].get_friendly_name()


@needs_nncf
@pytest.mark.needs_data
@pytest.mark.parametrize("model,scale", [("espcn", 3), ("espcn", 2), ("espcn7", 4), ("balanced", 2),
                                         ("realtime", 3)])
def test_int8_set5_loss_is_what_the_results_record(data_dir, model, scale):
    """Set5 (vsr eval's convention) int8 against fp32 is the loss int8_accuracy.json records for
    this CPU's int8 arithmetic (VNNI/AMX or not), within 0.02 dB (the float parts' summation order
    may differ between CPUs); where it was never measured on this kind of CPU, auto leaves int8 out."""
    from vsr.backends import create_backend, int8
    from vsr.backends.precision import candidates
    from vsr.hardware import int8_arithmetic
    from vsr.evaluate import evaluate
    from vsr.models.weights import shipped_weights

    onnx = shipped_weights(scale, "onnx", model)
    # The record ships beside the weights (what auto reads), not in the benchmarks' results.
    records = json.loads((onnx.parent / "int8_accuracy.json").read_text()).values()
    assert any(record["model"] == model and record["scale"] == scale for record in records)
    recorded = int8.recorded_loss_db(onnx)
    if recorded is None:
        # Never measured on this kind of CPU: auto must not take int8 on another CPU's word.
        assert int8_arithmetic() == "no-vnni" and int8.recorded_loss_db(onnx, arithmetic="vnni") is not None
        assert "int8" not in candidates(onnx)
        return
    scores = {}
    for precision in ("fp32", "int8"):
        engine = create_backend("openvino", scale, precision=precision, model=model)
        try:
            scores[precision] = evaluate(data_dir / "set5", scale, lambda y: engine.upscale_luma(y)[0, 0]).mean(
                "vsr_psnr_db")
        finally:
            engine.close()
    assert abs((scores["fp32"] - scores["int8"]) - recorded) <= 0.02


@needs_nncf
def test_the_backend_says_when_accuracy_control_keeps_convolutions_float():
    """``vsr run --precision int8 --model espcn7`` runs almost all float: its first line says so."""
    from vsr.backends import create_backend, describe

    for model, expected in (("espcn7", "openvino int8, 6 of 7 convolutions float (cpu)"), ("espcn", "openvino int8 (cpu)")):
        engine = create_backend("openvino", 3, precision="int8", model=model)
        try:
            assert describe(engine) == expected
        finally:
            engine.close()


def test_no_accuracy_record_of_a_network_no_longer_shipped():
    """int8_accuracy.json holds records of shipped networks only: after a fine-tune ships, its
    predecessor's record is pruned (benchmarks/int8_quality.py --record --prune)."""
    from vsr.backends import int8
    from vsr.models.registry import shipped_models

    shipped = {int8.onnx_digest(int8.int8_source(info.weights_path(scale)))
               for info in shipped_models() for scale in info.scales}
    stale = {k: (v["model"], v["scale"]) for k, v in int8.accuracy_records().items() if k not in shipped}
    assert not stale


def test_recording_a_candidate_leaves_the_shipped_networks_record(tmp_path):
    """A candidate network (a fine-tune) measured in place of a shipped one adds its record and
    leaves every other record as it was, so restoring the shipped file restores its record too;
    ``prune``, once the shipped file is back, drops the candidate's."""
    import importlib.util

    from tests.conftest import REPO
    from vsr.backends import int8
    from vsr.export import export_onnx
    from vsr.models.registry import get_model

    spec = importlib.util.spec_from_file_location("int8_quality", REPO / "benchmarks" / "int8_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = int8.accuracy_records()
    weights = tmp_path / "weights"  # the package's weights folder, with realtime x3 swapped for a candidate
    shutil.copytree(get_model("realtime").weights_path(3).parent, weights,
                    ignore=shutil.ignore_patterns("*.pt", "*.npz"))
    realtime = weights / "realtime_x3.onnx"
    kept = realtime.rename(tmp_path / "realtime_x3.onnx")
    candidate = export_onnx(get_model("realtime").build(3).eval(), realtime)  # untrained: no shipped file is this
    digest = int8.onnx_digest(candidate)
    assert digest not in shipped

    def row(onnx, loss_db):
        recipe = int8.shipped_recipe(onnx).tag
        return {"model": "realtime", "scale": 3, "onnx": str(onnx), "int8_source": int8.int8_source(onnx).name,
                "fp32_psnr_db": 30.0, "tried": [{"recipe": recipe, "int8_psnr_db": 30.0 - loss_db, "loss_db": loss_db}]}

    module.record_accuracy([row(candidate, 0.07)], "vnni", weights)
    records = json.loads((weights / int8.ACCURACY_RESOURCE).read_text())
    assert records[digest]["loss_db"] == 0.07 and records[digest]["recipe"] == int8.RECIPE.tag
    assert {k: v for k, v in records.items() if k != digest} == shipped
    # The shipped file back and measured again (on a CPU without VNNI): --prune drops the candidate's record.
    kept.replace(realtime)
    module.record_accuracy([row(realtime, 0.01)], "no-vnni", weights, prune=True)
    records = json.loads((weights / int8.ACCURACY_RESOURCE).read_text())
    assert digest not in records and set(records) == set(shipped)
    key = int8.onnx_digest(int8.int8_source(realtime))
    assert records[key]["loss_db_no_vnni"] == 0.01
    assert records[key].get("loss_db") == shipped[key].get("loss_db")  # the other kind of CPU's figure stays
