"""Study: how much a previous frame could add on the compressed-clip protocol, before building
an early-fusion (VESPCN-style) variant.

    python training/realtime/temporal_probe.py [--crf 23 30 37]

For each shared clip, as ``benchmarks/compressed.py`` makes it (first 30 frames, area-downscaled
x3, libx264 preset medium): the decoded LR luma's PSNR against the uncompressed LR, and the same
after an oracle fusion that averages frame t with the decoded frame t-1 wherever the
*uncompressed* LR changed by under one level (a perfect static mask, which no network has).
If even that gains little, the previous frame carries little the current one lacks: x264 codes
static blocks of a P-frame as skips, copies of the reference, so both frames hold the same error.
Also printed: the share of static pixels and of pixels the decoder left identical.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import compressed  # noqa: E402
from vsr.metrics import psnr  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "video")
    parser.add_argument("--crf", type=int, nargs="+", default=[23, 30, 37])
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    for clip in sorted(args.data.glob("*.mp4")):
        frames, fps = compressed.clip_frames(clip, args.frames)
        lr = [compressed.downscale_frame(f) for f in frames]
        luma_rows = lr[0].shape[0] * 2 // 3
        original = [f[:luma_rows].astype(np.float64) for f in lr]
        for crf in args.crf:
            decoded, _ = compressed.encode_decode(lr, crf, "medium", fps)
            decoded = [f[:luma_rows].astype(np.float64) for f in decoded]
            alone, fused, static, identical = [], [], [], []
            for t in range(1, len(decoded)):
                still = np.abs(original[t] - original[t - 1]) < 1.0
                alone.append(psnr(original[t], decoded[t]))
                fused.append(psnr(original[t], np.where(still, (decoded[t] + decoded[t - 1]) / 2, decoded[t])))
                static.append(still.mean())
                identical.append(np.mean(decoded[t] == decoded[t - 1]))
            print(f"{clip.name} CRF {crf}: decoded LR {np.mean(alone):.2f} dB, fused with t-1 where static "
                  f"{np.mean(fused):.2f} dB (+{np.mean(fused) - np.mean(alone):.2f}); static {np.mean(static):.0%} "
                  f"of pixels, decoded identical to t-1 {np.mean(identical):.0%}")


if __name__ == "__main__":
    main()
