"""Choosing GPUs: --device cuda:N and --gpus 0,2 (or CUDA_VISIBLE_DEVICES); a GPU that is not
there is one clear line and a non-zero exit, before any model is loaded or timed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vsr.backends import visible_gpus
from vsr.errors import BackendUnavailable

from tests.conftest import make_clip


def _gpu_visible() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpus") / "in.mp4"
    make_clip(path, frames=3)
    return path


@pytest.mark.skipif(_gpu_visible(), reason="a CUDA GPU is visible: the missing-GPU message cannot be seen")
@pytest.mark.parametrize("args,env", [
    (["--device", "cuda:0"], {}),
    (["--device", "cuda"], {}),  # --model auto: refused before any model is timed
    (["--gpus", "0,2"], {}),
    (["--device", "cuda:1", "--workers", "2"], {"CUDA_VISIBLE_DEVICES": "0"}),
])
def test_missing_gpu_is_one_line(tmp_path, clip, args, env):
    out = tmp_path / "out.mp4"
    result = subprocess.run([sys.executable, "-m", "vsr", "run", str(clip), str(out), "--scale", "2", *args],
                            capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --device cuda") and "no CUDA GPU" in lines[0], lines
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_gpus_choose_visible_devices():
    assert visible_gpus("0,2", None) == "0,2"
    assert visible_gpus("1", "3,5,7") == "5"  # positions in an existing CUDA_VISIBLE_DEVICES
    assert visible_gpus("2,0", "3,5,7") == "7,3"
    for bad in ("x", "", "0,0", "-1"):
        with pytest.raises(BackendUnavailable, match="--gpus"):
            visible_gpus(bad, None)
    with pytest.raises(BackendUnavailable, match="lists 3 GPUs"):
        visible_gpus("3", "3,5,7")


def test_bad_gpus_is_one_line(tmp_path, clip):
    result = subprocess.run([sys.executable, "-m", "vsr", "run", str(clip), str(tmp_path / "o.mp4"), "--scale", "2",
                             "--gpus", "1"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": "3"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["Error: --gpus 1: CUDA_VISIBLE_DEVICES=3 lists 1 GPUs; --gpus "
                                                  "counts in that list (0 to 0)"]


@pytest.mark.skipif(_gpu_visible(), reason="a CUDA GPU is visible: the missing-GPU message cannot be seen")
def test_live_missing_gpu_is_one_line(clip):
    result = subprocess.run([sys.executable, "-m", "vsr", "live", "--source", str(clip), "--headless",
                             "--max-frames", "2", "--device", "cuda:0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --device cuda:0") and "no CUDA GPU" in lines[0], lines
