"""No input ever loses a user's data: overwrites, shared temporary names, SIGTERM (issue #11)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from .conftest import decode_all, make_clip, synthetic_rgb


def vsr(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True, **kwargs)


def _png(path, seed=0, size=(40, 48)):
    Image.fromarray(synthetic_rgb(*size, seed=seed)).save(path)
    return path.read_bytes()


def test_upscale_never_replaces_its_input(tmp_path):
    image = tmp_path / "a.png"
    before = _png(image)
    result = vsr("upscale", image, image, "--scale", 2)
    assert result.returncode == 1 and "is an input image (use --overwrite" in result.stderr
    assert "Traceback" not in result.stderr and image.read_bytes() == before


def test_upscale_into_its_own_folder_keeps_the_originals(tmp_path):
    before = {name: _png(tmp_path / name, seed=i) for i, name in enumerate(["a.png", "b.png"])}
    result = vsr("upscale", tmp_path, tmp_path, "--scale", 2)
    assert result.returncode == 1 and "is an input image" in result.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written at all


def test_two_inputs_for_one_output_are_refused_before_anything_is_written(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    _png(src / "a.png")
    Image.fromarray(synthetic_rgb(40, 48, seed=2)).save(src / "a.jpg")
    result = vsr("upscale", src, out, "--scale", 2, "--overwrite")
    assert result.returncode == 1 and "would both be written to" in result.stderr
    assert "a.jpg" in result.stderr and "a.png" in result.stderr
    assert not list(out.glob("*.png"))


def test_upscale_refuses_an_existing_output_unless_overwrite(tmp_path):
    image, out = tmp_path / "a.png", tmp_path / "sr.png"
    _png(image)
    out.write_bytes(b"precious")
    result = vsr("upscale", image, out, "--scale", 2)
    assert result.returncode == 1 and "already exists (use --overwrite" in result.stderr
    assert out.read_bytes() == b"precious"
    result = vsr("upscale", image, out, "--scale", 2, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (96, 80)


def test_upscale_writes_no_progress_bar_into_a_redirected_log(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        _png(src / f"{i}.png", seed=i)
    result = vsr("upscale", src, tmp_path / "out", "--scale", 2)
    assert result.returncode == 0
    assert "\r" not in result.stderr and "img/s" not in result.stderr
    assert len(result.stderr.splitlines()) == 3  # one line per image


def test_two_runs_to_one_output_never_share_a_temporary_file(tmp_path):
    """Both used `.out.vsr-partial.mp4`: one reported success with 0 decodable frames at OUTPUT."""
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip, frames=60, width=96, height=64)
    args = [sys.executable, "-m", "vsr", "run", str(clip), str(out), "--scale", "2", "--workers", "1", "-y", "-q"]
    runs = [subprocess.Popen(args, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = [run.wait(timeout=120) for run in runs]
    assert codes == [0, 0], [run.stderr.read() for run in runs]
    frames, _ = decode_all(out)
    assert len(frames) == 60
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_249_character_output_name_works(tmp_path):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=8)
    out = tmp_path / ("x" * 245 + ".mp4")
    result = vsr("run", clip, out, "--scale", 2, "--workers", 1, "-q")
    assert result.returncode == 0, result.stderr
    assert len(decode_all(out)[0]) == 8


@pytest.mark.parametrize("device", ["gpu", "foo", "cuda:x"])
def test_an_unknown_device_is_refused_not_run_on_the_cpu(tmp_path, device):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=4)
    result = vsr("run", clip, tmp_path / "out.mp4", "--device", device)
    assert result.returncode == 1 and f"unknown device '{device}'" in result.stderr
    assert "(gpu)" not in result.stderr and not (tmp_path / "out.mp4").exists()


def test_onnx_weights_for_another_scale_are_refused(tmp_path):
    from vsr.models.weights import shipped_weights

    image = tmp_path / "a.png"
    _png(image)
    result = vsr("upscale", image, tmp_path / "sr.png", "--scale", 3, "--weights", shipped_weights(2, "onnx"))
    assert result.returncode == 1 and "these weights upscale x2, not x3" in result.stderr
    assert not (tmp_path / "sr.png").exists()
