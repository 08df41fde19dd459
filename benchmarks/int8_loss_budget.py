"""Where int8's Set5 loss comes from, quantiser by quantiser, for the networks that miss 0.05 dB.

    python benchmarks/int8_loss_budget.py [--models espcn espcn7] [--scales 2 3 4]

For each network and scale, the torch simulation of OpenVINO's int8 model
(``vsr/models/int8_aware.py``; it reproduces OpenVINO's Set5 PSNR within 0.001 dB) is run with
one quantiser at a time: each convolution's weights alone, each convolution's input alone,
then all of them. The loss of each against fp32 says which layer a lever must target. Then the
real OpenVINO int8 model with the largest single cost removed (the last convolution kept float,
``Int8Recipe(float_convs=(-1,))``), its Set5 loss and its engine time on a 640x360 plane
(the CPU is named in the output). Networks: the shipped fp32 weights (post-training), not the
int8-aware fine-tunes, so the budget is that of the network itself. Writes
results/int8_loss_budget.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("VSR_TEST_DATA", REPO.parent / "shared" / "data"))


def _set5_psnr_torch(network, scale: int) -> float:
    sys.path.insert(0, str(HERE))
    from ship_model import _set5_psnr

    return _set5_psnr(network, scale, DATA / "set5")


def simulated_losses(model: str, scale: int) -> dict:
    """{quantiser: Set5 dB lost against fp32} with only that quantiser on, and 'all'."""
    import torch

    from vsr.backends.int8 import calibration_patches
    from vsr.models import int8_aware
    from vsr.models.weights import load_model

    reference = _set5_psnr_torch(load_model(scale, model=model), scale)
    patches = torch.from_numpy(calibration_patches(scale))

    def loss_with(weights_of: set[str], inputs_of: set[str]) -> float:
        network = load_model(scale, model=model)
        int8_aware.make_int8_aware(network, [patches], forward=network.forward)
        for name, conv in network.named_modules():
            if isinstance(conv, int8_aware.Int8AwareConv2d):
                conv.round_weight, conv.round_input = name in weights_of, name in inputs_of
        return round(reference - _set5_psnr_torch(network, scale), 4)

    network = load_model(scale, model=model)
    convs = [name for name, m in network.named_modules() if isinstance(m, torch.nn.Conv2d)]
    losses = {}
    for name in convs:
        losses[f"{name} weights"] = loss_with({name}, set())
        losses[f"{name} input"] = loss_with(set(), {name})
    losses["all"] = loss_with(set(convs), set(convs))
    return {"fp32_psnr_db": round(reference, 4), "losses_db": losses, "convs": convs}


def openvino_rows(model: str, scale: int) -> list[dict]:
    """Set5 loss and engine ms (640x360 uint8 plane) of OpenVINO: bf16, all-int8, last conv float."""
    sys.path.insert(0, str(HERE))
    from int8_quality import set5_psnr

    from vsr.backends.int8 import RECIPE, Int8Recipe
    from vsr.backends.openvino import OpenVinoOptions
    from vsr.backends.precision import probe_plane, time_plane_ms
    from vsr.models.weights import shipped_weights

    # A copy alone in a folder: int8 would otherwise quantise the int8-aware file beside it.
    folder = Path(tempfile.mkdtemp())
    try:
        onnx = folder / shipped_weights(scale, "onnx", model).name
        shutil.copy(shipped_weights(scale, "onnx", model), onnx)
        fp32 = set5_psnr(onnx, scale, "fp32")
        plane = probe_plane(360, 640)
        rows = [{"variant": "bf16", "loss_db": round(fp32 - set5_psnr(onnx, scale, "bf16"), 4),
                 "engine_ms": time_plane_ms(onnx, scale, OpenVinoOptions(precision="bf16"), plane, calls=10)}]
        for recipe in (RECIPE, Int8Recipe(float_convs=(-1,), float_precision="bf16"),
                       Int8Recipe(float_convs=(-1,))):
            options = OpenVinoOptions(precision="int8", int8_recipe=recipe)
            rows.append({"variant": recipe.tag, "loss_db": round(fp32 - set5_psnr(onnx, scale, "int8", recipe), 4),
                         "engine_ms": time_plane_ms(onnx, scale, options, plane, calls=10)})
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["espcn", "espcn7"])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "int8_loss_budget")
    args = parser.parse_args()
    if not (DATA / "set5").is_dir():
        raise SystemExit(f"needs Set5 under {DATA} (VSR_TEST_DATA)")
    from vsr.cpu import cpu_identity

    results = []
    for model in args.models:
        for scale in args.scales:
            row = {"model": model, "scale": scale, **simulated_losses(model, scale),
                   "openvino": openvino_rows(model, scale)}
            print(json.dumps(row), flush=True)
            results.append(row)
    document = {"cpu": cpu_identity(), "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(document))
    print(f"wrote {args.out.with_suffix('.md')}")


def _markdown(document: dict) -> str:
    lines = ["# Where int8's Set5 loss comes from (`benchmarks/int8_loss_budget.py`)", "",
             "Each column: Set5 dB lost against fp32 with only that quantiser on (torch simulation of "
             "OpenVINO's int8 model, `vsr/models/int8_aware.py`, shipped fp32 weights, post-training; "
             "the Set5 convention feeds float LR, so the input's rounding counts here, while uint8 "
             "video frames would fall near its grid). The parts add up to more or less than 'all': "
             "errors interact.", ""]
    for row in document["results"]:
        losses = row["losses_db"]
        lines += [f"## {row['model']} x{row['scale']} (fp32 {row['fp32_psnr_db']} dB)", "",
                  "| quantiser | dB lost alone |", "|---|---:|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in losses.items()]
        lines += ["", f"OpenVINO on {document['cpu']} (engine: 640x360 uint8 plane, best of 10):", "",
                  "| variant | Set5 dB lost | engine ms |", "|---|---:|---:|"]
        lines += [f"| {v['variant']} | {v['loss_db']:.4f} | {v['engine_ms']:.2f} |" for v in row["openvino"]]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
