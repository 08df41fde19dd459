"""Probe: how much of a padded network's output near the frame's edge is lost to its zero padding,
and would padding the input with picture-like context (mirrored or repeated edge pixels) before the
network, then cropping, win it back?

    python training/realtime/border_probe.py [--model realtime-compressed-plus] [--weights W] [--crf 30]
        [--pad-px 12] [--frames 30]

Same clips, frames, downscale and encode as benchmarks/compressed.py (its functions). The
compressed protocol's LR frames are small (212x120 for the 640x360 clip), so the ring of
``--pad-px`` LR pixels along the edge, where the stride-2 body's 12-pixel reach meets the
padding, holds about a quarter of the pixels. Prints per clip the gain over bicubic (dB) on the
whole frame, in the ring and inside it, for the network as is and with its input padded by
``--pad-px`` pixels (``reflect``, ``edge``) and the output cropped back.
"""
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import compressed as C  # noqa: E402  (benchmarks/compressed.py)


def mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d[mask] ** 2))


def db(m: float) -> float:
    return 10 * np.log10(255.0 ** 2 / m)


def main() -> None:
    from vsr.evaluate import bicubic_uint8

    parser = C.probe_parser(__doc__)
    parser.add_argument("--pad-px", type=int, default=12)
    args = parser.parse_args()
    backend = C.make_upscaler(None if args.weights else args.model, args.weights, "onnxruntime")
    pad, s = args.pad_px, C.SCALE
    variants = ("as is", "reflect", "edge")
    regions = ("frame", "ring", "inside")
    totals = {(v, r): [] for v in variants for r in regions}
    print("| clip | input | frame | ring | inside |\n|---|---|---:|---:|---:|")
    for clip in C.protocol_clips(args.data):
        refs, lrs = C.coded_clip(clip, args.frames, args.crf)
        h, w = refs[0].shape
        shave = np.zeros((h, w), bool)
        shave[s:h - s, s:w - s] = True  # the protocol's border shave
        inside = np.zeros((h, w), bool)
        inside[pad * s:h - pad * s, pad * s:w - pad * s] = True
        masks = {"frame": shave, "ring": shave & ~inside, "inside": inside}
        errors = {(v, r): [] for v in (*variants, "bicubic") for r in regions}
        for ref, lr in zip(refs, lrs):
            outs = {"bicubic": bicubic_uint8(lr / 255.0, s), "as is": C.upscale_uint8(backend, lr)}
            for mode in ("reflect", "edge"):
                big = C.upscale_uint8(backend, np.pad(lr, pad, mode=mode))
                outs[mode] = big[pad * s:-pad * s, pad * s:-pad * s]
            for v, out in outs.items():
                for r, m in masks.items():
                    errors[(v, r)].append(mse(ref, out, m))
        ring_share = masks["ring"].sum() / masks["frame"].sum()
        for v in variants:
            gains = [np.mean([db(a) - db(b) for a, b in zip(errors[(v, r)], errors[("bicubic", r)])]) for r in regions]
            for r, gain in zip(regions, gains):
                totals[(v, r)].append(gain)
            print(f"| {clip.name} (ring {ring_share:.0%}) | {v} | " + " | ".join(f"{g:+.3f}" for g in gains) + " |",
                  flush=True)
    for v in variants:
        print(f"| mean | {v} | " + " | ".join(f"{np.mean(totals[(v, r)]):+.3f}" for r in regions) + " |")

if __name__ == "__main__":
    main()
