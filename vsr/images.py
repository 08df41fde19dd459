"""Image files: finding, reading and writing them (Pillow), and the LR degradations."""
from __future__ import annotations

import contextlib
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import InputError, OutputError
from .imresize import imresize

# GIF and animated WebP/TIFF: only the first frame is read.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
DEGRADATIONS = ("bicubic", "gaussian")

#: The largest input read, in pixels (16384 x 16384). Pillow's own decompression-bomb limit
#: (about 89 megapixels) guards callers that hold whole images in memory; ``vsr upscale``
#: works in tiles, so what bounds its memory is the decoded input (3 bytes a pixel, 6 for
#: 16-bit), and this is where that stops being reasonable.
MAX_IMAGE_PIXELS = 16384 * 16384


@dataclass(frozen=True)
class Picture:
    """A decoded image: ``rgb`` (H, W, 3) and ``alpha`` (H, W) or None, both uint8 or both uint16."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.rgb.dtype == np.uint16 else 8

    @property
    def peak(self) -> int:
        return 65535 if self.bit_depth == 16 else 255

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


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


def _open(path: Path):
    """Pillow's lazy open (header only), with our size bound instead of Pillow's."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an image")
    # Deliberate: tiling bounds our memory, so Pillow's 89-megapixel guard is raised to ours,
    # which is checked below with a message that says what the limit is.
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        raise InputError(f"{path}: larger than {_limit_text()}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise InputError(f"{path}: {width}x{height} is larger than {_limit_text()}")
    return image


def _limit_text() -> str:
    return f"the {MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel limit (16384x16384)"


def image_size(path: os.PathLike | str) -> tuple[int, int]:
    """(width, height) as stored, from the header alone, after the same checks as reading.
    (EXIF rotation is left out: finding a PNG's EXIF can mean decoding the whole file.)"""
    with _open(Path(path)) as image:
        return image.size


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG, or None: Pillow reads 16-bit colour PNGs as 8 bits."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation (1-8) applied to an (H, W, ...) array, as ImageOps.exif_transpose does."""
    if orientation in (5, 7):
        array = np.swapaxes(array, 0, 1)
    turns = {3: 2, 6: 3, 7: 2, 8: 1}.get(orientation, 0)
    if orientation == 2:
        array = array[:, ::-1]
    elif orientation == 4:
        array = array[::-1]
    return np.rot90(array, turns) if turns else array


def _read_png16(path: Path, orientation: int) -> Picture:
    """16-bit colour PNGs through OpenCV, which keeps all 16 bits (Pillow keeps the high byte)."""
    import cv2

    data = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16:
        raise InputError(f"{path}: not a readable 16-bit PNG")
    data = _orient(data, orientation)
    if data.ndim == 2:
        return Picture(np.ascontiguousarray(np.repeat(data[..., None], 3, axis=2)))
    rgb = np.ascontiguousarray(data[..., 2::-1])
    alpha = np.ascontiguousarray(data[..., 3]) if data.shape[2] == 4 else None
    return Picture(rgb, alpha)


def read_picture(path: os.PathLike | str) -> Picture:
    """Read an image as a Picture: EXIF orientation applied, alpha kept, 16 bits kept.

    8-bit files give uint8; 16-bit PNG and greyscale 16-bit TIFF give uint16. Greyscale is
    expanded to 3 channels; palette, CMYK and the rest become RGB (RGBA when transparent).
    Multi-frame files (GIF, animated WebP, multi-page TIFF) give their first frame.
    """
    from PIL import ImageOps

    path = Path(path)
    image = _open(path)
    try:
        with image:
            orientation = image.getexif().get(0x0112, 1)
            if image.format == "PNG":
                header = _png_header(path)
                if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
                    return _read_png16(path, orientation)
            if orientation != 1:  # exif_transpose copies even when there is nothing to turn
                image = ImageOps.exif_transpose(image)
            return _picture(image, path)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None


def _picture(image, path: Path) -> Picture:
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(image)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise InputError(f"{path}: 32-bit integer pixels are not supported")
        grey = grey.astype(np.uint16)
        return Picture(np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2)))
    if mode == "F":
        raise InputError(f"{path}: floating-point pixels are not supported")
    transparent = mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in image.info
    if transparent:
        rgba = np.asarray(image.convert("RGBA"))
        return Picture(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]))
    return Picture(np.asarray(image if mode == "RGB" else image.convert("RGB")))


def read_rgb(path: os.PathLike | str) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB: 16 bits rounded to 8, alpha dropped, EXIF rotation applied."""
    picture = read_picture(path)
    if picture.bit_depth == 16:
        return np.rint(picture.rgb / 257.0).astype(np.uint8)
    return picture.rgb


def atomic_output(path: Path):
    """vsr.cache.atomic_path for an output file (a context manager yielding a temporary path
    beside ``path``, renamed over it when the block ends without an error and removed otherwise),
    with the mode a plain open() would give; a missing folder or a temporary file that cannot be
    made is an OutputError, and what the block raises passes through unchanged."""
    from .cache import atomic_path

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: directory {parent} does not exist")
    return atomic_path(path, shared=True,
                       create_error=lambda exc: OutputError(f"{path}: cannot write ({exc.strerror})"))


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
    with _replacing(path) as handle:
        Image.fromarray(rgb).save(handle, format=fmt)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator:
    """An open temporary file beside ``path`` that replaces it when the block ends without an
    error, and is deleted otherwise: ``path`` never holds a truncated file."""
    try:
        with atomic_output(path) as tmp, open(tmp, "wb") as handle:
            yield handle
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_rows(
    path: os.PathLike | str, width: int, height: int, strips: Iterable[np.ndarray], *, compress_level: int = 6
) -> None:
    """Write a PNG from strips of rows (H_i, W, C), C = 3 (RGB) or 4 (RGBA), uint8 or uint16,
    as they arrive, so an image larger than memory never exists whole. Atomic like write_image."""
    from concurrent.futures import ThreadPoolExecutor

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    compressor = zlib.compressobj(compress_level)

    def filter_and_write(strip: np.ndarray, bit_depth: int, bytes_per_px: int) -> None:
        raw = np.ascontiguousarray(strip, dtype=">u2" if bit_depth == 16 else np.uint8)
        raw = raw.view(np.uint8).reshape(len(strip), -1)
        # PNG filter 1 ("Sub", the difference from the pixel to the left) compresses
        # photographs about as well as Pillow's choice and costs one subtraction.
        filtered = np.empty((len(strip), raw.shape[1] + 1), dtype=np.uint8)
        filtered[:, 0] = 1
        filtered[:, 1 : 1 + bytes_per_px] = raw[:, :bytes_per_px]
        np.subtract(raw[:, bytes_per_px:], raw[:, :-bytes_per_px], out=filtered[:, 1 + bytes_per_px :])
        data = compressor.compress(filtered.data)
        if data:
            handle.write(_png_chunk(b"IDAT", data))

    with _replacing(path) as handle, ThreadPoolExecutor(max_workers=1) as writer:
        # One strip is filtered, compressed and written while the next is made: zlib and NumPy let go
        # of Python's lock, and deflate at level 6 took as long as the network (48 MP: 6.9 s and 4.1 s).
        # At most one strip in flight, so they are written in order and memory stays two strips.
        rows_done, in_flight = 0, None
        for strip in strips:
            if rows_done == 0:
                channels, bit_depth = strip.shape[2], 16 if strip.dtype == np.uint16 else 8
                color_type = {3: 2, 4: 6}[channels]
                handle.write(b"\x89PNG\r\n\x1a\n")
                handle.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth,
                                                             color_type, 0, 0, 0)))
                bytes_per_px = channels * bit_depth // 8
            if strip.shape[1:] != (width, channels):
                raise ValueError(f"strip shaped {strip.shape}, expected (rows, {width}, {channels})")
            if in_flight is not None:
                in_flight.result()  # its error, if any, is raised here
            in_flight = writer.submit(filter_and_write, strip, bit_depth, bytes_per_px)
            rows_done += len(strip)
        if in_flight is not None:
            in_flight.result()
        if rows_done != height:
            raise ValueError(f"got {rows_done} rows for a {height}-row PNG")
        handle.write(_png_chunk(b"IDAT", compressor.flush()))
        handle.write(_png_chunk(b"IEND", b""))


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
