"""Evaluation with the literature's convention.

Crop HR to a multiple of the scale, take its BT.601 luma (uint8, as MATLAB's rgb2ycbcr),
downscale it with antialiased bicubic ``imresize``, super-resolve, round to uint8, and
compute PSNR / SSIM on Y after shaving ``scale`` pixels from each border.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .color import rgb_to_y, to_uint8
from .errors import InputError
from .imresize import imresize
from .images import IMAGE_EXTENSIONS, degrade, find_images, modcrop, read_rgb
from .metrics import psnr, ssim

#: Maps a float32 (H, W) luma in [0, 1] to (H * scale, W * scale) luma in [0, 1].
LumaUpscaler = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ImageScore:
    name: str
    bicubic_psnr_db: float
    bicubic_ssim: float
    vsr_psnr_db: float
    vsr_ssim: float


@dataclass(frozen=True)
class EvalReport:
    scale: int
    backend: str
    images: tuple[ImageScore, ...]
    #: What was scored, for the table's first line: the folder (or file) names given, e.g. "Set5".
    dataset: str = ""

    def mean(self, field: str) -> float:
        return float(np.mean([getattr(row, field) for row in self.images]))

    def to_dict(self) -> dict:
        fields = ("bicubic_psnr_db", "bicubic_ssim", "vsr_psnr_db", "vsr_ssim")
        return {
            "scale": self.scale,
            "backend": self.backend,
            "images": [asdict(row) for row in self.images],
            "mean": {f: round(self.mean(f), 4) for f in fields},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_table(self) -> str:
        width = max(8, *(len(row.name) for row in self.images))
        header = f"{'image':<{width}}  {'bicubic PSNR':>12}  {'SSIM':>6}  {'vsr PSNR':>9}  {'SSIM':>6}"
        what = f"{self.dataset} " if self.dataset else ""
        count = f"{len(self.images)} image{'s' if len(self.images) != 1 else ''}"
        lines = [f"{what}x{self.scale} ({count}), luma (BT.601), {self.scale}px border shaved, backend {self.backend}",
                 header]
        rows = [*self.images, ImageScore("mean", *(self.mean(f) for f in ImageScore.__dataclass_fields__ if f != "name"))]
        for row in rows:
            if row.name == "mean":
                lines.append("-" * len(header))
            lines.append(
                f"{row.name:<{width}}  {row.bicubic_psnr_db:>9.2f} dB  {row.bicubic_ssim:>6.4f}"
                f"  {row.vsr_psnr_db:>6.2f} dB  {row.vsr_ssim:>6.4f}"
            )
        return "\n".join(lines)


def luma_pairs(
    paths: Sequence[Path], scale: int, degradation: str = "bicubic"
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR luma uint8, LR luma float64 in [0, 1]) for each image, per the convention."""
    for path in paths:
        hr = modcrop(rgb_to_y(read_rgb(path)), scale)
        if min(hr.shape) < 5 * scale:
            raise InputError(f"{path}: too small for x{scale} evaluation ({hr.shape[1]}x{hr.shape[0]})")
        yield path.stem, hr, degrade(hr / 255.0, scale, degradation)


def bicubic_uint8(lr: np.ndarray, scale: int) -> np.ndarray:
    """The baseline the convention scores: MATLAB bicubic upscale of the LR luma, rounded to 8 bits."""
    return to_uint8(imresize(lr, scale) * 255)


def upscaled_uint8(upscale_luma: LumaUpscaler, lr: np.ndarray) -> np.ndarray:
    """``upscale_luma`` of the LR luma (given as float32), rounded to 8 bits as the convention scores it."""
    return to_uint8(np.asarray(upscale_luma(lr.astype(np.float32)), dtype=np.float64) * 255)


def evaluate(
    data: Sequence[Path | str] | Path | str,
    scale: int,
    upscale_luma: LumaUpscaler,
    *,
    backend_name: str = "?",
    degradation: str = "bicubic",
) -> EvalReport:
    """Score ``upscale_luma`` and MATLAB bicubic on every image found under ``data``."""
    roots = [data] if isinstance(data, (str, Path)) else list(data)
    paths = find_images(*roots)
    if not paths:
        raise InputError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) found in {', '.join(map(str, roots))}")
    rows = []
    for name, hr, lr in luma_pairs(paths, scale, degradation):
        bicubic = bicubic_uint8(lr, scale)
        sr = upscaled_uint8(upscale_luma, lr)
        rows.append(
            ImageScore(
                name,
                psnr(hr, bicubic, border_px=scale),
                ssim(hr, bicubic, border_px=scale),
                psnr(hr, sr, border_px=scale),
                ssim(hr, sr, border_px=scale),
            )
        )
    return EvalReport(scale, backend_name, tuple(rows), dataset=" + ".join(Path(root).name for root in roots))
