"""Libraries vsr runs keep quiet unless --verbose (issue 28): NNCF's INFO lines and progress bar on
a first int8 run, SVT-AV1's banner and warnings on every AV1 (.webm) output."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import make_clip, needs_nncf, synthetic_rgb


def vsr(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**{k: v for k, v in os.environ.items() if k not in ("SVT_LOG", "VSR_VERBOSE")},
                                            **(env or {})})


@needs_nncf
@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_a_first_int8_run_is_quiet_unless_verbose(tmp_path, verbose):
    """An empty cache: NNCF quantises the network in this run."""
    Image.fromarray(synthetic_rgb(40, 48, seed=1)).save(tmp_path / "in.png")
    args = ["upscale", tmp_path / "in.png", tmp_path / "out.png", "--scale", 2, "--model", "espcn", "--backend",
            "openvino", "--precision", "int8", "-q"] + (["--verbose"] if verbose else [])
    result = vsr(*args, env={"VSR_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "cache").rglob("*.xml")), "the int8 model was not quantised in this run"
    talk = result.stdout + result.stderr
    if verbose:
        assert "INFO:nncf:" in talk
    else:
        assert "nncf" not in talk.lower() and "━" not in talk and talk.strip() == "", talk


@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_an_av1_output_is_quiet_unless_verbose(tmp_path, verbose):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=3)
    result = vsr("run", clip, tmp_path / "out.webm", "--scale", 2, "--model", "espcn", "--backend", "onnxruntime",
                 "--workers", 1, "-q", *(["--verbose"] if verbose else []))
    assert result.returncode == 0, result.stderr
    assert ("Svt[" in result.stderr) == verbose, result.stderr
