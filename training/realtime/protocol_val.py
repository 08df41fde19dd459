"""Does a protocol-like held-out score rank checkpoints as the real clips do?

Held-out training images (every 20th, as vsr train holds out; never the protocol's clips), each
a 10-frame pan (2 HR px per frame), area-downscaled x3, libx264 preset medium at CRF 23/30/37
(as benchmarks/compressed.py does to the real clips), upscaled; PSNR on Y, 3 px shaved; gain over
MATLAB bicubic. One-off study (issue 26), beside the shipped realtime-compressed-plus:

    python training/realtime/protocol_val.py WEIGHTS.pt [WEIGHTS.pt ...]
"""
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import compressed as C  # noqa: E402
from vsr.color import rgb_to_y  # noqa: E402
from vsr.evaluate import bicubic_uint8  # noqa: E402
from vsr.images import find_images, read_rgb  # noqa: E402
from vsr.metrics import psnr  # noqa: E402

S = 3
FRAMES, STEP, SIDE = 10, 2, 300
methods = [("bicubic", None), ("plus", C.make_upscaler("realtime-compressed-plus", None, "onnxruntime"))]
for w in sys.argv[1:]:
    methods.append((Path(w).stem, C.make_upscaler(None, Path(w), "onnxruntime")))
paths = find_images(Path(__file__).resolve().parents[3] / "shared" / "data" / "train")[::20]
gains = {crf: {name: [] for name, _ in methods} for crf in (23, 30, 37)}
for path in paths:
    y = rgb_to_y(read_rgb(path))
    side = min(SIDE, (min(y.shape) - STEP * FRAMES) // 6 * 6)
    hrs = [y[STEP * t: STEP * t + side, STEP * t: STEP * t + side] for t in range(FRAMES)]
    lrs = []
    for hr in hrs:
        lr = cv2.resize(hr, (side // S, side // S), interpolation=cv2.INTER_AREA)
        h, w = lr.shape
        lrs.append(np.concatenate([lr, np.full((h // 2, w), 128, np.uint8)]))
    for crf in gains:
        decoded, _ = C.encode_decode(lrs, crf, "medium", 30.0)
        for name, backend in methods:
            scores = []
            for hr, buf in zip(hrs, decoded):
                lr = buf[: side // S]
                sr = bicubic_uint8(lr / 255.0, S) if backend is None else C.upscale_uint8(backend, lr)
                scores.append(psnr(hr, sr, border_px=S))
            gains[crf][name].append(np.mean(scores))
for crf in gains:
    base = np.mean(gains[crf]["bicubic"])
    print(f"CRF {crf}: " + ", ".join(f"{n} {np.mean(v) - base:+.3f}" for n, v in gains[crf].items() if n != "bicubic")
          + f"  (bicubic {base:.2f} dB, {len(paths)} images)")
