"""Upscaling still images (``vsr upscale``): luma through the network, chroma bicubic."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .backends.base import Backend
from .color import rgb_to_ycbcr, to_uint8, upscale_chroma, ycbcr_to_rgb
from .errors import InputError, OutputError
from .images import IMAGE_EXTENSIONS, find_images, is_image_path, read_image, read_rgb, write_image


#: Images are upscaled in tiles of this many LR pixels a side, so memory stays bounded whatever
#: their size (the whole-image path needs ~16 GB for 8000x8000 at x2: float64 planes and dense
#: resize matrices). Each tile reads TILE_MARGIN_PX more on every side and keeps only its core:
#: ESPCN sees 4 pixels around each output (5x5, 3x3, 3x3 convolutions) and mirrors 4 pixels at
#: its input's edge, bicubic chroma 2, so with 8 the core is what the whole image would give.
TILE_PX = 512
TILE_MARGIN_PX = 8


def upscale_rgb(rgb: np.ndarray, backend: Backend, *, tile_px: int = TILE_PX) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H * s, W * s, 3) uint8 RGB, in overlapping tiles of ``tile_px``."""
    height, width = rgb.shape[:2]
    if height <= tile_px + 2 * TILE_MARGIN_PX and width <= tile_px + 2 * TILE_MARGIN_PX:
        return _upscale_whole(rgb, backend)
    scale, margin = backend.scale, TILE_MARGIN_PX
    out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    for top in range(0, height, tile_px):
        for left in range(0, width, tile_px):
            bottom, right = min(top + tile_px, height), min(left + tile_px, width)
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1, x1 = min(height, bottom + margin), min(width, right + margin)
            tile = _upscale_whole(rgb[y0:y1, x0:x1], backend)
            out[top * scale: bottom * scale, left * scale: right * scale] = tile[
                (top - y0) * scale: (bottom - y0) * scale, (left - x0) * scale: (right - x0) * scale]
    return out


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Transparency is a mask, not detail for the network: bicubic, like chroma."""
    import cv2

    return cv2.resize(alpha, (alpha.shape[1] * scale, alpha.shape[0] * scale), interpolation=cv2.INTER_CUBIC)


def _upscale_whole(rgb: np.ndarray, backend: Backend) -> np.ndarray:
    scale = backend.scale
    ycbcr = rgb_to_ycbcr(rgb)
    luma = backend.upscale_luma(ycbcr[..., 0] / 255.0)[0, 0]
    out_hw = (rgb.shape[0] * scale, rgb.shape[1] * scale)
    out = np.empty(out_hw + (3,), dtype=np.float64)
    out[..., 0] = luma * 255.0
    out[..., 1:] = upscale_chroma(ycbcr, out_hw)
    return to_uint8(ycbcr_to_rgb(out))


def bicubic_rgb(rgb: np.ndarray, scale: int) -> np.ndarray:
    from .imresize import imresize

    return to_uint8(imresize(rgb, scale))


def nearest_rgb(rgb: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


def comparison_figure(panels: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Panels side by side, each under a caption, as the SR papers publish their results."""
    from PIL import Image, ImageDraw, ImageFont

    height = min(p.shape[0] for _, p in panels)
    width = min(p.shape[1] for _, p in panels)
    gap_px, caption_px = 8, max(24, height // 16)
    canvas = Image.new("RGB", (len(panels) * width + (len(panels) - 1) * gap_px, height + caption_px), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=int(caption_px * 0.7))
    for i, (caption, image) in enumerate(panels):
        x = i * (width + gap_px)
        canvas.paste(Image.fromarray(image[:height, :width]), (x, caption_px))
        draw.text((x + width // 2, caption_px // 2), caption, fill="black", font=font, anchor="mm")
    return np.asarray(canvas)


@dataclass(frozen=True)
class UpscaleJob:
    source: Path
    target: Path
    reference: Path | None


def plan_jobs(input_path: Path, output_path: Path, reference: Path | None = None, *, overwrite: bool = False,
              compare: bool = False) -> list[UpscaleJob]:
    """Pair each input image with its output path (and optional reference), checking paths first:
    before anything is written, outputs that exist (an input among them) are refused unless
    ``overwrite``, and two inputs that would write one output (``a.png`` and ``a.jpg``) always."""
    if not input_path.exists():
        raise InputError(f"{input_path}: no such file or directory")
    if input_path.is_dir():
        sources = find_images(input_path)
        if not sources:
            raise InputError(f"{input_path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        if output_path.exists() and not output_path.is_dir():
            raise OutputError(f"{output_path}: exists and is not a folder (INPUT is a folder)")
        try:
            output_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{output_path}: cannot create folder ({exc.strerror})") from None
        targets = [output_path / source.relative_to(input_path).with_suffix(".png") for source in sources]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
    else:
        if not is_image_path(input_path):
            raise InputError(f"{input_path}: not an image (expected {', '.join(IMAGE_EXTENSIONS)})")
        sources = [input_path]
        targets = [output_path / f"{input_path.stem}.png" if output_path.is_dir() else output_path]
    refs: list[Path | None] = [None] * len(sources)
    if reference is not None:
        if not reference.exists():
            raise InputError(f"{reference}: no such reference file or folder")
        if reference.is_dir():
            refs = [_match(reference, source.relative_to(input_path)) for source in sources]
        elif len(sources) == 1:
            refs = [reference]
        else:
            raise InputError("--reference must be a folder when INPUT is a folder")
    jobs = [UpscaleJob(s, t, r) for s, t, r in zip(sources, targets, refs)]
    _check_targets(jobs, overwrite=overwrite, compare=compare)
    return jobs


def _check_targets(jobs: list[UpscaleJob], *, overwrite: bool, compare: bool) -> None:
    written: dict[Path, Path] = {}
    for job in jobs:
        for target in [job.target] + ([compare_path(job.target)] if compare else []):
            key = Path(os.path.abspath(target))
            if key in written:
                raise OutputError(f"{written[key]} and {job.source} would both be written to {target}; "
                                  "rename one of them")
            written[key] = job.source
            if target.is_dir():
                raise OutputError(f"{target}: is a directory")
            if target.exists() and not overwrite:
                same = any(os.path.samefile(target, j.source) for j in jobs if j.source.exists())
                what = "is an input image" if same else "already exists"
                raise OutputError(f"{target}: {what} (use --overwrite to replace it)")


def _match(folder: Path, relative: Path) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        candidate = folder / relative.with_suffix(ext)
        if candidate.is_file():
            return candidate
    return None


def compare_path(target: Path) -> Path:
    return target.with_name(f"{target.stem}_compare.png")


def run_upscale(
    jobs: list[UpscaleJob],
    backend: Backend,
    *,
    compare: bool = False,
    on_done: Callable[[UpscaleJob, str], None] | None = None,
) -> Iterator[UpscaleJob]:
    """Upscale each job's image, writing the output (and its comparison figure) atomically."""
    from .metrics import psnr

    scale = backend.scale
    for job in jobs:
        rgb, alpha, notes = read_image(job.source)
        if min(rgb.shape[:2]) < 5:
            raise InputError(f"{job.source}: too small ({rgb.shape[1]}x{rgb.shape[0]}); at least 5x5 pixels")
        sr = upscale_rgb(rgb, backend)
        if alpha is not None:
            if job.target.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
                notes.append(f"transparency dropped: {job.target.suffix} files have none (use .png)")
            else:
                sr = np.concatenate([sr, upscale_alpha(alpha, scale)[..., None]], axis=2)
        write_image(job.target, sr)
        sr = sr[..., :3]
        note = "; ".join(notes)
        if compare:
            bicubic = bicubic_rgb(rgb, scale)
            panels = [("nearest", nearest_rgb(rgb, scale)), ("bicubic", bicubic), ("vsr", sr)]
            if job.reference is not None:
                ref = read_rgb(job.reference)
                h, w = min(ref.shape[0], sr.shape[0]), min(ref.shape[1], sr.shape[1])
                db_bicubic = psnr(ref[:h, :w], bicubic[:h, :w], border_px=scale)
                db_vsr = psnr(ref[:h, :w], sr[:h, :w], border_px=scale)
                panels[1] = (f"bicubic {db_bicubic:.2f} dB", bicubic)
                panels[2] = (f"vsr {db_vsr:.2f} dB", sr)
                panels.append(("original", ref))
                note = "; ".join(notes + [f"RGB PSNR vs reference: bicubic {db_bicubic:.2f} dB, vsr {db_vsr:.2f} dB"])
            write_image(compare_path(job.target), comparison_figure(panels))
        if on_done is not None:
            on_done(job, note)
        yield job
