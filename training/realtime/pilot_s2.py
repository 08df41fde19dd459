"""Pilot: a stride-2 (half-resolution body) real-time network for compressed video, trained
from scratch with the project's loop, in one of two parameterisations:

  rep    RepSR, the shipped training form (``--no-identity``: without its identity branch, which
         slowed fitting in a one-image probe: 32.83 against 33.58 dB after 300 steps at lr 3e-4,
         x3, s2c32b2);
  plain  the collapsed form (RepSRPlain) trained directly, default PyTorch init, zero tail.

    python training/realtime/pilot_s2.py {rep,plain} OUT MINUTES LR [--scale 3] [--shape C,B] [--init PT]
        [--clean-fraction F] [--soft-prob P] [--noise-prob P] [--exposure-prob P] [--coded-scene-prob P] [--heavy]
        [--margin-px M [--edge-prob P]] [--context H [--codec-stats]] [--presets NAME:W,...]

``--margin-px`` / ``--edge-prob``: ``vsr train --margin-px`` / ``--edge-share`` (``TrainConfig.margin_px``):
each training patch comes with M LR pixels of real picture around it, and the loss sees only the
patch. Why: the stride-2 body reaches 12 LR pixels, so in a 40-pixel patch 84 % of the output
pixels see the zero padding at the patch's edge, a case a whole frame has only along its own
border. The tenth session's runs drew the edge steps from torch's global generator in a class of
this script; the trainer now draws them from its batch generator.

Not part of the package: it registers a model "pilot-s2" for the run only.
"""
import argparse
from pathlib import Path

import torch

from vsr.cli import RECIPE_OPTIONS
from vsr.degradations import CompressedDegradation
from vsr.models import registry
from vsr.models.reparam import RepConv, RepSRPlain
from vsr.train import TrainConfig, train

def main():
    global args
    parser = argparse.ArgumentParser()
    parser.add_argument("form", choices=["rep", "plain"])
    parser.add_argument("out", type=Path)
    parser.add_argument("minutes", type=float)
    parser.add_argument("lr", type=float)
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--shape", default="48,4")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-identity", action="store_true")
    parser.add_argument("--init", type=Path, default=None, help="start from these weights (e.g. the x3 run's)")
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--degradation", default="compressed")
    parser.add_argument("--steps-per-epoch", type=int, default=250)
    parser.add_argument("--clean-fraction", type=float, default=0.25,
                        help="share of patches with a clean bicubic LR, besides the recipe's 'none' codec")
    parser.add_argument("--margin-px", type=int, default=0, help="LR pixels of real context around each patch")
    parser.add_argument("--edge-prob", type=float, default=0.25, help="with --margin-px: share of zero-padded steps")
    parser.add_argument("--loss", choices=["l1-l2", "l2", "l1"], default="l1-l2",
                        help="l1-l2 switches to MSE for the last 20 %% of the run; l2 is MSE (what PSNR measures) "
                        "throughout")
    parser.add_argument("--context", type=int, default=0,
                        help="hidden units of a per-frame global context (reparam.GlobalContext); 0: none")
    parser.add_argument("--codec-stats", action="store_true",
                        help="with --context: the context also reads the input's codec statistics")
    parser.add_argument("--presets", default=None,
                        help="x264 / x265 presets and weights, e.g. superfast:0.4,medium:0.3 "
                        "(CompressedDegradation.video_presets; default: the recipe's)")
    parser.add_argument("--heavy", action="store_true",
                        help="a heavy-compression specialist: x264 / x265 only at CRF 26-40 / 30-42, no clean LR")
    for name, text, _ in RECIPE_OPTIONS:  # vsr train's recipe flags, with the same meaning
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None,
                            help=f"CompressedDegradation.{name}: share of sequences {text} (default: the recipe's)")
    args = parser.parse_args()
    if args.codec_stats and not args.context:
        parser.error("--codec-stats needs --context H")
    changes = {name: getattr(args, name) for name, _, _ in RECIPE_OPTIONS if getattr(args, name) is not None}
    if args.presets:
        changes["video_presets"] = tuple((name, float(weight)) for name, weight in
                                         (item.split(":") for item in args.presets.split(",")))
    if args.heavy:
        # Study: what a rung that never sees clean or lightly coded LR gains on heavily coded input.
        changes.update(codec_weights=(("h264", 0.7), ("hevc", 0.3)), h264_crf=(26, 40), hevc_crf=(30, 42))
    recipe = CompressedDegradation(**changes) if changes else None
    channels, blocks = (int(v) for v in args.shape.split(","))
    options = (("channels", channels), ("blocks", blocks), ("stride", args.stride), ("act", "relu"))
    if args.context:
        options += (("context", args.context),)
    if args.codec_stats:
        options += (("codec_stats", True),)
    
    
    class PilotInfo(registry.ModelInfo):
        def build(self, scale):
            if args.form == "plain":
                net = RepSRPlain(scale, **dict(self.options))
                with torch.no_grad():
                    net.tail.weight.zero_()
                    net.tail.bias.zero_()
                return net
            net = super().build(scale)
            for module in net.modules():
                if isinstance(module, RepConv) and args.no_identity:
                    module.identity = False
            return net
    
    
    name = f"pilot-s2-{args.form}"
    registry.MODELS[name] = PilotInfo(name, "reparam", "pilot", rank=2, options=options, degradation=args.degradation,
                                      receptive_px=2 * (blocks + 2) + 1)
    result = train(TrainConfig(
        data_dirs=(Path("/work/shared/data/train"),), scale=args.scale, out_dir=args.out, epochs=None, model=name,
        sampling="random", steps_per_epoch=args.steps_per_epoch, loss=args.loss, time_budget_s=args.minutes * 60,
        degradation=args.degradation, clean_fraction=args.clean_fraction, batch_size=16, patch_px=40, lr=args.lr,
        min_lr=1e-6, schedule="cosine", ema_decay=0.999, num_threads=1, mixed_precision=False, resume=args.resume,
        init=args.init, warmup_steps=args.warmup_steps, compressed_recipe=recipe, margin_px=args.margin_px,
        edge_share=args.edge_prob))
    print(result)


if __name__ == "__main__":  # the degradation pool workers are spawned: they re-import this file
    main()
