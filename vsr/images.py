"""Image files: finding, reading and writing them (Pillow), and the LR degradations."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError, OutputError
from .imresize import imresize

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
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
    """Read an image file as (H, W, 3) uint8 RGB; greyscale images are expanded to 3 channels."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an image")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


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


def write_image(path: os.PathLike | str, rgb: np.ndarray) -> None:
    """Write a uint8 image atomically: a temporary file beside the target, renamed at the end,
    so an interrupted write never leaves a truncated file at ``path``."""
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower() or ".png"
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}.get(suffix)
    if fmt is None:
        raise OutputError(f"{path}: unsupported image extension {suffix!r} (use .png, .jpg or .bmp)")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    tmp = atomic_target(path)
    try:
        with open(tmp, "wb") as handle:
            Image.fromarray(rgb).save(handle, format=fmt)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        os.unlink(tmp)
        raise


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
