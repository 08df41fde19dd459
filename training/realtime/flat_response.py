"""Probe: what does a network do to flat input? An upscaler must leave a plateau at any level
as it is; a ReLU network with biases can drift at levels its training rarely saw flat (blown
highlights at 235-255, crushed blacks). Prints, per weights file, output minus input (8-bit
levels) at the centre of a flat 48x64 LR frame, for levels 0-255. No data needed.

    python training/realtime/flat_response.py W.pt [W2.pt ...] [--scale 3]
"""
import argparse
from pathlib import Path

import numpy as np

LEVELS = (0, 16, 64, 128, 192, 220, 235, 245, 250, 254, 255)


def main() -> None:
    from vsr.backends import create_backend

    parser = argparse.ArgumentParser()
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--scale", type=int, default=3)
    args = parser.parse_args()
    print("flat input level:", " ".join(f"{level:5d}" for level in LEVELS))
    for path in args.weights:
        backend = create_backend("onnxruntime", args.scale, weights=path)
        row = []
        for level in LEVELS:
            out = backend.upscale_luma(np.full((1, 1, 48, 64), level / 255, np.float32))[0, 0] * 255
            row.append(float(out[24 * args.scale, 32 * args.scale]) - level)
        print(f"{path}:", " ".join(f"{value:+5.1f}" for value in row), f"| worst {max(map(abs, row)):.1f}")


if __name__ == "__main__":
    main()
