"""Look at it: one frame of a shared clip, downscaled x3 and re-encoded with libx264 (CRF 30),
as bicubic | clean model | compressed-input model | original, side by side.

    python benchmarks/compressed_crops.py --clean espcn --compressed balanced-compressed
    python benchmarks/compressed_crops.py --compressed-weights run/best.pt
    python benchmarks/compressed_crops.py        # no compressed-input model yet: bicubic | clean | original

The LR goes through exactly what benchmarks/compressed.py does to it (area x3, libx264
yuv420p preset medium over the clip's first frames, so the frame shown is inter-coded as in
real video). The crop (``--crop-px`` LR pixels, upscaled x3) is where the original has the
most detail, unless ``--at ROW,COL`` (LR pixels) says otherwise. Luma only: that is what the
models work on. Writes results/compressed_crops.png (``--out``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from compressed import SCALE, clip_frames, downscale_frame, encode_decode, make_upscaler, reference_luma, upscale_uint8

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "video"


def busiest_window(luma: np.ndarray, side_px: int) -> tuple[int, int]:
    """Top-left (LR px) of the ``side_px`` window whose original has the most gradient energy."""
    import cv2

    gy, gx = np.gradient(luma.astype(np.float32))
    energy = cv2.boxFilter(gx * gx + gy * gy, -1, (side_px * SCALE, side_px * SCALE), normalize=True,
                           anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    valid = energy[: luma.shape[0] - side_px * SCALE + 1 : SCALE, : luma.shape[1] - side_px * SCALE + 1 : SCALE]
    row, col = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(row), int(col)


def label(panel: np.ndarray, text: str) -> np.ndarray:
    """The panel with a caption strip above it."""
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("L", (panel.shape[1], 28), 255)
    try:
        font = ImageFont.load_default(size=18)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font = ImageFont.load_default()
    ImageDraw.Draw(strip).text((6, 4), text, fill=0, font=font)
    return np.concatenate([np.asarray(strip), panel])


def main() -> None:
    from vsr.images import write_image
    from vsr.metrics import psnr

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=DATA / "cockatoo_1280x720.mp4")
    parser.add_argument("--frame", type=int, default=30, help="index of the frame shown (an inter-coded one)")
    parser.add_argument("--crf", type=int, default=30)
    parser.add_argument("--crop-px", type=int, default=160, help="side of the LR crop")
    parser.add_argument("--at", help="ROW,COL of the crop's top-left in LR pixels (default: the busiest)")
    parser.add_argument("--clean", default="espcn", help="model name of the clean model")
    parser.add_argument("--clean-weights", type=Path)
    parser.add_argument("--compressed", help="model name of the compressed-input model (none: its panel is left out)")
    parser.add_argument("--compressed-weights", type=Path)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compressed_crops.png")
    args = parser.parse_args()

    frames, fps = clip_frames(args.clip, args.frame + 1)
    decoded, _ = encode_decode([downscale_frame(f) for f in frames], args.crf, "medium", fps)
    original = reference_luma(frames[args.frame])
    lr = decoded[args.frame][: original.shape[0] // SCALE]
    if args.at:
        row, col = (int(v) for v in args.at.split(","))
    else:
        row, col = busiest_window(original, args.crop_px)
    side = args.crop_px
    hr_window = (slice(row * SCALE, (row + side) * SCALE), slice(col * SCALE, (col + side) * SCALE))
    from vsr.evaluate import bicubic_uint8

    panels = [("bicubic", bicubic_uint8(lr / 255.0, SCALE))]
    models = [("clean", args.clean, args.clean_weights)]
    if args.compressed or args.compressed_weights:  # before a compressed-input model exists: 3 panels
        models.append(("compressed", args.compressed, args.compressed_weights))
    for title, name, weights in models:
        backend = make_upscaler(None if weights else name, weights, args.backend)
        try:
            panels.append((f"{weights.stem if weights else name} ({title})", upscale_uint8(backend, lr)))
        finally:
            backend.close()
    reference = original[hr_window]
    columns = []
    for title, image in panels:
        crop = image[hr_window]
        columns.append(label(crop, f"{title}  {psnr(reference, crop):.2f} dB"))
    columns.append(label(reference, "original"))
    gap = np.full((columns[0].shape[0], 6), 255, np.uint8)
    grid = np.concatenate([c for column in columns for c in (column, gap)][:-1], axis=1)
    write_image(args.out, grid)  # 8-bit grey PNG: the models only touch luma
    print(f"{args.out}: {args.clip.name} frame {args.frame}, CRF {args.crf}, LR crop {side}x{side} at "
          f"({row}, {col}), {grid.shape[1]}x{grid.shape[0]} px, {args.out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
