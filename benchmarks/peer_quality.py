"""Quality against the peer: OpenCV dnn_superres's ESPCN models and vsr's, on Set5, x2/x3/x4.

    python benchmarks/peer_quality.py [--data ../shared/data/set5]

Both run under `vsr eval`'s convention (crop, BT.601 Y, MATLAB bicubic downscale, PSNR/SSIM
on Y with `scale` pixels shaved). OpenCV's `upsample` takes an 8-bit image, so here both
models get the LR luma rounded to 8 bits (as any real picture is), as a grey BGR image for
OpenCV: its YCrCb conversion then hands the network exactly that luma. vsr's row without
rounding is what `vsr eval` prints. Writes results/peer_quality.json/.md.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = Path(os.environ.get("VSR_TEST_DATA", REPO.parent / "shared" / "data"))


def opencv_upscaler(model_path: Path, scale: int):
    import cv2

    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(str(model_path))
    sr.setModel("espcn", scale)

    def upscale(luma: np.ndarray) -> np.ndarray:
        grey = np.clip(np.rint(luma * 255), 0, 255).astype(np.uint8)
        out = sr.upsample(np.ascontiguousarray(np.stack([grey] * 3, axis=-1)))
        return out[..., 0].astype(np.float32) / 255.0

    return upscale


def vsr_upscaler(scale: int, rounded: bool):
    from vsr.backends import create_backend

    backend = create_backend("onnxruntime", scale)

    def upscale(luma: np.ndarray) -> np.ndarray:
        if rounded:
            luma = np.rint(luma * 255) / 255.0
        return np.clip(backend.upscale_luma(luma)[0, 0], 0, 1)

    return upscale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "set5")
    parser.add_argument("--peers", type=Path, default=DATA / "peers" / "opencv_espcn")
    args = parser.parse_args()

    from vsr.evaluate import evaluate

    rows = []
    for scale in (2, 3, 4):
        contenders = {
            "OpenCV dnn_superres ESPCN (8-bit LR)": opencv_upscaler(args.peers / f"ESPCN_x{scale}.pb", scale),
            "vsr ESPCN (8-bit LR)": vsr_upscaler(scale, rounded=True),
            "vsr ESPCN (vsr eval)": vsr_upscaler(scale, rounded=False),
        }
        for name, upscale in contenders.items():
            report = evaluate(args.data, scale, upscale, backend_name=name)
            rows.append({
                "scale": scale,
                "model": name,
                "psnr_db": round(report.mean("vsr_psnr_db"), 2),
                "ssim": round(report.mean("vsr_ssim"), 4),
                "bicubic_psnr_db": round(report.mean("bicubic_psnr_db"), 2),
                "bicubic_ssim": round(report.mean("bicubic_ssim"), 4),
            })
            print(rows[-1], flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "peer_quality.json").write_text(json.dumps({"data": args.data.name, "rows": rows}, indent=2) + "\n")
    lines = [
        f"# Quality on {args.data.name}: vsr against OpenCV dnn_superres ESPCN (PSNR dB / SSIM on Y)",
        "",
        "| scale | bicubic | OpenCV ESPCN | vsr (8-bit LR) | vsr (`vsr eval`) |",
        "|---|---|---|---|---|",
    ]
    for scale in (2, 3, 4):
        by = {r["model"]: r for r in rows if r["scale"] == scale}
        first = next(iter(by.values()))
        cells = [f"{r['psnr_db']:.2f} / {r['ssim']:.4f}" for r in by.values()]
        lines.append(f"| x{scale} | {first['bicubic_psnr_db']:.2f} / {first['bicubic_ssim']:.4f} | " + " | ".join(cells) + " |")
    (out / "peer_quality.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
