"""Probe: where in the picture does a network gain or lose against bicubic? On one clip of the
compressed protocol (benchmarks/compressed.py's frames, downscale and encode), pixels are binned
by the original's local texture (standard deviation of luma in a Gaussian window of sigma 2 px:
quartiles, then the top 10 %), and each bin's gain over bicubic is reported (dB, pooled squared
error over the clip's frames). For the flattest bin it also gives the signed mean error and where
the original's levels lie, which is how a network's drift on plateaus shows (flat_response.py).

    python training/realtime/gain_by_texture.py CLIP NAME=W.pt [NAME=W.pt ...] [--crf 30]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import compressed as C  # noqa: E402  (benchmarks/compressed.py)

#: Upper edges of the texture bins, as quantiles of the original's local texture.
BIN_QUANTILES = (0.25, 0.5, 0.75, 0.9)


def local_texture(luma: np.ndarray) -> np.ndarray:
    import cv2

    x = luma.astype(np.float32)
    mean = cv2.GaussianBlur(x, (0, 0), 2)
    return np.sqrt(np.maximum(cv2.GaussianBlur(x * x, (0, 0), 2) - mean * mean, 0))


def main() -> None:
    from vsr.evaluate import bicubic_uint8

    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path)
    parser.add_argument("weights", nargs="+", help="NAME=PATH")
    parser.add_argument("--crf", type=int, default=30)
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    frames, fps = C.clip_frames(args.clip, args.frames)
    refs = [C.reference_luma(f) for f in frames]
    decoded, _ = C.encode_decode([C.downscale_frame(f) for f in frames], args.crf, "medium", fps)
    lrs = [buf[: refs[0].shape[0] // C.SCALE] for buf in decoded]
    b = C.SCALE

    def inner(images):
        return np.concatenate([np.asarray(x, np.float64)[b:-b, b:-b].ravel() for x in images])

    reference = inner(refs)
    texture = inner([local_texture(r) for r in refs])
    edges = np.quantile(texture, BIN_QUANTILES)
    bins = np.searchsorted(edges, texture, side="right")
    bicubic_sq = (inner([bicubic_uint8(lr / 255.0, C.SCALE) for lr in lrs]) - reference) ** 2
    flat = bins == 0
    print(f"{args.clip.name}, x{C.SCALE}, CRF {args.crf}, {len(refs)} frames; texture bin edges (levels):",
          " ".join(f"{e:.1f}" for e in edges))
    print("original's levels in the flattest bin (1/25/50/75/99 %):", np.percentile(reference[flat], [1, 25, 50, 75, 99]))
    print("gain over bicubic, dB, by texture bin: flattest 25 % | 25-50 | 50-75 | 75-90 | top 10 % || all | "
          "flattest bin: signed mean error, levels")
    for spec in args.weights:
        name, _, path = spec.partition("=")
        backend = C.make_upscaler(None, Path(path), "onnxruntime")
        error = inner([C.upscale_uint8(backend, lr) for lr in lrs]) - reference
        sq = error ** 2
        gains = [10 * np.log10(bicubic_sq[bins == k].mean() / sq[bins == k].mean()) for k in range(len(BIN_QUANTILES) + 1)]
        print(f"{name:12s}", " ".join(f"{g:+6.2f}" for g in gains),
              f"|| {10 * np.log10(bicubic_sq.mean() / sq.mean()):+.2f} | {error[flat].mean():+.2f}")


if __name__ == "__main__":
    main()
