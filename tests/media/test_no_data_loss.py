"""No input ever loses a user's data, nor runs silently other than asked (issue #11): shared
temporary names, long output names, unknown devices, weights for another scale. (`vsr upscale`'s
overwrite rules are tested in tests/test_upscale.py.)"""
from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import decode_all, make_clip, synthetic_rgb


def vsr(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True, **kwargs)


def _png(path, seed=0, size=(40, 48)):
    Image.fromarray(synthetic_rgb(*size, seed=seed)).save(path)
    return path.read_bytes()


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
