"""The backend registry: one entry makes a backend buildable, choosable by auto and described;
``EngineSpec.backend_options`` and ``--backend-option`` reach the backend named, typed."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from vsr.backends import BackendUnavailable, EngineSpec, create_backend, describe, parse_backend_options
from vsr.backends import registry
from vsr.backends.base import BackendBase, as_batch

from tests.conftest import make_clip, synthetic_rgb


@dataclass(frozen=True)
class NearestOptions:
    """The test backend's own tuning: a gain applied to its output (to see the options arrive)."""

    gain: float = 1.0
    device: str = "cpu"


class NearestBackend(BackendBase):
    """A backend kept outside the package: nearest-neighbour upscaling in NumPy."""

    name = "nearest-test"

    def __init__(self, scale: int, options: NearestOptions) -> None:
        self.scale, self.options = scale, options

    @classmethod
    def _from_spec(cls, spec) -> "NearestBackend":
        return cls(spec.scale, spec.options_for(NearestOptions, device=spec.device))

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        batch = as_batch(luma)
        out = batch.repeat(self.scale, axis=2).repeat(self.scale, axis=3) * self.options.gain
        return np.clip(out, 0.0, 1.0)


@pytest.fixture
def nearest_registered(monkeypatch):
    """The one place a new backend is added: an entry in the registry (first in auto's CPU order)."""
    entry = registry.BackendEntry("nearest-test", __name__, "NearestBackend", "NearestOptions",
                                  auto_rank_cpu=-1)
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    return entry


def _luma(height: int = 36, width: int = 48) -> np.ndarray:
    rgb = synthetic_rgb(height, width).astype(np.float32) / 255.0
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])[None, None]


def test_one_registry_entry_makes_a_backend_built_chosen_by_auto_and_described(nearest_registered):
    luma = _luma()
    backend = create_backend(EngineSpec(backend="nearest-test", scale=2, model="realtime"))
    out = backend.upscale_luma(luma)
    assert out.shape == (1, 1, 72, 96)
    assert np.array_equal(out[..., ::2, ::2], luma)  # nearest: every second pixel is the input's
    # The network's facts come from the spec's model, set by the base class, not patched by callers.
    assert backend.receptive_px == 5 and describe(backend) == "nearest-test (cpu)"
    assert registry.auto_order("cpu")[0] == "nearest-test"
    assert create_backend(EngineSpec(scale=2)).name == "nearest-test"  # auto takes it first on the CPU
    assert "nearest-test" not in registry.auto_order("cuda")


def test_backend_options_reach_the_backend_and_the_spec_decides_what_it_says(nearest_registered):
    luma = _luma()
    spec = EngineSpec(backend="nearest-test", scale=2, backend_options=NearestOptions(gain=0.5, device="cuda"))
    backend = create_backend(spec)
    assert backend.options.device == "cpu"  # --device (the spec's field) wins over the options'
    assert np.allclose(backend.upscale_luma(luma)[..., ::2, ::2], luma * 0.5)
    assert parse_backend_options("nearest-test", ["gain=0.25"]) == NearestOptions(gain=0.25)


def test_a_spec_refuses_options_of_another_backend_or_of_auto():
    from vsr.backends.onnxruntime import OrtOptions
    from vsr.backends.tensorrt import TensorRTOptions

    with pytest.raises(BackendUnavailable, match="the tensorrt backend takes TensorRTOptions, not OrtOptions"):
        EngineSpec(backend="tensorrt", device="cuda", backend_options=OrtOptions())
    with pytest.raises(BackendUnavailable, match="name it"):
        EngineSpec(backend="auto", backend_options=TensorRTOptions())
    with pytest.raises(BackendUnavailable, match="unknown backend 'tpu'"):
        EngineSpec(backend="tpu")


@pytest.mark.parametrize("pairs,message", [
    (["workspace_mib=2048", "engine_dir=/tmp/plans"], None),
    (["workspace_mib=lots"], "workspace_mib=lots: not a valid int"),
    (["shapes=1x1"], "set from Python"),
    (["device=cuda:1"], "device: set by --device"),
    (["workspace"], "give KEY=VALUE, KEY one of shapes, workspace_mib, optimization_level, engine_dir"),
])
def test_backend_option_text_is_typed_by_the_options_class(pairs, message):
    if message is None:
        options = parse_backend_options("tensorrt", pairs)
        assert options.workspace_mib == 2048 and str(options.engine_dir) == "/tmp/plans"
        return
    with pytest.raises(BackendUnavailable, match=message.replace("(", r"\(")):
        parse_backend_options("tensorrt", pairs)


def test_precision_fp32_on_a_gpu_backend_means_fp32():
    from vsr.backends.torch import torch_cuda_options

    assert torch_cuda_options(EngineSpec(backend="torch", device="cuda", precision="fp32")).fp16 is False
    assert torch_cuda_options(EngineSpec(backend="torch", device="cuda")).fp16 is True  # auto: the tensor cores' type


def _vsr(*args):
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_vsr_run_refuses_a_bad_backend_option_in_one_line_before_writing(tmp_path):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, frames=6, width=64, height=48)
    result = _vsr("run", src, out, "--scale", "2", "--backend", "onnxruntime", "--model", "espcn",
                  "--backend-option", "gain=2")
    assert result.returncode == 1 and not out.exists()
    assert result.stderr.strip().splitlines() == [
        "Error: --backend-option gain=2: the onnxruntime backend has no options beyond --device and "
        "--precision"]


def test_an_openvino_calibration_given_on_the_command_line_is_the_one_int8_reads(tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    image = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(synthetic_rgb(48, 64)).save(image)
    bad = tmp_path / "patches.npz"
    np.savez(bad, x2=np.zeros((4, 16, 16), np.float32))  # float, not the uint8 patches int8 calibrates on
    result = _vsr("upscale", image, tmp_path / "out.png", "--scale", "2", "--backend", "openvino", "--precision",
                  "int8", "--backend-option", f"calibration={bad}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"Error: {bad}: expected uint8 (N, H, W) luma patches, got float32 (4, 16, 16)"
    assert not (tmp_path / "out.png").exists()
