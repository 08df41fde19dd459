"""Real-world image inputs for ``vsr upscale`` and ``vsr eval`` (issue 11): no input ever loses a
user's data, and 16-bit, alpha, EXIF rotation, WebP/TIFF/GIF and very large images come out right."""
import io
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from vsr.cli import main

from tests.conftest import synthetic_rgb
from tests.test_cli import run_vsr


def upscale(*args):
    return CliRunner().invoke(main, ["upscale", *map(str, args)])


def save(path, rgb, **kwargs):
    Image.fromarray(rgb).save(path, **kwargs)
    return path


def snapshot(folder):
    """Every file under a folder with its bytes, to show that nothing was touched."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_leftovers(folder):
    return not [p for p in folder.rglob("*") if p.name.endswith(".part")]


@pytest.fixture(scope="module")
def engine():
    from vsr.backends import create_backend
    from vsr.models.registry import IMAGE_MODEL

    backend = create_backend("onnxruntime", 2, model=IMAGE_MODEL)  # what `vsr upscale` runs by default
    yield backend
    backend.close()


def to_16bit(values8, offset):
    """8-bit values widened to 16 bits, plus an offset that only the low byte can carry."""
    return np.minimum(values8.astype(np.uint32) * 257 + offset, 65535).astype(np.uint16)


def reference_sr(rgb, engine):
    """The whole-image, 8-bit path the tiled writer must agree with: `vsr upscale`'s own code on
    an 8-bit RGB picture in one tile."""
    from vsr.images import Picture
    from vsr.upscale import upscale_picture

    return upscale_picture(Picture(np.ascontiguousarray(rgb)), engine, tile_px=max(rgb.shape[:2]))


# --- data loss -------------------------------------------------------------------------------------

def test_same_path_in_and_out_is_refused_unless_overwrite(tmp_path):
    path = save(tmp_path / "a.png", synthetic_rgb(30, 40))
    before = path.read_bytes()
    result = upscale(path, path, "--scale", 2, "-q")
    assert result.exit_code == 1
    assert "is the input itself" in result.output and "--overwrite" in result.output
    assert path.read_bytes() == before
    result = upscale(path, path, "--scale", 2, "-q", "--overwrite")
    assert result.exit_code == 0, result.output
    assert Image.open(path).size == (80, 60)


def test_same_file_through_a_link_is_refused(tmp_path):
    path = save(tmp_path / "a.png", synthetic_rgb(30, 40))
    os.link(path, tmp_path / "hardlink.png")
    before = path.read_bytes()
    result = upscale(path, tmp_path / "hardlink.png", "--scale", 2, "-q")
    assert result.exit_code == 1 and "is the input itself" in result.output
    assert path.read_bytes() == before


def test_folder_as_its_own_output_keeps_the_originals(image_dir):
    before = snapshot(image_dir)
    result = upscale(image_dir, image_dir, "--scale", 2, "-q")
    assert result.exit_code == 1
    assert "is the input itself (and 2 more outputs)" in result.output
    assert snapshot(image_dir) == before


def test_two_inputs_for_one_output_are_refused_naming_both(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    save(src / "a.png", synthetic_rgb(30, 40, seed=1))
    save(src / "a.jpg", synthetic_rgb(30, 40, seed=2), quality=95)
    for extra in ([], ["--overwrite"]):
        result = upscale(src, tmp_path / "out", "--scale", 2, "-q", *extra)
        assert result.exit_code == 1
        message = result.output.strip().splitlines()[-1]
        assert str(src / "a.jpg") in message and str(src / "a.png") in message
        assert str(tmp_path / "out" / "a.png") in message
        assert not (tmp_path / "out").exists(), "nothing may be written before the check"


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    src = save(tmp_path / "a.png", synthetic_rgb(30, 40))
    out = tmp_path / "b.png"
    out.write_bytes(b"the user's own file")
    result = upscale(src, out, "--scale", 2, "-q")
    assert result.exit_code == 1 and "exists; use --overwrite (-y)" in result.output
    assert out.read_bytes() == b"the user's own file"
    result = upscale(src, out, "--scale", 2, "-q", "-y")
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (80, 60)


def test_existing_output_in_a_folder_is_refused_before_any_write(image_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "img2.png").write_bytes(b"keep me")
    result = upscale(image_dir, out, "--scale", 2, "-q")
    assert result.exit_code == 1 and "img2.png: exists" in result.output
    assert snapshot(out) == {(out / "img2.png").relative_to(out): b"keep me"}


def test_comparison_figure_may_not_replace_an_input(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    save(src / "a.png", synthetic_rgb(30, 40, seed=1))
    save(src / "a_compare.png", synthetic_rgb(30, 40, seed=2))
    before = snapshot(src)
    result = upscale(src, src, "--scale", 2, "-q", "--compare", "-y")
    assert result.exit_code == 1 and "is an input" in result.output
    assert snapshot(src) == before


def test_output_may_not_replace_the_reference(tmp_path):
    lr = save(tmp_path / "lr.png", synthetic_rgb(30, 40, seed=1))
    hr = save(tmp_path / "hr.png", synthetic_rgb(60, 80, seed=1))
    before = hr.read_bytes()
    result = upscale(lr, hr, "--scale", 2, "-q", "--compare", "--reference", hr, "-y")
    assert result.exit_code == 1 and "is an input" in result.output
    assert hr.read_bytes() == before


def test_output_folder_inside_input_does_not_feed_on_itself(image_dir):
    first = upscale(image_dir, image_dir / "big", "--scale", 2, "-q")
    assert first.exit_code == 0, first.output
    again = upscale(image_dir, image_dir / "big", "--scale", 2, "-q", "-y")
    assert again.exit_code == 0, again.output
    assert not (image_dir / "big" / "big").exists()


# --- wrong output ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_grey_is_read_as_its_values(tmp_path, engine, ext):
    grey8 = synthetic_rgb(40, 50)[..., 1]
    grey16 = to_16bit(grey8, 100)  # low byte carries information too
    save(tmp_path / f"g16{ext}", grey16)
    assert Image.open(tmp_path / f"g16{ext}").mode.startswith("I;16")
    result = upscale(tmp_path / f"g16{ext}", tmp_path / "sr.png", "--scale", 2, "-q")
    assert result.exit_code == 0, result.output
    import cv2

    sr = cv2.imread(str(tmp_path / "sr.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    sr16 = sr.astype(float) * (257 if sr.dtype == np.uint8 else 1)
    expected = reference_sr(np.repeat(grey8[..., None], 3, axis=2), engine).astype(float) * 257
    diff = np.abs(sr16 - expected)
    assert diff.mean() < 257 * 0.6 and diff.max() < 257 * 3, "not white, not truncated: the image's values"
    assert sr.dtype == np.uint16, "a 16-bit PNG gives a 16-bit PNG"
    assert np.any(sr % 257 != 0), "the output keeps more than 8 bits"


def test_16bit_colour_png_keeps_16_bits(tmp_path, engine):
    import cv2

    rgb8 = synthetic_rgb(40, 50, seed=4)
    rgb16 = to_16bit(rgb8, 60)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])
    result = upscale(tmp_path / "c16.png", tmp_path / "sr.png", "--scale", 2, "-q")
    assert result.exit_code == 0, result.output
    sr = cv2.imread(str(tmp_path / "sr.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert sr.dtype == np.uint16 and sr.shape == (80, 100, 3)
    # Within about a grey level of the 8-bit path (which rounds twice and lacks the +60).
    diff = np.abs(sr.astype(float) - reference_sr(rgb8, engine).astype(float) * 257)
    assert diff.mean() < 257 and diff.max() < 257 * 3
    assert np.any(sr % 257 != 0)


def test_eval_scores_a_16bit_png_like_its_8bit_twin(tmp_path):
    grey8 = synthetic_rgb(96, 96, seed=6)[..., 0]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save(tmp_path / "a" / "x.png", grey8)
    save(tmp_path / "b" / "x.png", grey8.astype(np.uint16) * 257)
    scores = []
    for folder in ("a", "b"):
        result = CliRunner().invoke(main, ["eval", "--data", str(tmp_path / folder), "--scale", "2", "--json"])
        assert result.exit_code == 0, result.output
        import json

        scores.append(json.loads(result.output)["mean"]["vsr_psnr_db"])
    assert np.isfinite(scores[1]) and scores[1] == pytest.approx(scores[0], abs=1e-6)


def test_exif_orientation_is_applied(tmp_path, engine):
    upright = synthetic_rgb(60, 40, seed=2)  # 40 wide, 60 tall
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what a camera held sideways stores
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    save(tmp_path / "photo.jpg", stored, exif=exif, quality=100)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "photo.jpg")))
    assert shown.shape == upright.shape
    result = upscale(tmp_path / "photo.jpg", tmp_path / "sr.png", "--scale", 2, "-q")
    assert result.exit_code == 0, result.output
    sr = np.asarray(Image.open(tmp_path / "sr.png"))
    assert sr.shape == (120, 80, 3)
    assert np.abs(sr.astype(int) - reference_sr(shown, engine)).max() <= 1


def test_alpha_is_upscaled_and_kept(tmp_path, engine):
    from vsr.imresize import imresize

    rgb = synthetic_rgb(40, 50, seed=8)
    yy, xx = np.mgrid[0:40, 0:50]
    alpha = np.clip((xx * 5 + ((yy - 20) ** 2 < 40) * 120), 0, 255).astype(np.uint8)
    save(tmp_path / "a.png", np.dstack([rgb, alpha]))
    result = upscale(tmp_path / "a.png", tmp_path / "sr.png", "--scale", 2, "-q")
    assert result.exit_code == 0, result.output
    sr = Image.open(tmp_path / "sr.png")
    assert sr.mode == "RGBA" and sr.size == (100, 80)
    sr = np.asarray(sr).astype(int)
    expected_alpha = np.clip(np.rint(imresize(alpha.astype(float), 2)), 0, 255)
    assert np.abs(sr[..., 3] - expected_alpha).max() <= 1
    assert np.abs(sr[..., :3] - reference_sr(rgb, engine)).max() <= 1


@pytest.mark.parametrize("ext,options", [
    (".webp", {"lossless": True}),
    (".tif", {}),
    (".tiff", {"compression": "tiff_lzw"}),
    (".gif", {}),
])
def test_webp_tiff_gif_are_read_as_files_and_in_folders(tmp_path, engine, ext, options):
    from vsr.images import read_rgb

    src = tmp_path / "in"
    src.mkdir()
    save(src / f"pic{ext}", synthetic_rgb(30, 40, seed=3), **options)
    decoded = read_rgb(src / f"pic{ext}")  # GIF is a 256-colour palette: compare with what it holds
    result = upscale(src / f"pic{ext}", tmp_path / "one.png", "--scale", 2, "-q")
    assert result.exit_code == 0, result.output
    assert np.abs(np.asarray(Image.open(tmp_path / "one.png"), dtype=int) - reference_sr(decoded, engine)).max() <= 1
    result = upscale(src, tmp_path / "out", "--scale", 2, "-q")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "pic.png").size == (80, 60)


def test_gif_gives_its_first_frame(tmp_path, engine):
    frames = [Image.fromarray(synthetic_rgb(30, 40, seed=s)).convert("P") for s in (1, 2)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    result = upscale(tmp_path / "anim.gif", tmp_path / "sr.png", "--scale", 2, "-q")
    assert result.exit_code == 0, result.output
    first = np.asarray(frames[0].convert("RGB"))
    second = np.asarray(frames[1].convert("RGB"))
    sr = np.asarray(Image.open(tmp_path / "sr.png"), dtype=int)
    assert np.abs(sr - reference_sr(first, engine)).max() <= 1
    assert np.abs(sr - reference_sr(second, engine)).max() > 20


def test_progress_bar_stays_out_of_a_redirected_log(image_dir, tmp_path):
    log = tmp_path / "log.txt"
    with open(log, "w") as handle:
        result = subprocess.run([sys.executable, "-m", "vsr", "upscale", str(image_dir), str(tmp_path / "out"),
                                 "--scale", "2"], stdout=handle, stderr=subprocess.STDOUT, timeout=300)
    assert result.returncode == 0
    text = log.read_text()
    assert text.count(" -> ") == 3, "each image is still reported"
    assert "\r" not in text and "img/s" not in text and "%|" not in text


# --- tiles and large images ------------------------------------------------------------------------

@pytest.mark.parametrize("bits,with_alpha", [(8, False), (8, True), (16, False)])
def test_tiles_leave_no_seams(engine, bits, with_alpha):
    from vsr.images import Picture
    from vsr.upscale import upscale_picture

    rgb = synthetic_rgb(150, 230, seed=9)
    alpha = synthetic_rgb(150, 230, seed=10)[..., 0] if with_alpha else None
    if bits == 16:
        rgb = to_16bit(rgb, 77)
    picture = Picture(rgb, alpha)
    whole = upscale_picture(picture, engine, tile_px=10_000).astype(int)
    tiled = upscale_picture(picture, engine, tile_px=40).astype(int)  # 4 x 6 tiles, 15 seams
    assert tiled.shape == whole.shape == (300, 460, 4 if with_alpha else 3)
    assert np.abs(tiled - whole).max() <= (257 if bits == 16 else 1)


def test_tiles_without_overlap_would_show_seams(engine):
    """The seam test can fail: with no context around tiles the result differs at the tile edges."""
    from vsr.images import Picture
    from vsr.upscale import upscale_strips

    picture = Picture(synthetic_rgb(120, 120, seed=9))
    whole = np.concatenate(list(upscale_strips(picture, engine, tile_px=10_000)))
    bare = np.concatenate(list(upscale_strips(picture, engine, tile_px=40, overlap_px=0)))
    assert np.abs(whole.astype(int) - bare).max() > 1


def test_a_network_with_a_global_context_is_upscaled_whole(tmp_path):
    """A network that reads the whole picture's average (reparam's ``context``) reaches every
    pixel: its tiles are the whole picture, so the tiled writer still equals the whole image,
    where a tile upscaled on its own (its own average) would not; from its checkpoint and from a
    bare .onnx of it."""
    import torch

    from vsr.backends import create_backend
    from vsr.images import Picture
    from vsr.models.reparam import RepSR
    from vsr.export import export_onnx
    from vsr.models.registry import MODELS, WHOLE_PICTURE_PX
    from vsr.models.weights import load_model
    from vsr.upscale import upscale_picture

    options = dict(channels=8, blocks=1, stride=2, act="relu", context=4)
    net = RepSR(2, **options)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in net.named_parameters():  # a context strong enough to change whole levels
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if name.startswith("context.") else 0.05))
    path = tmp_path / "context_x2.pt"
    torch.save({"arch": "reparam", "model": "context-probe", "scale": 2, "options": options,
                "state_dict": net.state_dict()}, path)
    # The checkpoint says so; a bare .onnx of it says so by its graph, which pools the picture.
    exported = export_onnx(load_model(2, path), tmp_path / "context_x2.onnx")
    for weights in (path, exported):
        engine = create_backend("onnxruntime", 2, weights=weights)
        try:
            assert engine.receptive_px == WHOLE_PICTURE_PX
            rgb = synthetic_rgb(90, 130, seed=4)
            whole = upscale_picture(Picture(rgb), engine, tile_px=10_000).astype(int)
            tiled = upscale_picture(Picture(rgb), engine, tile_px=40).astype(int)
            alone = upscale_picture(Picture(np.ascontiguousarray(rgb[:40, :40])), engine).astype(int)
        finally:
            engine.close()
        assert np.abs(tiled - whole).max() <= 1
        # Away from the tile's own border (20 output pixels in), only the context differs.
        assert np.abs(alone[20:60, 20:60] - whole[20:60, 20:60]).max() > 1
    # A bare .onnx of a network without one keeps the ladder's reach.
    plain = export_onnx(load_model(2, model="realtime"), tmp_path / "realtime_x2.onnx")
    engine = create_backend("onnxruntime", 2, weights=plain)
    try:
        assert engine.receptive_px == max(m.receptive_px for m in MODELS.values())
    finally:
        engine.close()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_banded_bicubic_is_matlab_imresize(scale):
    from vsr.imresize import imresize
    from vsr.upscale import bicubic_up

    planes = synthetic_rgb(37, 29, seed=scale)[..., :2].astype(float)
    out_hw = (37 * scale, 29 * scale)
    assert np.abs(bicubic_up(planes, out_hw) - imresize(planes, output_shape=out_hw)).max() < 1e-9
    # What the tiles use (upscale.TILE_DTYPE): float32, within a thousandth of a level.
    single = bicubic_up(planes, out_hw, np.float32)
    assert single.dtype == np.float32
    assert np.abs(single - imresize(planes, output_shape=out_hw)).max() < 1e-3


def _png_header_only(path, width, height):
    """A PNG that claims a size but holds almost nothing: the decompression-bomb shape."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [20_000, 40_000])  # above our limit; above twice Pillow's raised limit
def test_oversized_image_is_one_clear_line(tmp_path, side):
    path = _png_header_only(tmp_path / "huge.png", side, side)
    result = run_vsr("upscale", path, tmp_path / "sr.png", "--scale", "2")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "megapixel limit" in lines[0], result.stderr
    assert not (tmp_path / "sr.png").exists() and no_leftovers(tmp_path)


def test_truncated_image_leaves_nothing_behind(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    save(src / "a.png", synthetic_rgb(60, 60))
    data = io.BytesIO()
    Image.fromarray(synthetic_rgb(200, 200, seed=1)).save(data, format="PNG")
    (src / "b.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    truncated = (src / "b.png").read_bytes()
    result = run_vsr("upscale", src / "b.png", tmp_path / "sr.png", "--scale", "2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not a readable image" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "sr.png").exists() and no_leftovers(tmp_path)
    result = run_vsr("upscale", src, src, "--scale", "2", "-y")  # in place, as asked; b.png fails
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not a readable image" in result.stderr.splitlines()[-1]
    assert (src / "b.png").read_bytes() == truncated and no_leftovers(tmp_path)


def test_too_small_image_in_a_folder_stops_before_any_write(image_dir, tmp_path):
    save(image_dir / "tiny.png", synthetic_rgb(4, 30))
    result = upscale(image_dir, tmp_path / "out", "--scale", 2, "-q")
    assert result.exit_code == 1 and "too small" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_8000px_image_at_x2_stays_under_2_gb(tmp_path, engine, monkeypatch):
    """Tiles and the streamed PNG writer bound memory: the whole float output would be 6 GB."""
    block = synthetic_rgb(500, 500, seed=3)
    big = np.tile(block, (16, 16, 1))
    save(tmp_path / "big.png", big, compress_level=1)
    # A fresh parent, so ru_maxrss is this command's peak and not that of an earlier child.
    measure = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(u.ru_maxrss, u.ru_utime + u.ru_stime); sys.exit(r.returncode)")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "vsr", "upscale",
                             str(tmp_path / "big.png"), str(tmp_path / "sr.png"), "--scale", "2", "-q"],
                            capture_output=True, text=True, timeout=1200)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    peak_kib, cpu_seconds = (float(x) for x in result.stdout.split())
    print(f"8000x8000 x2: peak RSS {peak_kib / 1024:.0f} MiB, {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU")
    assert peak_kib < 2 * 1024 * 1024
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # 256 megapixels: the output we made
    with Image.open(tmp_path / "sr.png") as image:
        assert image.size == (16000, 16000)
        # A window across the tile seams at 1024 LR pixels, against the whole-image path on its crop.
        window = np.asarray(image.crop((2 * 984 + 32, 2 * 984 + 32, 2 * 1116 - 32, 2 * 1116 - 32)), dtype=int)
    expected = reference_sr(big[984:1116, 984:1116], engine)[32:-32, 32:-32]
    assert np.abs(window - expected).max() <= 1


def test_compare_crops_a_reference_that_is_not_a_multiple_of_the_scale_as_eval_does(tmp_path):
    """An HR of 98x101 at x3: its LR (made as vsr eval makes it, from the HR cropped to 96x99) is
    32x33; the comparison scores against that crop, and says it cropped."""
    import re

    from vsr.images import modcrop
    from vsr.imresize import imresize
    from vsr.metrics import psnr
    from vsr.upscale import bicubic_rgb

    hr = synthetic_rgb(101, 98, seed=4)
    lr = np.clip(np.rint(imresize(modcrop(hr, 3), 1 / 3)), 0, 255).astype(np.uint8)
    save(tmp_path / "lr.png", lr)
    save(tmp_path / "hr.png", hr)
    result = upscale(tmp_path / "lr.png", tmp_path / "sr.png", "--scale", 3, "--compare",
                     "--reference", tmp_path / "hr.png")
    assert result.exit_code == 0, result.output
    bicubic_db = float(re.search(r"bicubic ([\d.]+) dB", result.output).group(1))
    assert bicubic_db == pytest.approx(psnr(modcrop(hr, 3), bicubic_rgb(lr, 3), border_px=3), abs=0.006)
    assert "cropped to 96x99" in result.output


@pytest.mark.parametrize("hr_hw", [(66, 64), (97, 93), (90, 80)], ids=["x2-original", "too-small", "other-shape"])
def test_compare_refuses_a_reference_that_does_not_fit(tmp_path, hr_hw):
    """A reference that is not the input's size times the scale (give or take the crop) would be
    compared misaligned: one line naming both sizes, before anything is written."""
    save(tmp_path / "lr.png", synthetic_rgb(33, 32, seed=4))
    save(tmp_path / "hr.png", synthetic_rgb(*hr_hw, seed=4))
    result = upscale(tmp_path / "lr.png", tmp_path / "sr.png", "--scale", 3, "--compare",
                     "--reference", tmp_path / "hr.png")
    assert result.exit_code == 1
    assert f"the reference is {hr_hw[1]}x{hr_hw[0]}" in result.output and "96x99" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "sr.png").exists() and not (tmp_path / "sr_compare.png").exists()


@pytest.mark.parametrize("channels,dtype", [(3, np.uint8), (4, np.uint8), (3, np.uint16)])
def test_png_written_strip_by_strip_reads_back_exactly(tmp_path, channels, dtype):
    """Strips are filtered and compressed on a writer thread while the next one is made: the file
    must still hold every strip, in order."""
    from PIL import Image

    from vsr.images import read_picture, write_png_rows

    rng = np.random.default_rng(5)
    peak = 255 if dtype == np.uint8 else 65535
    image = rng.integers(0, peak + 1, size=(97, 61, channels)).astype(dtype)
    strips = [image[i : i + 10] for i in range(0, 97, 10)]  # ten strips, the last 7 rows
    path = tmp_path / "out.png"
    write_png_rows(path, 61, 97, iter(strips))
    if dtype == np.uint8:
        np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    else:
        np.testing.assert_array_equal(read_picture(path).rgb, image)


def test_png_whose_strips_fail_midway_leaves_no_file(tmp_path):
    from vsr.images import write_png_rows

    def strips():
        yield np.zeros((8, 16, 3), np.uint8)
        yield np.zeros((8, 16, 3), np.uint8)
        raise RuntimeError("the upscaler failed")

    path = tmp_path / "out.png"
    with pytest.raises(RuntimeError, match="the upscaler failed"):
        write_png_rows(path, 16, 24, strips())
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="strip shaped"):
        write_png_rows(path, 16, 16, iter([np.zeros((8, 16, 3), np.uint8), np.zeros((8, 15, 3), np.uint8)]))
    assert not path.exists() and list(tmp_path.iterdir()) == []
