"""What int8 costs: Set5 PSNR (the `vsr eval` convention) of OpenVINO fp32 against NNCF int8, per scale.

    python benchmarks/int8_quality.py [--models espcn balanced] [--scales 2 3 4] [--recipes all] [--record]
    python benchmarks/int8_quality.py --onnx PATH --scales 3
    python benchmarks/int8_quality.py --write-calibration     # remake the shipped calibration set

For each model and scale: Set5 PSNR of the shipped fp32 ONNX on OpenVINO fp32 and bf16, and of
its int8 model (NNCF, the shipped calibration patches: training images, never Set5), quantised
from the network ``--precision int8`` quantises (``int8.int8_source``: ``NAME_xS.int8.onnx`` where
one ships, else the fp32 ONNX) with the recipe it uses for that network (``int8.shipped_recipe``:
the convolutions accuracy control keeps float, tools/int8_accuracy_control.py). With
``--recipes all``, the older fixed list ``RECIPES`` is tried fastest first and the first within
``--max-loss-db`` (0.05) is marked kept. ``--record`` writes the shipped recipe's loss per network
into vsr/models/weights/int8_accuracy.json, which ``--precision auto`` reads; ``--prune`` drops the records
of networks no longer shipped (without it a candidate measured in place of a shipped network leaves
that network's record alone). Untimed: it may run
beside other work. Writes results/int8_quality.json and .md (or --out).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("VSR_TEST_DATA", REPO.parent / "shared" / "data"))

from vsr.backends.int8 import Int8Recipe  # noqa: E402

#: Roughly fastest first (engine times in results/cpu_levers.md and int8_loss_budget.md): every
#: conv int8, then the last conv kept float (the largest single cost of ESPCN's int8), the first,
#: then both; the float layers in bf16 or fp32.
RECIPES = tuple(Int8Recipe(float_convs=kept, float_precision=floats)
                for kept in ((), (-1,), (0,), (0, -1))
                for floats in ("bf16", "fp32"))
RECIPES = (*RECIPES, Int8Recipe(quantize_elementwise=True))
#: oneDNN's ISA for --without-vnni: AVX-512 without VNNI (Skylake-X's), whose int8 is AVX2's.
NO_VNNI_ISA = "AVX512_CORE"


def write_calibration(out: Path, patches_per_scale: int = 64, patch_px: int = 48, seed: int = 0) -> None:
    """LR luma patches of the training images (t91, bsd200, div2k_subset; Set5 is not among them),
    made as the models were trained: MATLAB bicubic downscale of the HR luma, rounded to uint8."""
    from vsr.color import rgb_to_y
    from vsr.images import degrade, find_images, modcrop, read_rgb

    paths = find_images(DATA / "train")
    if not paths:
        raise SystemExit(f"no training images under {DATA / 'train'}")
    if any("set5" in str(path).lower() for path in paths):
        raise SystemExit("Set5 must not be in the calibration set")
    rng = np.random.default_rng(seed)
    arrays = {}
    for scale in (2, 3, 4):
        chosen = rng.permutation(len(paths))
        patches = []
        for index in chosen:
            hr = modcrop(rgb_to_y(read_rgb(paths[index])), scale)
            lr = np.clip(np.round(degrade(hr / 255.0, scale) * 255), 0, 255).astype(np.uint8)
            if min(lr.shape) < patch_px:
                continue
            y = rng.integers(0, lr.shape[0] - patch_px + 1)
            x = rng.integers(0, lr.shape[1] - patch_px + 1)
            patches.append(lr[y:y + patch_px, x:x + patch_px])
            if len(patches) == patches_per_scale:
                break
        arrays[f"x{scale}"] = np.stack(patches)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB): " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


def set5_psnr(onnx: Path, scale: int, precision: str, recipe: Int8Recipe | None = None,
              model: str | None = None) -> float:
    """Mean Set5 PSNR on Y of OpenVINO running ``onnx`` in ``precision`` (int8: ``int8_source(onnx)``
    quantised by ``recipe``). A shipped ``model`` with a global context runs as ``vsr run`` runs
    it: each image's context folded into a plain network (``RepSRPlain.folded``), quantised alone."""
    from vsr.backends.openvino import OpenVinoBackend, OpenVinoOptions
    from vsr.evaluate import evaluate
    from vsr.models.registry import get_model

    options = OpenVinoOptions(precision=precision, int8_recipe=recipe)
    if model is not None and get_model(model).global_context(scale):
        upscale = _folding_upscaler(model, scale, options)
        report = evaluate(DATA / "set5", scale, upscale, backend_name=f"openvino {precision}, context folded")
        return round(report.mean("vsr_psnr_db"), 4)
    backend = OpenVinoBackend(scale, onnx, options)
    try:
        report = evaluate(DATA / "set5", scale, lambda luma: backend.upscale_luma(luma)[0, 0],
                          backend_name=f"openvino {precision}")
    finally:
        backend.close()
    return round(report.mean("vsr_psnr_db"), 4)


def _folding_upscaler(model: str, scale: int, options):
    """An upscale function that folds each picture's own context into ``model`` first."""
    from vsr.backends.files import onnx_for
    from vsr.backends.openvino import OpenVinoBackend
    from vsr.models.clip_context import measure_context
    from vsr.models.weights import load_model

    network = load_model(scale, model=model)

    def upscale(luma: np.ndarray) -> np.ndarray:
        # The context of the float plane the network gets (Set5's LR is not rounded to 8 bits).
        plane = np.asarray(luma, np.float32).reshape(luma.shape[-2:])
        context = measure_context(network, [plane], peak=1)
        backend = OpenVinoBackend(scale, onnx_for(scale, None, model, context), options)
        try:
            return backend.upscale_luma(luma)[0, 0]
        finally:
            backend.close()

    return upscale


def record_accuracy(rows: list[dict], arithmetic: str, weights: Path = REPO / "vsr" / "models" / "weights", *,
                    prune: bool = False) -> None:
    """Write each row's shipped-recipe loss into ``weights``/int8_accuracy.json, keyed by the int8
    network's digest. Other networks' records stay, so measuring a candidate in place of a shipped
    network and then restoring the shipped file leaves that network's record as it was; ``prune``
    drops the records of networks not in ``weights``."""
    from vsr.backends.int8 import (ACCURACY_RESOURCE, FOLDED, LOSS_FIELD, int8_source, onnx_digest,
                                   shipped_recipe)

    path = weights / ACCURACY_RESOURCE
    records = json.loads(path.read_text()) if path.is_file() else {}
    if prune:  # records of networks no longer shipped (an older fine-tune)
        shipped_digests = {onnx_digest(p) for p in weights.glob("*.onnx")}
        records = {k: v for k, v in records.items() if k in shipped_digests}
    for row in rows:
        recipe = shipped_recipe(row["onnx"]).tag
        shipped = next(t for t in row["tried"] if t["recipe"] == recipe)
        key = onnx_digest(int8_source(row["onnx"]))
        record = {"model": row["model"], "scale": row["scale"], "recipe": recipe, "int8_source": row["int8_source"],
                  "fp32_psnr_db": row["fp32_psnr_db"]}
        if row.get("context_folded"):
            record["measured"] = FOLDED  # holds for the network's folds, not for it reading per frame
        # The other kind of CPU's figure for the same network and recipe stays (see int8.LOSS_FIELD).
        old = records.get(key, {})
        if old.get("recipe") == recipe:
            record.update({f: old[f] for f in LOSS_FIELD.values() if f in old})
        record[LOSS_FIELD[arithmetic]] = shipped["loss_db"]
        records[key] = record
    path.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    print(f"recorded {len(rows)} networks in {path}" + (" (records of networks no longer shipped dropped)"
                                                         if prune else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["espcn"], help="models of the ladder (their shipped ONNX)")
    parser.add_argument("--onnx", type=Path, default=None, help="an ONNX file instead of the shipped one (one scale)")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--max-loss-db", type=float, default=0.05)
    parser.add_argument("--recipes", choices=["shipped", "all"], default="shipped",
                        help="shipped: only the recipe --precision int8 uses for each network (int8.shipped_recipe: "
                             "with the convolutions accuracy control keeps float); all: every recipe of RECIPES")
    parser.add_argument("--write-calibration", action="store_true")
    parser.add_argument("--record", action="store_true",
                        help="write the shipped recipe's loss per ONNX into vsr/models/weights/int8_accuracy.json, "
                             "which --precision auto reads")
    parser.add_argument("--prune", action="store_true",
                        help="with --record: drop the records of networks no longer shipped (once a fine-tune ships; "
                             "a test insists on it)")
    parser.add_argument("--without-vnni", action="store_true",
                        help="on a CPU with AVX-512 VNNI, run OpenVINO as on one without (ONEDNN_MAX_CPU_ISA="
                             f"{NO_VNNI_ISA}) and record the loss as no-vnni: it gave ESPCN x3's 0.0721 dB, as a "
                             "Zen 1 (AVX2 only) did, on a Zen 4 whose VNNI loses 0.0412")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "int8_quality")
    args = parser.parse_args()
    if args.onnx is not None and not args.onnx.is_file():
        parser.error(f"--onnx {args.onnx}: no such file")
    from vsr.hardware import cpuinfo, int8_arithmetic

    arithmetic = int8_arithmetic()
    if args.without_vnni:
        if "avx512f" not in cpuinfo().get("flags", "").split():
            parser.error("--without-vnni needs an AVX-512 CPU (it limits oneDNN to AVX-512 without VNNI)")
        if "openvino" in sys.modules:
            parser.error("--without-vnni must be set before OpenVINO loads")
        # oneDNN reads this when OpenVINO's CPU plugin loads: int8 then sums u8 x s8 pairs in saturating
        # int16 (vpmaddubsw), as AVX2-only CPUs do.
        os.environ["ONEDNN_MAX_CPU_ISA"] = NO_VNNI_ISA
        arithmetic = "no-vnni"
    from vsr.backends.int8 import _shipped_calibration

    if args.write_calibration:
        write_calibration(_shipped_calibration())
        return
    import nncf
    import openvino as ov

    from vsr.backends.int8 import int8_source, shipped_recipe
    from vsr.backends.openvino import native_bf16
    from vsr.hardware import cpu_identity
    from vsr.models.registry import get_model
    from vsr.models.weights import shipped_weights

    rows = []
    for model in ([None] if args.onnx else args.models):
        for scale in args.scales:
            onnx = args.onnx or shipped_weights(scale, "onnx", model=model)
            recipes = RECIPES if args.recipes == "all" else (shipped_recipe(onnx),)
            fp32 = set5_psnr(onnx, scale, "fp32", model=model)
            row = {"model": model or str(args.onnx), "scale": scale, "onnx": str(onnx),
                   "int8_source": int8_source(onnx).name, "fp32_psnr_db": fp32, "tried": [], "kept": None,
                   "context_folded": bool(model and get_model(model).global_context(scale))}
            with_bf16 = native_bf16() and not args.without_vnni
            row["bf16_psnr_db"] = set5_psnr(onnx, scale, "bf16", model=model) if with_bf16 else None
            for recipe in recipes:
                int8 = set5_psnr(onnx, scale, "int8", recipe, model=model)
                loss = round(fp32 - int8, 4)
                row["tried"].append({"recipe": recipe.tag, "int8_psnr_db": int8, "loss_db": loss})
                print(f"{row['model']} x{scale} {recipe.tag} ({row['int8_source']}): fp32 {fp32} dB, "
                      f"int8 {int8} dB, loss {loss} dB", flush=True)
                if loss <= args.max_loss_db and row["kept"] is None:
                    row["kept"] = recipe.tag
            rows.append(row)
    emulated = f" (emulated: ONEDNN_MAX_CPU_ISA={NO_VNNI_ISA})" if args.without_vnni else ""
    results = {"convention": "Set5, Y (BT.601), MATLAB bicubic LR, scale px border shaved (vsr eval)",
               "max_loss_db": args.max_loss_db, "calibration": "shipped vsr/models/weights/calibration_luma.npz "
               "(64 LR luma patches of 48 px per scale from ../shared/data/train; no Set5)",
               "nncf": nncf.__version__, "openvino": ov.__version__, "cpu": cpu_identity(),
               "int8_arithmetic": arithmetic + emulated, "rows": rows}
    if args.record:
        record_accuracy(rows, arithmetic, prune=args.prune)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# int8 (NNCF post-training quantisation, OpenVINO) against fp32: Set5 PSNR on Y", "",
             f"Bound: at most {args.max_loss_db} dB lost per scale. Calibration: {results['calibration']}. "
             f"NNCF {results['nncf']}, OpenVINO {results['openvino']}. Recipes are tried fastest first; "
             "the first within the bound is kept. int8 network: `NAME_xS.int8.onnx` where one ships (espcn: the "
             "bicubic-skip form, tools/espcn_int8.py), else the fp32 ONNX itself; its loss is against the fp32 "
             "ONNX. `floatcN` in a recipe: convolution N kept float by accuracy control "
             "(int8_accuracy_control.md). int8's PSNR depends on the CPU's int8 arithmetic: measured on "
             f"{results['cpu']} ({results['int8_arithmetic']}; without VNNI/AMX products are summed in saturating "
             "int16 and lose more).", "",
             "| model | scale | fp32 dB | recipe | int8 network | int8 dB | lost dB | within bound |",
             "|---|---:|---:|---|---|---:|---:|---|"]
    for row in rows:
        if row["bf16_psnr_db"] is not None:
            lines.append(f"| {row['model']} | x{row['scale']} | {row['fp32_psnr_db']} | (bf16, no int8) | - | "
                         f"{row['bf16_psnr_db']} | {round(row['fp32_psnr_db'] - row['bf16_psnr_db'], 4)} | - |")
        for tried in row["tried"]:
            lines.append(f"| {row['model']} | x{row['scale']} | {row['fp32_psnr_db']} | {tried['recipe']} | "
                         f"{row['int8_source']} | {tried['int8_psnr_db']} | {tried['loss_db']} | "
                         f"{'yes' if tried['loss_db'] <= args.max_loss_db else 'no'} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
