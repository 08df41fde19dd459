"""The TensorRT plan cache: names (pure, CPU), the fp16 ONNX, and backend availability here."""
import dataclasses

import numpy as np
import pytest

from vsr.backends.engine_cache import ShapeRange, engine_dir, plan_name, timing_cache_name
from vsr.cache import file_sha256

BASE = dict(
    onnx_sha256="ab" * 32,
    shapes=ShapeRange.for_frames(360, 640),
    precision="fp16",
    tensorrt_version="10.13.0.35",
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability=(9, 0),
)

CHANGES = {
    "onnx_sha256": "cd" * 32,
    "shapes": ShapeRange((1, 1, 360, 640), (1, 1, 360, 640), (1, 1, 720, 1280)),
    "precision": "fp32",
    "tensorrt_version": "11.0.0.1",
    "gpu_name": "NVIDIA H200",
    "compute_capability": (8, 9),
}


def test_plan_name_is_deterministic_and_readable():
    name = plan_name(**BASE)
    assert name == plan_name(**dict(BASE))
    assert name.endswith(".plan") and "/" not in name and " " not in name
    for part in ("1x1x360x640", "fp16", "trt10.13.0.35", "nvidia-h100-80gb-hbm3", "sm90", "abababababab"):
        assert part in name


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_plan_name_changes_when_any_part_changes(field):
    assert plan_name(**{**BASE, field: CHANGES[field]}) != plan_name(**BASE)


def test_plan_name_tells_apart_gpu_names_that_slug_alike():
    # 'A/B' and 'A-B' slug the same; the hash over the raw parts keeps the plans apart.
    assert plan_name(**{**BASE, "gpu_name": "GPU A/B"}) != plan_name(**{**BASE, "gpu_name": "GPU A-B"})


def test_plan_name_rejects_bad_inputs():
    with pytest.raises(ValueError):
        plan_name(**{**BASE, "precision": "int8"})
    with pytest.raises(ValueError):
        plan_name(**{**BASE, "onnx_sha256": "not-a-digest"})
    with pytest.raises(ValueError):
        ShapeRange((1, 1, 720, 1280), (1, 1, 360, 640), (1, 1, 1080, 1920))
    with pytest.raises(ValueError):
        ShapeRange.for_frames(360, 640, batch=0)


def test_shape_range_covers():
    shapes = ShapeRange((1, 1, 100, 100), (1, 1, 360, 640), (2, 1, 720, 1280))
    assert shapes.covers((1, 1, 360, 640)) and shapes.covers((2, 1, 720, 1280))
    assert not shapes.covers((1, 1, 721, 640)) and not shapes.covers((3, 1, 360, 640))


def test_timing_cache_name_ignores_the_model_but_not_the_gpu():
    base = dict(tensorrt_version="10.13", gpu_name="NVIDIA H100", compute_capability=(9, 0))
    assert timing_cache_name(**base) != timing_cache_name(**{**base, "compute_capability": (8, 0)})
    assert timing_cache_name(**base) != timing_cache_name(**{**base, "tensorrt_version": "11.0"})


def test_engine_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VSR_ENGINE_DIR", str(tmp_path / "plans"))
    assert engine_dir() == tmp_path / "plans"
    monkeypatch.delenv("VSR_ENGINE_DIR")
    assert engine_dir().name == "engines"


def test_file_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_fp16_onnx_stays_close_to_fp32(tmp_path):
    """The fp16 ONNX built for TensorRT 11 keeps float32 I/O and Y within 2e-3 of fp32."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from vsr.export import export_onnx
    from vsr.models.weights import load_model
    from vsr.onnx_fp16 import cached_fp16_onnx

    fp32 = export_onnx(load_model(3), tmp_path / "m.onnx")
    fp16 = cached_fp16_onnx(fp32, file_sha256(fp32), tmp_path / "cache")
    assert cached_fp16_onnx(fp32, file_sha256(fp32), tmp_path / "cache") == fp16  # converted once
    x = np.random.default_rng(0).random((2, 1, 37, 53), dtype=np.float32)
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"luma": x})[0]
    half = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    assert [i.type for i in half.get_inputs()] == ["tensor(float)"]
    out = half.run(None, {"luma": x})[0]
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(np.clip(out, 0, 1) - np.clip(ref, 0, 1)).max() <= 2e-3


def test_tensorrt_backend_is_unavailable_without_tensorrt_or_gpu():
    from vsr.backends import BackendUnavailable, create_backend

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="TensorRT"):
            create_backend("tensorrt", 3, device="cuda")
    with pytest.raises(BackendUnavailable):
        create_backend("tensorrt", 3, device="cpu")


def test_options_are_frozen():
    from vsr.backends.tensorrt import TensorRTOptions

    with pytest.raises(dataclasses.FrozenInstanceError):
        TensorRTOptions().precision = "fp32"
