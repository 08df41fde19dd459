"""Network interpolation (ESRGAN's): (1 - alpha) * clean + alpha * compressed fine-tune, both
the same architecture from the same start, scored on the held-out training images exactly as
`vsr train` validates (the compressed recipe with the run's seed, and clean bicubic). Writes
the largest alpha whose clean score stays within --max-clean-drop-db of the clean model.

    python training/balanced-compressed/interpolate.py --scale 3 --clean balanced_x3.pt \
        --tuned runs/balanced-compressed_x3.pt --out balanced-compressed_x3.pt

Why: a 20-minute fine-tune on 75 % compressed patches lost 0.5 dB on the held-out clean images
(0.8 dB on Set5, over the issue's 0.5 dB bound); most of the compressed gain survives a partial
step back towards the clean weights, and the clean loss shrinks faster than the gain. The
bound is on held-out images (Set5 is not looked at) and half the issue's, since Set5 moved
about 1.6x as much as the held-out images in that run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "train"


def main() -> None:
    import torch

    from vsr.images import find_images
    from vsr.checkpoint import read_weights
    from vsr.models.weights import checkpoint_model
    from vsr.train import _torch_upscaler, _Validator

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--clean", type=Path, required=True)
    parser.add_argument("--tuned", type=Path, required=True)
    parser.add_argument("--alphas", default="0.1,0.2,0.3,0.4,0.5,0.7,1.0")
    parser.add_argument("--max-clean-drop-db", type=float, default=0.25)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0, help="the training run's --seed (its validation LR)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    torch.set_num_threads(1)
    paths = find_images(args.data)[::20]  # the images `vsr train` holds out by default
    compressed = _Validator(paths, args.scale, "compressed", args.seed)
    clean = _Validator(paths, args.scale, "bicubic")
    # The checkpoints' own parameters (a re-parameterised network's training form, which is what
    # a fine-tune moved), interpolated; each mix is scored as it runs (collapsed where it collapses).
    a = {k: v.float() for k, v in read_weights(args.clean)["state_dict"].items()}
    b = {k: v.float() for k, v in read_weights(args.tuned)["state_dict"].items()}
    network = checkpoint_model(read_weights(args.tuned)).build(args.scale)
    rows = []
    for alpha in [0.0] + [float(v) for v in args.alphas.split(",")]:
        network.load_state_dict({k: (1 - alpha) * a[k] + alpha * b[k] for k in a})
        runnable = network.collapse() if hasattr(network, "collapse") else network
        upscale = _torch_upscaler(runnable.eval(), torch.device("cpu"))
        rows.append({"alpha": alpha, "val_compressed_psnr_db": round(compressed(upscale), 4),
                     "val_clean_psnr_db": round(clean(upscale), 4)})
        print(json.dumps(rows[-1]), flush=True)
    floor = rows[0]["val_clean_psnr_db"] - args.max_clean_drop_db
    chosen = max((r for r in rows if r["val_clean_psnr_db"] >= floor), key=lambda r: r["alpha"])
    alpha = chosen["alpha"]
    checkpoint = torch.load(args.tuned, map_location="cpu", weights_only=True)
    checkpoint["interpolation"] = {"alpha": alpha, "clean": args.clean.name,
                                   "fine_tuned_val_psnr_db": checkpoint.get("val_psnr_db")}
    checkpoint["val_psnr_db"] = chosen["val_compressed_psnr_db"]
    checkpoint["state_dict"] = {k: (1 - alpha) * a[k] + alpha * b[k] for k in a}
    torch.save(checkpoint, args.out)
    print(f"alpha {alpha}: {args.out}")


if __name__ == "__main__":
    main()
