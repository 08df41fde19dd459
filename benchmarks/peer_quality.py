"""Quality against the peer: OpenCV dnn_superres's ESPCN models and vsr's, on Set5, x2/x3/x4.

    python benchmarks/peer_quality.py [--data ../shared/data/set5]

Both run under `vsr eval`'s convention (crop, BT.601 Y, MATLAB bicubic downscale, PSNR/SSIM
on Y with `scale` pixels shaved). OpenCV's `upsample` takes an 8-bit image, so here both
models get the LR luma rounded to 8 bits (as any real picture is), as a grey BGR image for
OpenCV: its YCrCb conversion then hands the network exactly that luma. vsr's row without
rounding is what `vsr eval` prints.

It also scores x3 the way a popular PyTorch reimplementation does (its README claims 32.88 dB
on Set5 x3), to show why such numbers are not comparable: Pillow *resizes* the HR image to a
multiple of the scale instead of cropping it (smoothing the reference), and PSNR is taken on
float luma without a border shave. Writes results/peer_quality.json/.md.
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


def resized_reference_psnr_db(data: Path, scale: int, upscale) -> tuple[float, float]:
    """Mean PSNR of bicubic and of ``upscale`` with the HR resized (not cropped), no shave, float Y."""
    from PIL import Image

    from vsr.images import find_images
    from vsr.metrics import psnr

    def luma(rgb: np.ndarray) -> np.ndarray:  # BT.601 studio range, float (not rounded), in [0, 1]
        return (16.0 + (64.738 * rgb[..., 0] + 129.057 * rgb[..., 1] + 25.064 * rgb[..., 2]) / 256.0) / 255.0

    bicubic, ours = [], []
    for path in find_images(data):
        hr = Image.open(path).convert("RGB")
        w, h = hr.width // scale * scale, hr.height // scale * scale
        hr = hr.resize((w, h), Image.BICUBIC)
        lr = hr.resize((w // scale, h // scale), Image.BICUBIC)
        hr_y = luma(np.asarray(hr, dtype=np.float64))
        bicubic.append(psnr(hr_y, luma(np.asarray(lr.resize((w, h), Image.BICUBIC), dtype=np.float64)), peak=1.0))
        ours.append(psnr(hr_y, upscale(luma(np.asarray(lr, dtype=np.float64)).astype(np.float32)), peak=1.0))
    return float(np.mean(bicubic)), float(np.mean(ours))


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
    bicubic_db, vsr_db = resized_reference_psnr_db(args.data, 3, vsr_upscaler(3, rounded=False))
    other = {"scale": 3, "bicubic_psnr_db": round(bicubic_db, 2), "vsr_psnr_db": round(vsr_db, 2)}
    print("resized-reference convention:", other)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "peer_quality.json").write_text(
        json.dumps({"data": args.data.name, "rows": rows, "resized_reference_convention": other}, indent=2) + "\n"
    )
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
    lines += [
        "",
        f"Scored like a popular PyTorch reimplementation (HR resized, not cropped; float Y; no shave), x3:"
        f" bicubic {other['bicubic_psnr_db']:.2f} dB, vsr {other['vsr_psnr_db']:.2f} dB (that project claims 32.88 dB).",
    ]
    (out / "peer_quality.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
