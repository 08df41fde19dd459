"""Train rungs of the model ladder side by side on one machine (how the shipped weights were made).

    python tools/train_ladder.py --data DIR --out DIR --device cuda --budget-minutes 7 \
        --runs quality:2 quality:3 quality:4 balanced:3 ...

Each run is one `vsr train` process with the recipe below; on a GPU they share the device
(small networks leave most of an H100 idle when trained alone, so side by side costs each
little). Every command line is written to OUT/commands.txt and each run's output to
OUT/MODEL_xN.out, so a model card can quote exactly what made its weights. A run that
outlives its budget by the grace period is stopped; its best checkpoint so far is kept. The
budget bounds training steps only: loading and degrading the images and validating after each
epoch come on top (on the H100 run of 2026-11-23, nine runs side by side, a 60 s grace killed
every run before its schedule ended), so the grace grows with the budget.
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

#: Per model: the `vsr train` options (besides data, scale, model, out, device, budget).
#: Residual networks: L1 then MSE, Adam with a cosine decay, random 48 px crops sampled on the
#: device; the seven-layer ESPCN is tanh like ESPCN and trains best on MSE throughout.
RECIPES = {
    "espcn": "--sampling random --patch-px 32 --batch-size 128 --loss l2 --lr 1e-3",
    "espcn7": "--sampling random --patch-px 32 --batch-size 128 --loss l2 --lr 1e-3",
    "realtime": "--sampling random --patch-px 48 --batch-size 16 --loss l1-l2 --lr 1e-3",
    "balanced": "--sampling random --patch-px 48 --batch-size 64 --loss l1-l2 --lr 1e-3",
    "quality": "--sampling random --patch-px 48 --batch-size 64 --loss l1-l2 --lr 5e-4",
}
COMMON = "--schedule cosine --min-lr 1e-6 --epochs 100000 --steps-per-epoch 400 --ema 0.999 -q"
#: --int8-aware: fine-tune the shipped weights of each run's model and scale with int8 rounding
#: simulated (the NAME_xS.int8.onnx files), MSE throughout, at a fraction of the training rate (1e-4 for
#: ESPCN moved its validation PSNR down within 400 steps on the H100).
INT8_AWARE_LR = {"espcn": 2e-5, "espcn7": 5e-5, "balanced": 2e-5, "quality": 2e-5}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Training images (HR).")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", nargs="+", required=True, metavar="MODEL:SCALE")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-minutes", type=float, required=True)
    parser.add_argument("--grace-s", type=float, default=None,
                        help="Extra seconds before a run is stopped [default: 120 + 25%% of the budget].")
    parser.add_argument("--extra", default="", help="More `vsr train` options for every run.")
    parser.add_argument("--int8-aware", action="store_true",
                        help="Fine-tune each run's shipped weights for int8 (vsr train --init SHIPPED --int8-aware).")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    procs, lines = [], []
    for run in args.runs:
        model, scale = run.split(":")
        recipe = RECIPES[model]
        if args.int8_aware:
            from vsr.models.weights import shipped_weights

            shipped = shipped_weights(int(scale), "pt", model).relative_to(Path.cwd())
            recipe = re.sub(r"--lr \S+", f"--lr {INT8_AWARE_LR[model]:g}", recipe.replace("--loss l1-l2", "--loss l2"))
            recipe += f" --init {shipped} --int8-aware"
        cmd = (f"vsr train {args.data} --scale {scale} --model {model} --out {args.out} --device {args.device} "
               f"--budget-minutes {args.budget_minutes:g} {recipe} {COMMON} {args.extra}").strip()
        lines.append(cmd)
        argv = [sys.executable, "-m", "vsr", *shlex.split(cmd)[1:]]
        log = open(args.out / f"{model}_x{scale}.out", "w")
        procs.append((run, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log))
    (args.out / "commands.txt").write_text("\n".join(lines) + "\n")
    grace_s = args.grace_s if args.grace_s is not None else 120 + 0.25 * args.budget_minutes * 60
    deadline = time.monotonic() + args.budget_minutes * 60 + grace_s
    failed = 0
    for run, proc, log in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            print(f"{run}: stopped after the grace period", flush=True)
        log.close()
        failed += proc.returncode != 0
        print(f"{run}: exit {proc.returncode}; {(args.out / (run.replace(':', '_x') + '.out')).read_text()[-300:]}",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
