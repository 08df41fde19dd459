"""Score weights on the held-out images a `vsr train --degradation compressed` run picks its
checkpoints with (every 20th training image, degraded by the run's recipe without its scene
changes, seeded as the trainer seeds them), so a run can be compared with weights that trained
on another recipe or held out another set (the held-out LR follows the recipe since the
seventh session):

    python training/realtime/held_out.py W.pt [W.pt ...] [--scale 3] [--noise-prob 0.1] [--data DIR]

Prints the compressed and the clean held-out PSNR (dB) of each, and bicubic's. Not part of the
package: a study script for issue 26.
"""
import argparse
from pathlib import Path

import torch

from vsr.degradations import CompressedDegradation
from vsr.models.weights import load_model
from vsr.train import TrainConfig, _split_images, _torch_upscaler, _validators


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--noise-prob", type=float, default=None,
                        help="the run's CompressedDegradation.noise_prob (default: the recipe's)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data" / "train")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = None if args.noise_prob is None else CompressedDegradation(noise_prob=args.noise_prob)
    config = TrainConfig(data_dirs=(args.data,), scale=args.scale, out_dir=Path("unused"), degradation="compressed",
                         sampling="random",
                         compressed_recipe=recipe)
    _, val_paths = _split_images(config)
    compressed, clean = _validators(config, val_paths)
    print(f"{len(val_paths)} held-out images, x{args.scale}, noise_prob "
          f"{(recipe or CompressedDegradation()).noise_prob}: bicubic {compressed.bicubic_psnr_db:.3f} dB "
          f"compressed, {clean.bicubic_psnr_db:.3f} dB clean")
    for path in args.weights:
        upscale = _torch_upscaler(load_model(args.scale, path), "cpu")
        print(f"{path}: compressed {compressed(upscale):.3f} dB, clean {clean(upscale):.3f} dB", flush=True)


if __name__ == "__main__":
    main()
