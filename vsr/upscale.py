"""Upscaling still images (``vsr upscale``): luma through the network, chroma bicubic."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .backends.base import Backend
from .color import rgb_to_ycbcr, to_uint8, ycbcr_to_rgb
from .errors import InputError, OutputError
from .imresize import _weight_matrix
from .images import (
    IMAGE_EXTENSIONS,
    Picture,
    find_images,
    image_size,
    is_image_path,
    read_picture,
    read_rgb,
    write_image,
    write_png_rows,
)


#: LR tile side: big enough that the network runs efficiently, small enough that a tile's float
#: planes (and the dense weight matrix imresize builds for each tile size) stay a few tens of MB.
TILE_PX = 512
#: LR pixels of context around each tile beyond the network's receptive radius (the backend's
#: ``receptive_px``: ESPCN sees 4 pixels around each output pixel, the residual rungs up to 19).
#: Bicubic chroma needs 2; 4 makes tiled output equal to whole-image output up to float
#: rounding: no seams.
OVERLAP_MARGIN_PX = 4


def overlap_px_for(backend: Backend) -> int:
    """Context around each tile for ``backend``'s network (8 for ESPCN)."""
    return backend.receptive_px + OVERLAP_MARGIN_PX


@lru_cache(maxsize=64)
def _taps(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """imresize's bicubic weights as (out_len, taps) source indices and weights: the band of its
    dense (out_len, in_len) matrix, mirrored borders included."""
    matrix = _weight_matrix(in_len, out_len, out_len / in_len, True)
    rows, cols = np.nonzero(matrix)
    position = np.arange(len(rows)) - np.searchsorted(rows, rows)
    indices = np.zeros((out_len, position.max() + 1), dtype=np.intp)
    weights = np.zeros((out_len, position.max() + 1))
    indices[rows, position], weights[rows, position] = cols, matrix[rows, cols]
    return indices, weights


def bicubic_up(image: np.ndarray, out_hw: tuple[int, int], dtype=np.float64) -> np.ndarray:
    """``imresize(image, output_shape=out_hw)`` for enlarging, applied as a band of 4-6 taps: on a
    tile the dense matrix product cost as much time as the network itself. ``dtype``: what it is
    computed in (float32: a quarter of the time on a 12-megapixel photo, within 1e-4 levels)."""
    data = np.asarray(image, dtype=dtype)
    for axis in (0, 1):  # rows first, as imresize does with equal scales
        indices, weights = _taps(data.shape[axis], out_hw[axis])
        weights = weights.astype(dtype, copy=False)
        shape = [1] * data.ndim
        shape[axis] = out_hw[axis]
        result = np.take(data, indices[:, 0], axis=axis) * weights[:, 0].reshape(shape)
        for k in range(1, indices.shape[1]):
            result += np.take(data, indices[:, k], axis=axis) * weights[:, k].reshape(shape)
        data = result
    return data


#: What a tile's output is computed in. float32: the network's luma is float32 already, and at the
#: output's size float64 made chroma's bicubic enlargement and the colour conversion cost twice the
#: network (a 12-megapixel photo at x3: 8.1 s against 4.3); rounding to 8 bits moves about one value
#: in 100,000 by one level (a .5 tie), 16 bits keep their precision (float32 holds 24 bits).
TILE_DTYPE = np.float32


def _upscale_tile(rgb: np.ndarray, alpha: np.ndarray | None, peak: int, backend: Backend):
    """One tile, (h, w, 3) uint8/uint16 -> float32 RGB (h*s, w*s, 3) and alpha in [0, 255], unrounded."""
    scale = backend.scale
    ycbcr = rgb_to_ycbcr(rgb * (255.0 / peak) if peak != 255 else rgb).astype(TILE_DTYPE)
    out_hw = (rgb.shape[0] * scale, rgb.shape[1] * scale)
    out = np.empty(out_hw + (3,), dtype=TILE_DTYPE)
    out[..., 0] = backend.upscale_luma(ycbcr[..., 0] / TILE_DTYPE(255))[0, 0] * TILE_DTYPE(255)
    out[..., 1:] = bicubic_up(ycbcr[..., 1:], out_hw, TILE_DTYPE)
    # Alpha is a mask, not detail: bicubic, like chroma.
    alpha_out = None if alpha is None else bicubic_up(alpha * (255.0 / peak), out_hw, TILE_DTYPE)
    return ycbcr_to_rgb(out, TILE_DTYPE), alpha_out


def _quantise(values: np.ndarray, peak: int) -> np.ndarray:
    if peak == 255:
        return to_uint8(values)
    return np.clip(np.rint(values * (peak / 255.0)), 0, peak).astype(np.uint16)


def upscale_strips(
    picture: Picture, backend: Backend, *, tile_px: int = TILE_PX, overlap_px: int | None = None
) -> Iterator[np.ndarray]:
    """Upscale in overlapping tiles, yielding the output a strip of rows at a time, top to bottom:
    (rows, W * s, 3 or 4) in the picture's dtype (RGBA when it has alpha). Memory stays bounded
    by the input and one strip, whatever the image size."""
    scale, peak = backend.scale, picture.peak
    overlap_px = overlap_px_for(backend) if overlap_px is None else overlap_px
    height, width = picture.height, picture.width
    if overlap_px >= max(height, width):
        # Every tile's overlap would be the whole picture (a network with a global context reaches
        # ``WHOLE_PICTURE_PX``): one tile does that work once (memory grows with the picture).
        tile_px = max(height, width)
    channels = 3 if picture.alpha is None else 4
    for y0 in range(0, height, tile_px):
        y1 = min(y0 + tile_px, height)
        strip = np.empty(((y1 - y0) * scale, width * scale, channels), dtype=picture.rgb.dtype)
        for x0 in range(0, width, tile_px):
            x1 = min(x0 + tile_px, width)
            # The context is clamped at the image's edges, where the network and the bicubic
            # filter mirror the tile exactly as they would mirror the whole image.
            ys, ye = max(0, y0 - overlap_px), min(height, y1 + overlap_px)
            xs, xe = max(0, x0 - overlap_px), min(width, x1 + overlap_px)
            alpha = None if picture.alpha is None else picture.alpha[ys:ye, xs:xe]
            rgb, alpha_out = _upscale_tile(picture.rgb[ys:ye, xs:xe], alpha, peak, backend)
            rows = slice((y0 - ys) * scale, (y1 - ys) * scale)
            cols = slice((x0 - xs) * scale, (x1 - xs) * scale)
            target = strip[:, x0 * scale : x1 * scale]
            target[..., :3] = _quantise(rgb[rows, cols], peak)
            if alpha_out is not None:
                target[..., 3] = _quantise(alpha_out[rows, cols], peak)
        yield strip


def upscale_picture(picture: Picture, backend: Backend, *, tile_px: int = TILE_PX) -> np.ndarray:
    """The whole output as one array (for small images, figures and formats written whole)."""
    return np.concatenate(list(upscale_strips(picture, backend, tile_px=tile_px)), axis=0)


def bicubic_rgb(rgb: np.ndarray, scale: int) -> np.ndarray:
    return to_uint8(bicubic_up(rgb, (rgb.shape[0] * scale, rgb.shape[1] * scale)))


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


#: Output formats by extension; a folder's outputs are always PNG.
OUTPUT_FORMATS = (".png", ".jpg", ".jpeg", ".bmp")


def plan_jobs(
    input_path: Path,
    output_path: Path,
    reference: Path | None = None,
    *,
    overwrite: bool = False,
    compare: bool = False,
    scale: int | None = None,
) -> list[UpscaleJob]:
    """Pair each input image with its output path (and optional reference), checking everything that
    can be checked before the first file is written: paths, headers, sizes, and that no output
    replaces an input or another output (and no existing file without ``overwrite``)."""
    if not input_path.exists():
        raise InputError(f"{input_path}: no such file or directory")
    if input_path.is_dir():
        sources = find_images(input_path)
        if output_path.resolve() != input_path.resolve() and output_path.resolve().is_relative_to(
            input_path.resolve()
        ):
            # An output folder inside the input folder: its earlier results are not new inputs.
            sources = [s for s in sources if not s.resolve().is_relative_to(output_path.resolve())]
        if not sources:
            raise InputError(f"{input_path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        if output_path.exists() and not output_path.is_dir():
            raise OutputError(f"{output_path}: exists and is not a folder (INPUT is a folder)")
        targets = [output_path / source.relative_to(input_path).with_suffix(".png") for source in sources]
    else:
        if not is_image_path(input_path):
            raise InputError(f"{input_path}: not an image (expected {', '.join(IMAGE_EXTENSIONS)})")
        sources = [input_path]
        targets = [output_path / f"{input_path.stem}.png" if output_path.is_dir() else output_path]
        suffix = targets[0].suffix.lower()
        if suffix and suffix not in OUTPUT_FORMATS:
            raise OutputError(f"{targets[0]}: unsupported image extension {suffix!r} (use .png, .jpg or .bmp)")
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
    _check_outputs(jobs, overwrite=overwrite, compare=compare)
    for job in jobs:
        _check_source(job.source)
        if job.reference is not None and scale is not None:
            check_reference_size(job.source, image_size(job.source), job.reference, image_size(job.reference), scale)
    if not input_path.is_dir():
        parent = jobs[0].target.parent
        if not parent.is_dir():
            raise OutputError(f"{jobs[0].target}: directory {parent} does not exist")
        return jobs
    try:
        for folder in sorted({job.target.parent for job in jobs}):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{exc.filename}: cannot create folder ({exc.strerror})") from None
    return jobs


def _key(path: Path) -> str:
    # realpath: a symlinked folder or file is the same place under another name.
    return os.path.normcase(os.path.realpath(path))


def _check_outputs(jobs: list[UpscaleJob], *, overwrite: bool, compare: bool) -> None:
    """Refuse before writing anything: two outputs on one path, an output on another job's input
    or on a reference always (that would lose data whatever the user asked); an existing file,
    the job's own input included, unless ``overwrite``."""
    sources = {_key(job.source): job for job in jobs}
    references = {_key(job.reference) for job in jobs if job.reference is not None}
    written: dict[str, Path] = {}
    existing: list[tuple[Path, UpscaleJob]] = []
    for job in jobs:
        for target in [job.target, compare_path(job.target)] if compare else [job.target]:
            key = _key(target)
            if key in written:
                raise OutputError(f"{written[key]} and {job.source} would both be written to {target}; "
                                  "rename one of them")
            written[key] = job.source
            if key in references or sources.get(key, job) is not job:
                raise OutputError(f"{target}: is an input and would be replaced by the output of {job.source}")
            if target.is_dir():
                raise OutputError(f"{target}: is a directory")
            if os.path.lexists(target):
                existing.append((target, job))
    if existing and not overwrite:
        target, job = existing[0]
        more = f" (and {len(existing) - 1} more outputs)" if len(existing) > 1 else ""
        if target.exists() and os.path.samefile(target, job.source):
            raise OutputError(f"{target}: is the input itself{more}; use --overwrite (-y) to replace it")
        raise OutputError(f"{target}: exists{more}; use --overwrite (-y) to replace it")


def _check_source(source: Path) -> None:
    width, height = image_size(source)
    if min(width, height) < 5:
        raise InputError(f"{source}: too small ({width}x{height}); at least 5x5 pixels")


def check_reference_size(source: Path, source_wh: tuple[int, int], reference: Path, reference_wh: tuple[int, int],
                         scale: int) -> None:
    """Refuse a reference that is not the HR of ``source`` at ``scale``: it must be the upscale's
    size, or up to ``scale - 1`` pixels more (an HR not a multiple of the scale, cropped to one as
    ``vsr eval`` does before making its LR). Anything else would compare misaligned pictures."""
    (width, height), (ref_w, ref_h) = source_wh, reference_wh
    if (ref_w // scale, ref_h // scale) != (width, height):
        raise InputError(f"{reference}: the reference is {ref_w}x{ref_h}, but {source.name} ({width}x{height}) "
                         f"upscaled x{scale} is {width * scale}x{height * scale}; give the original the input was "
                         f"made from (its size up to {scale - 1} pixels more, as vsr eval crops it) or the right --scale")


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
    tile_px: int = TILE_PX,
) -> Iterator[UpscaleJob]:
    """Upscale each job's image, writing the output (and its comparison figure) atomically.

    PNG outputs keep alpha (RGBA) and 16 bits (a 16-bit PNG/TIFF in gives a 16-bit PNG out) and
    are streamed a strip at a time; JPEG and BMP are 8-bit RGB, written whole.
    """
    from .metrics import psnr

    scale = backend.scale
    for job in jobs:
        picture = read_picture(job.source)
        min_px = backend.min_input_px
        if min(picture.rgb.shape[:2]) < min_px:
            raise InputError(f"{job.source}: too small ({picture.width}x{picture.height}); "
                             f"at least {min_px}x{min_px} pixels")
        out_w, out_h = picture.width * scale, picture.height * scale
        streamed = job.target.suffix.lower() in (".png", "") and not compare
        if streamed:
            write_png_rows(job.target, out_w, out_h, upscale_strips(picture, backend, tile_px=tile_px))
            if on_done is not None:
                on_done(job, "")
            yield job
            continue
        sr_full = upscale_picture(picture, backend, tile_px=tile_px)
        if job.target.suffix.lower() in (".png", ""):
            write_png_rows(job.target, out_w, out_h, [sr_full])
        else:
            write_image(job.target, _as_uint8(sr_full[..., :3]))
        note = ""
        if compare:
            sr = _as_uint8(sr_full[..., :3])
            rgb = _as_uint8(picture.rgb)
            bicubic = bicubic_rgb(rgb, scale)
            panels = [("nearest", nearest_rgb(rgb, scale)), ("bicubic", bicubic), ("vsr", sr)]
            if job.reference is not None:
                ref = read_rgb(job.reference)
                # After EXIF rotation, which the header check could not see.
                check_reference_size(job.source, (picture.width, picture.height), job.reference,
                                     (ref.shape[1], ref.shape[0]), scale)
                cropped = ref.shape[:2] != sr.shape[:2]
                ref = ref[: sr.shape[0], : sr.shape[1]]  # modcrop: vsr eval's alignment
                db_bicubic = psnr(ref, bicubic, border_px=scale)
                db_vsr = psnr(ref, sr, border_px=scale)
                panels[1] = (f"bicubic {db_bicubic:.2f} dB", bicubic)
                panels[2] = (f"vsr {db_vsr:.2f} dB", sr)
                panels.append(("original", ref))
                note = f"RGB PSNR vs reference: bicubic {db_bicubic:.2f} dB, vsr {db_vsr:.2f} dB"
                if cropped:
                    note += (f" (reference cropped to {ref.shape[1]}x{ref.shape[0]}, a multiple of {scale}, "
                             "as vsr eval does)")
            write_image(compare_path(job.target), comparison_figure(panels))
        if on_done is not None:
            on_done(job, note)
        yield job


def _as_uint8(values: np.ndarray) -> np.ndarray:
    return np.rint(values / 257.0).astype(np.uint8) if values.dtype == np.uint16 else values
