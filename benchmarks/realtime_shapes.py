"""Engine time of candidate shapes for the real-time rungs (``vsr.models.reparam``), against ESPCN.

    python benchmarks/realtime_shapes.py                 # x3, 640x360, every precision OpenVINO has here
    python benchmarks/realtime_shapes.py --scale 2 --shapes s1c32b2 s2c48b4

Times the collapsed (inference) form, the graph every backend runs, with random weights (speed does
not depend on them), on a 640x360 uint8 luma plane: OpenVINO fp32, bf16 where native, and int8
(NNCF, the shipped calibration patches), the best of a few calls after one that compiles. ESPCN is
timed the same way from its shipped ONNX (int8 from the network it quantises). Multiply-adds per
LR pixel are counted from the shape. Results: benchmarks/results/realtime_shapes.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SHAPES = ["s1c32b2", "s1c24b3", "s1c16b4", "s1c32b3", "s1c40b2", "s2c48b4", "s2c64b3", "s2c32b6", "s2c64b4"]


def parse(shape: str) -> dict:
    m = re.fullmatch(r"s([12])c(\d+)b(\d+)(relu)?", shape)
    if not m:
        raise SystemExit(f"{shape!r}: shapes are s<stride>c<channels>b<blocks>[relu], e.g. s1c32b2")
    return {"stride": int(m[1]), "channels": int(m[2]), "blocks": int(m[3]), "act": "relu" if m[4] else "prelu"}


def macs_per_lr_px(o: dict, scale: int) -> float:
    s, c, b = o["stride"], o["channels"], o["blocks"]
    out = (scale * s) ** 2
    return (9 * c + b * 9 * c * c + 9 * c * out) / (s * s) + 25 * scale * scale  # + the bicubic skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--shapes", nargs="+", default=SHAPES)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--out", default=None, help="results stem (default: realtime_shapes_xS)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from vsr.backends.openvino import OpenVinoOptions, native_bf16
    from vsr.backends.precision import time_plane_ms
    from vsr.cpu import cpu_identity
    from vsr.export import export_onnx
    from vsr.models.reparam import RepSR
    from vsr.models.weights import shipped_weights

    width, height = map(int, args.size.split("x"))
    yy, xx = np.mgrid[0:height, 0:width]
    luma = ((xx * 255 // width + 40 * np.sin(yy / 3.0)) % 256).astype(np.uint8)[None]
    precisions = ["fp32"] + (["bf16"] if native_bf16() else []) + ["int8"]
    rows = []

    def time_all(name, onnx, macs):
        row = {"shape": name, "macs_per_lr_px": round(macs)}
        for precision in precisions:
            row[f"{precision}_ms"] = time_plane_ms(onnx, args.scale, OpenVinoOptions(precision=precision), luma,
                                                    calls=args.calls)
        row["best_ms"] = min(row[f"{p}_ms"] for p in precisions)
        row["best_precision"] = min(precisions, key=lambda p: row[f"{p}_ms"])
        rows.append(row)
        print(json.dumps(row), flush=True)

    espcn_macs = 25 * 64 + 9 * 64 * 32 + 9 * 32 * args.scale ** 2
    time_all("espcn", shipped_weights(args.scale, "onnx", "espcn"), espcn_macs)
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            options = parse(shape)
            torch.manual_seed(0)
            net = RepSR(args.scale, **options)
            for p in net.parameters():
                p.data.normal_(0, 0.05)
            onnx = export_onnx(net.collapse(), Path(tmp) / f"{shape}.onnx")
            time_all(shape, onnx, macs_per_lr_px(options, args.scale))
    stem = args.out or f"realtime_shapes_x{args.scale}"
    record = {"machine": cpu_identity(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "plane": args.size, "scale": args.scale, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# Candidate real-time shapes, x{args.scale}, {args.size} luma plane, OpenVINO (ms per plane)", "",
             f"{record['machine']}, {record['date']}, `python benchmarks/realtime_shapes.py --scale {args.scale}`; "
             "random weights, collapsed form; sN: body stride, cN: channels, bN: middle 3x3 layers.", "",
             "| shape | MACs / LR px | " + " | ".join(precisions) + " | best |", "|---|---:|" + "---:|" * len(precisions) + "---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['macs_per_lr_px']} | " + " | ".join(f"{r[p + '_ms']:.1f}" for p in precisions)
                     + f" | {r['best_precision']} {r['best_ms']:.1f} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
