"""Images as people have them (issue #11): 16-bit, alpha, EXIF orientation, WebP/TIFF/GIF, very
large images in bounded memory, and Pillow's decompression-bomb guard as one clear line."""
from __future__ import annotations

import resource
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from .conftest import synthetic_rgb


def vsr(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True, **kwargs)


def test_a_16_bit_png_keeps_its_brightness(tmp_path):
    """Pillow's own conversion clipped 16-bit values at 255: the output was all white."""
    grey8 = synthetic_rgb(48, 64, seed=1)[..., 1]
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    result = vsr("upscale", tmp_path / "deep.png", tmp_path / "sr.png", "--scale", 2)
    assert result.returncode == 0, result.stderr
    sr = np.asarray(Image.open(tmp_path / "sr.png").convert("L"), dtype=np.float64)
    assert abs(sr.mean() - grey8.mean()) < 2.0 and sr.std() > 10


def test_eval_scores_a_16_bit_png_like_its_8_bit_copy(tmp_path):
    deep, flat = tmp_path / "deep", tmp_path / "flat"
    deep.mkdir(), flat.mkdir()
    grey8 = synthetic_rgb(60, 72, seed=4)[..., 0]
    Image.fromarray(grey8.astype(np.uint16) * 257).save(deep / "a.png")
    Image.fromarray(grey8).save(flat / "a.png")
    scores = [vsr("eval", "--data", folder, "--scale", 3, "--json") for folder in (deep, flat)]
    assert all(s.returncode == 0 for s in scores), scores[0].stderr
    assert "inf" not in scores[0].stdout and scores[0].stdout == scores[1].stdout


def test_exif_orientation_is_applied(tmp_path):
    stored = synthetic_rgb(40, 64, seed=2)  # 64 wide, 40 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": viewers show it 40 wide, 64 high
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    result = vsr("upscale", tmp_path / "phone.jpg", tmp_path / "sr.png", "--scale", 2)
    assert result.returncode == 0, result.stderr
    sr = np.asarray(Image.open(tmp_path / "sr.png"))
    assert sr.shape[:2] == (128, 80)
    shown = np.rot90(stored, k=-1).astype(np.float64)  # what a viewer displays
    small = sr[::2, ::2].astype(np.float64)
    assert np.abs(small - shown).mean() < 12 < np.abs(small - np.rot90(stored, k=1)).mean()


def test_alpha_is_upscaled_and_kept(tmp_path):
    rgba = np.dstack([synthetic_rgb(40, 48, seed=3), np.zeros((40, 48), np.uint8)])
    rgba[:, 24:, 3] = 255  # left half transparent, right half opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    result = vsr("upscale", tmp_path / "logo.png", tmp_path / "sr.png", "--scale", 3)
    assert result.returncode == 0, result.stderr
    sr = Image.open(tmp_path / "sr.png")
    assert sr.mode == "RGBA" and sr.size == (144, 120)
    alpha = np.asarray(sr)[..., 3]
    assert alpha[:, :66].max() <= 1 and alpha[:, 78:].min() >= 254
    result = vsr("upscale", tmp_path / "logo.png", tmp_path / "sr.jpg", "--scale", 3)
    assert result.returncode == 0 and "transparency dropped" in result.stderr


def test_folders_take_webp_tiff_and_gif(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i, ext in enumerate(["webp", "tif", "gif"]):
        Image.fromarray(synthetic_rgb(30, 40, seed=i)).save(src / f"{ext}_image.{ext}")
    frames = [Image.fromarray(synthetic_rgb(30, 40, seed=s)) for s in (7, 8)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    result = vsr("upscale", src, out, "--scale", 2)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["anim.png", "gif_image.png", "tif_image.png", "webp_image.png"]
    assert all(Image.open(p).size == (80, 60) for p in out.iterdir())
    assert "2 frames: the first one is upscaled" in result.stderr


def test_tiles_match_the_whole_image(tmp_path):
    from vsr.backends import create_backend
    from vsr.upscale import upscale_rgb

    rgb = synthetic_rgb(300, 420, seed=9)
    backend = create_backend("onnxruntime", 3)
    whole = upscale_rgb(rgb, backend, tile_px=10_000)
    tiled = upscale_rgb(rgb, backend, tile_px=96)
    backend.close()
    assert whole.shape == tiled.shape == (900, 1260, 3)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


@pytest.mark.slow
def test_an_8000_pixel_square_image_fits_in_2_gb(tmp_path, monkeypatch):
    """It needed ~16 GB (float64 planes, dense resize matrices) and died; tiles bound it."""
    big = tmp_path / "big.png"
    tile = synthetic_rgb(500, 500, seed=5)
    Image.fromarray(np.tile(tile, (16, 16, 1))).save(big, compress_level=1)
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    result = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "vsr", "upscale", str(big),
                             str(tmp_path / "sr.png"), "--scale", "2", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.split()[-1]) / 1024
    print(f"peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < 2048, peak_mib
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # 256 Mpx: above Pillow's default guard
    with Image.open(tmp_path / "sr.png") as sr:
        assert sr.size == (16000, 16000)


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that claims a huge size (its pixels are never stored): what a bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))


def test_a_decompression_bomb_is_one_clear_line(tmp_path):
    _png_header_only(tmp_path / "bomb.png", 40000, 40000)
    result = vsr("upscale", tmp_path / "bomb.png", tmp_path / "sr.png", "--scale", 2)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "too large (more than 512 megapixels)" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "sr.png").exists()
