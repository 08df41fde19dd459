"""Probe: what would a network's x3 output on the compressed protocol gain from two cheap
post-filters? If blurring the output raises PSNR, the network adds detail the original does
not have (over-sharpening); if scaling its detail layer (output - bicubic) by 0.8 or 1.2 raises
it, the network is too bold or too timid at this CRF (a scale is free at run time: the model's
tail convolution can carry it); if blending with neighbouring frames' output raises it, a
network that sees those frames (early fusion) has something to gain.

    python training/realtime/output_probe.py [--model realtime-compressed-plus] [--weights W.pt] [--crf 30]

Same clips, frames, downscale and encode as benchmarks/compressed.py (its functions). Prints,
per clip and on average, the gain over bicubic (dB) of the network's output as is, after a
Gaussian blur of sigma 0.45 / 0.6 / 0.8 / 1.0 HR px, with its detail scaled (``detail x``), and
after averaging each output pixel with the previous (``prev``) or previous and next
(``prev+next``) frames' outputs where the decoded LR barely changed there (|difference| < 4
levels; elsewhere left as is).
"""
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import compressed as C  # noqa: E402  (benchmarks/compressed.py)


def main() -> None:
    import cv2

    from vsr.evaluate import bicubic_uint8
    from vsr.metrics import psnr

    args = C.probe_parser(__doc__).parse_args()
    backend = C.make_upscaler(None if args.weights else args.model, args.weights, "onnxruntime")
    detail_gains = (0.8, 0.9, 1.1, 1.2)
    variants = ["as is", "blur 0.45", "blur 0.6", "blur 0.8", "blur 1.0",
                *(f"detail x{g}" for g in detail_gains), "prev", "prev+next"]
    totals = {v: [] for v in variants}

    def to_u8(x):
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    for clip in C.protocol_clips(args.data):
        refs, lrs = C.coded_clip(clip, args.frames, args.crf)
        srs = [C.upscale_uint8(backend, lr).astype(np.float64) for lr in lrs]
        scores = {v: [] for v in variants}
        bicubic = []
        for t, ref in enumerate(refs):
            sr = srs[t]
            size = (sr.shape[1], sr.shape[0])
            smooth = bicubic_uint8(lrs[t] / 255.0, C.SCALE)
            bicubic.append(psnr(ref, smooth, border_px=C.SCALE))
            for g in detail_gains:
                scores[f"detail x{g}"].append(psnr(ref, to_u8(smooth + g * (sr - smooth)), border_px=C.SCALE))
            scores["as is"].append(psnr(ref, to_u8(sr), border_px=C.SCALE))
            for sigma in (0.45, 0.6, 0.8, 1.0):
                scores[f"blur {sigma}"].append(psnr(ref, to_u8(cv2.GaussianBlur(sr, (0, 0), sigma)), border_px=C.SCALE))
            p, n = max(t - 1, 0), min(t + 1, len(refs) - 1)

            def still(other):
                diff = np.abs(lrs[t].astype(np.int16) - lrs[other].astype(np.int16)) < 4
                return cv2.resize(diff.astype(np.float64), size, interpolation=cv2.INTER_NEAREST)

            m = still(p)
            scores["prev"].append(psnr(ref, to_u8(sr * (1 - m / 2) + srs[p] * m / 2), border_px=C.SCALE))
            m = m * still(n)
            scores["prev+next"].append(psnr(ref, to_u8(sr * (1 - 2 * m / 3) + (srs[p] + srs[n]) * m / 3),
                                            border_px=C.SCALE))
        gains = {v: float(np.mean(scores[v]) - np.mean(bicubic)) for v in variants}
        print(f"{clip.name:28s} " + "  ".join(f"{v} {g:+.3f}" for v, g in gains.items()), flush=True)
        for v in variants:
            totals[v].append(gains[v])
    print(f"{'mean gain over bicubic':28s} " + "  ".join(f"{v} {np.mean(g):+.3f}" for v, g in totals.items()))


if __name__ == "__main__":
    main()
