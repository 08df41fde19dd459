"""Training speed of ESPCN on this CPU: useful (output) LR pixels per second, by patch size.

    python benchmarks/train_throughput.py [--scale 3] [--threads 1] [--seconds 10]

Each LR patch carries 4 pixels of context on every side, which the network computes but the
loss never sees: with the paper's 17 px patches that is 25x25 px of work for 17x17 px of
output. This times full training steps (bf16 features and fp32, as `vsr train` runs them:
channels_last, Adam) for the paper's patches (17 px, batch 64) and for larger ones, on
random data (speed does not depend on content). Writes results/train_throughput.json/.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (LR patch px, batch): the paper's patches with vsr train's default batch, then larger patches.
SHAPES = ((17, 64), (17, 16), (24, 16), (32, 16), (48, 8))


def steps_per_second(scale: int, patch_px: int, batch: int, bf16: bool, seconds: float) -> float:
    import torch

    from vsr.models.espcn import ESPCN

    model = ESPCN(scale).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    side = patch_px + 2 * ESPCN.CONTEXT_PX
    x = torch.rand(batch, 1, side, side).contiguous(memory_format=torch.channels_last)
    y = torch.rand(batch, 1, patch_px * scale, patch_px * scale)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            features = model.features(x)
        loss = torch.nn.functional.mse_loss(model.head(features.float()), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for bf16 in (True, False):
        for patch_px, batch in SHAPES:
            rate = steps_per_second(args.scale, patch_px, batch, bf16, args.seconds)
            rows.append({
                "precision": "bf16 features" if bf16 else "fp32",
                "patch_px": patch_px,
                "batch": batch,
                "steps_per_s": round(rate, 2),
                "output_lr_kpx_per_s": round(rate * batch * patch_px**2 / 1e3, 1),
            })
            print(rows[-1], flush=True)
    for row in rows:
        paper = next(r for r in rows if r["precision"] == row["precision"] and (r["patch_px"], r["batch"]) == SHAPES[0])
        row["vs_paper_patches"] = round(row["output_lr_kpx_per_s"] / paper["output_lr_kpx_per_s"], 2)
    result = {
        "scale": args.scale,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "rows": rows,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "train_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Training throughput, ESPCN x{args.scale}, {args.threads} thread(s), torch {torch.__version__}",
        "",
        "| precision | patch (LR px) | batch | steps/s | output LR kpx/s | vs 17 px, batch 64 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['precision']} | {r['patch_px']} | {r['batch']} | {r['steps_per_s']} | {r['output_lr_kpx_per_s']} "
        f"| {r['vs_paper_patches']}x |"
        for r in rows
    ]
    (out / "train_throughput.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
