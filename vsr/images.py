"""Image files: finding, reading and writing them (Pillow), and the LR degradations."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError, OutputError
from .imresize import imresize

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
#: Pillow refuses images above twice its default limit as "decompression bombs"; tiles keep
#: vsr's memory bounded, so it accepts larger ones, up to this many pixels (about 23000 x 23000).
MAX_IMAGE_PIXELS = 512_000_000
DEGRADATIONS = ("bicubic", "gaussian")


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(*roots: os.PathLike | str) -> list[Path]:
    """Image files under each root (recursively, so the DIV2K layout works), sorted for reproducibility."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise InputError(f"{root}: no such file or directory")
        if root.is_file():
            if not is_image_path(root):
                raise InputError(f"{root}: not an image (expected one of {', '.join(IMAGE_EXTENSIONS)})")
            found.append(root)
            continue
        found.extend(sorted(p for p in root.rglob("*") if p.is_file() and is_image_path(p)))
    return found


def read_rgb(path: os.PathLike | str) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (see ``read_image``; alpha is dropped)."""
    return read_image(path)[0]


def read_image(path: os.PathLike | str) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(RGB, alpha or None, notes) of an image file, as a viewer shows it.

    EXIF orientation is applied (phones store portraits sideways and say so in EXIF);
    16-bit and 32-bit greyscale are scaled to 8 bits (Pillow's own conversion clips them,
    which made a 16-bit PNG all white); greyscale becomes 3 equal channels; alpha is returned
    apart, uint8. An animated GIF or a multi-page TIFF gives its first frame, with a note.
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an image")
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    notes = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if getattr(image, "n_frames", 1) > 1:
                    notes.append(f"{image.n_frames} frames: the first one is upscaled")
                image = ImageOps.exif_transpose(image)
                return (*_to_rgb_alpha(image), notes)
    except Image.DecompressionBombError:
        raise InputError(f"{path}: too large (more than {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def _to_rgb_alpha(image) -> tuple[np.ndarray, np.ndarray | None]:
    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"))[..., 3].copy()
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image).astype(np.float64)
        if image.mode == "F" and values.max(initial=0) <= 1.0:
            values *= 255.0  # float images in [0, 1]
        elif image.mode != "F":
            values /= 257.0  # 16-bit range (as PNG stores it) -> 8-bit
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), alpha
    return np.asarray(image.convert("RGB")), alpha


def _file_mode() -> int:
    """The mode a plain open() would give: mkstemp's 0600 would hide outputs from other users."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_target(path: Path, suffix: str = ".part") -> str:
    """A temporary file beside ``path`` (same filesystem, so the final rename is atomic)."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: directory {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
    os.close(fd)
    os.chmod(tmp, _file_mode())
    return tmp


#: Pillow keeps RGB in 4 bytes a pixel: above this size OpenCV writes straight from our array.
_LARGE_IMAGE_BYTES = 256 << 20


def write_image(path: os.PathLike | str, rgb: np.ndarray) -> None:
    """Write a uint8 RGB or RGBA image atomically: a temporary file beside the target, renamed
    at the end, so an interrupted write never leaves a truncated file at ``path``. Formats
    without alpha (JPEG, BMP) get the RGB channels only."""
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower() or ".png"
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP",
           ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix)
    if fmt is None:
        raise OutputError(f"{path}: unsupported image extension {suffix!r} (use .png, .jpg, .bmp, .webp or .tif)")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    if rgb.shape[-1] == 4 and fmt in ("JPEG", "BMP"):
        rgb = rgb[..., :3]
    tmp = atomic_target(path, suffix=".part" + suffix)
    try:
        if rgb.nbytes > _LARGE_IMAGE_BYTES and rgb.shape[-1] == 3 and fmt in ("PNG", "JPEG", "BMP"):
            _write_large(tmp, np.ascontiguousarray(rgb))
        else:
            with open(tmp, "wb") as handle:
                Image.fromarray(np.ascontiguousarray(rgb)).save(handle, format=fmt)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        os.unlink(tmp)
        raise


def _write_large(tmp: str, rgb: np.ndarray) -> None:
    """OpenCV writes from the array itself, in BGR: swap the channels in place a band at a time
    (no second copy of a gigabyte-sized image), write, and swap them back."""
    import cv2

    def swap() -> None:
        for top in range(0, rgb.shape[0], 512):
            band = rgb[top: top + 512]
            band[...] = band[..., ::-1]

    swap()
    try:
        if not cv2.imwrite(tmp, rgb):
            raise OSError(f"OpenCV could not write {tmp}")
    finally:
        swap()


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop height and width down to multiples of ``scale``."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def gaussian_kernel_1d(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def degrade(hr: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """Make the low-resolution version of a float image whose size is a multiple of ``scale``.

    ``bicubic``: MATLAB's antialiased bicubic ``imresize``, the evaluation convention.
    ``gaussian``: the ESPCN paper's Gaussian blur (sigma = scale / 2) then keeping every
    ``scale``-th pixel, starting at the centre of each ``scale`` x ``scale`` block.
    """
    if method == "bicubic":
        return imresize(hr, 1.0 / scale)
    if method == "gaussian":
        kernel = gaussian_kernel_1d(scale / 2.0)
        radius = len(kernel) // 2
        padded = np.pad(hr, [(radius, radius), (radius, radius)] + [(0, 0)] * (hr.ndim - 2), mode="symmetric")
        rows = sum(kernel[i] * padded[i : i + hr.shape[0]] for i in range(len(kernel)))
        blurred = sum(kernel[i] * rows[:, i : i + hr.shape[1]] for i in range(len(kernel)))
        offset = scale // 2
        return blurred[offset::scale, offset::scale]
    raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {method!r}")
