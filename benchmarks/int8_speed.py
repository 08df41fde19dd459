"""Engine time per precision and int8 recipe for each model of the ladder, on this CPU.

    python benchmarks/int8_speed.py [--models espcn espcn7 balanced quality] [--scale 3] [--shipped-only]

One 640x360 uint8 luma plane -> x3 through OpenVINO (uint8 in and out inside the graph, as
`vsr run` calls it), every core, best of ``--calls`` after one warm-up: fp32, bf16 (where
native), int8 with the shipped recipe (convolutions only, less those accuracy control keeps float
for the network: ``int8.shipped_recipe``), and unless ``--shipped-only``: int8 with NNCF's default placement
(additions and the bicubic skip rounded too), and for the tanh networks int8 with their first
and/or last convolution left in bf16. Set5 costs of the same recipes: results/int8_quality.md and
results/int8_recipes_tanh.md. Writes results/int8_speed.{json,md}. Stop other CPU work first.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vsr.backends.int8 import RECIPE, Int8Recipe, shipped_recipe  # noqa: E402

EXTRA_TANH = (Int8Recipe(float_convs=(-1,), float_precision="bf16"),
              Int8Recipe(float_convs=(0, -1), float_precision="bf16"),
              Int8Recipe(float_convs=(0, -1), float_precision="fp32"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["espcn", "espcn7", "balanced", "quality"])
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--shipped-only", action="store_true", help="fp32, bf16 and the shipped int8 recipe only")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "int8_speed")
    args = parser.parse_args()
    import openvino as ov

    from vsr.backends.openvino import OpenVinoOptions, native_bf16
    from vsr.backends.precision import probe_plane, time_plane_ms
    from vsr.hardware import cpu_identity
    from vsr.models.registry import get_model
    from vsr.models.weights import shipped_weights

    luma = probe_plane(360, 640)
    rows = []
    for name in args.models:
        onnx = shipped_weights(args.scale, "onnx", name)
        variants = [("fp32", None)] + ([("bf16", None)] if native_bf16() else [])
        variants.append(("int8", shipped_recipe(onnx)))
        if not args.shipped_only:
            variants.append(("int8", Int8Recipe(quantize_elementwise=True)))
        if get_model(name).arch in ("espcn", "espcn7") and not args.shipped_only:
            variants += [("int8", recipe) for recipe in EXTRA_TANH]
        row = {"model": name, "scale": args.scale, "ms": {}}
        for precision, recipe in variants:
            label = recipe.tag if recipe is not None else precision
            row["ms"][label] = round(time_plane_ms(onnx, args.scale, OpenVinoOptions(precision=precision,
                                                                                     int8_recipe=recipe),
                                                   luma, args.calls), 1)
            print(f"{name} x{args.scale} {label}: {row['ms'][label]} ms", flush=True)
        rows.append(row)
    results = {"cpu": cpu_identity(), "openvino": ov.__version__, "plane": "640x360 uint8 luma", "rows": rows,
               "shipped_recipe": RECIPE.tag}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# OpenVINO engine time per precision and int8 recipe, x{args.scale}, 640x360 luma plane", "",
             f"CPU: {results['cpu']}. OpenVINO {results['openvino']}. Best of {args.calls} calls after a warm-up, "
             f"every core, uint8 in and out inside the graph. `--precision int8` uses `{RECIPE.tag}` "
             "(convolutions int8, the rest float), less the convolutions accuracy control keeps float for a network "
             "(`floatcN`: int8_accuracy_control.md); `int8-all` is NNCF's default placement; `floatc0`/`floatc-1` keep "
             "the first/last convolution in the named float precision. Set5 costs: int8_quality.md, "
             "int8_recipes_tanh.md.", "", "| model | variant | ms/plane | x bf16 speed |", "|---|---|---:|---:|"]
    for row in rows:
        bf16 = row["ms"].get("bf16")
        for label, ms in row["ms"].items():
            lines.append(f"| {row['model']} | {label} | {ms} | {round(bf16 / ms, 2) if bf16 else '-'} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
