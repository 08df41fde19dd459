"""GPU backends against the torch CPU reference. Their logic runs here on device='cpu';
the CUDA and TensorRT tests skip cleanly (needs_cuda / needs_tensorrt) without a GPU."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vsr.backends import BackendUnavailable, create_backend  # noqa: E402
from vsr.backends.gpu_frames import STAGES, GpuFrameUpscaler  # noqa: E402
from vsr.backends.torch_cuda import TorchCudaBackend, TorchCudaOptions  # noqa: E402
from vsr.frames import YuvFrame, chroma_shape  # noqa: E402
from vsr.pipeline.stages import upscale_frames  # noqa: E402

from tests.conftest import synthetic_rgb  # noqa: E402

FP16_MAX_ABS_ERROR = 2e-3  # on Y in [0, 1], the bound for every fp16 backend
GREY_LEVELS = 2  # GPU frames vs the CPU stage (OpenCV's fixed-point bicubic vs torch's float)


@pytest.fixture(scope="module")
def reference():
    backend = create_backend("torch", 3)
    yield backend
    backend.close()


def luma_batch(shape=(2, 1, 41, 57), seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def make_frame(height, width, layout="yuv420p", seed=0, index=0):
    rgb = synthetic_rgb(height, width, seed)
    c_h, c_w = chroma_shape((height, width), layout)
    sub_y, sub_x = -(-height // c_h), -(-width // c_w)
    u = np.ascontiguousarray(rgb[::sub_y, ::sub_x, 1][:c_h, :c_w])
    v = np.ascontiguousarray(rgb[::sub_y, ::sub_x, 2][:c_h, :c_w])
    return YuvFrame(rgb[..., 0].copy(), u, v, layout, 1000 * index, None, index)


def max_level_error(a: YuvFrame, b: YuvFrame) -> int:
    assert a.layout == b.layout and a.luma.shape == b.luma.shape and a.chroma_u.shape == b.chroma_u.shape
    return max(int(np.abs(p.astype(int) - q).max())
               for p, q in zip((a.luma, a.chroma_u, a.chroma_v), (b.luma, b.chroma_u, b.chroma_v)))


# -- torch fast path, on the CPU ----------------------------------------------------------------
@pytest.mark.parametrize("fp16, tolerance", [(False, 1e-5), (True, FP16_MAX_ABS_ERROR)])
def test_torch_fast_path_matches_reference_on_cpu(reference, fp16, tolerance):
    x = luma_batch()
    with TorchCudaBackend(3, options=TorchCudaOptions(device="cpu", fp16=fp16)) as backend:
        out = backend.upscale_luma(x)
        assert out.shape == (2, 1, 123, 171) and out.dtype == np.float32
        assert np.abs(out - reference.upscale_luma(x)).max() <= tolerance
        assert out.min() >= 0 and out.max() <= 1


def test_torch_fast_path_uint8_rounds_like_the_cpu_stage(reference):
    from vsr.pipeline.stages import float_to_uint8

    lumas = np.random.default_rng(1).integers(0, 256, (1, 30, 44), dtype=np.uint8)
    with TorchCudaBackend(3, options=TorchCudaOptions(device="cpu", fp16=False)) as backend:
        out = backend.upscale_luma_uint8(lumas)
        again = backend.upscale_luma_uint8(lumas)
        assert len(backend._states) == 1  # buffers are made once per shape, then reused
    expected = float_to_uint8(reference.upscale_luma(lumas[:, None] / np.float32(255))[:, 0])
    assert out.dtype == np.uint8 and out.shape == (1, 90, 132)
    assert int(np.abs(out.astype(int) - expected).max()) <= 1
    np.testing.assert_array_equal(out, again)


def test_torch_fast_path_keeps_at_most_max_shapes():
    with TorchCudaBackend(2, options=TorchCudaOptions(device="cpu", fp16=False, max_shapes=2)) as backend:
        for size in (10, 11, 12, 11):
            backend.upscale_luma(luma_batch((1, 1, size, size)))
        assert [key[1][1] for key in backend._states] == [12, 11]


# -- GPU-resident frames, on the CPU -----------------------------------------------------------
@pytest.mark.parametrize("layout, size", [("yuv420p", (48, 64)), ("yuv420p", (37, 51)),
                                          ("yuv422p", (40, 56)), ("yuv444p", (33, 45))])
def test_gpu_frames_match_the_cpu_stage(reference, layout, size):
    frames = [make_frame(*size, layout, seed=i, index=i) for i in range(3)]
    expected = list(upscale_frames(frames, reference))
    with GpuFrameUpscaler(3, options=TorchCudaOptions(device="cpu", fp16=False)) as upscaler:
        got = list(upscaler.upscale_frames(frames))
        assert len(upscaler._chroma) == 1 and len(upscaler.backend._states) == 1
    for g, e in zip(got, expected):
        assert (g.pts, g.index) == (e.pts, e.index)
        assert max_level_error(g, e) <= GREY_LEVELS


def test_gpu_frames_fp16_and_output_layout(reference):
    frame = make_frame(40, 60, "yuv420p")
    (expected,) = upscale_frames([frame], reference, out_layout="yuv444p")
    stage_seconds = {}
    with GpuFrameUpscaler(3, options=TorchCudaOptions(device="cpu"), out_layout="yuv444p") as upscaler:
        got = upscaler.upscale_frame(frame, stage_seconds)
    assert got.layout == "yuv444p" and got.chroma_u.shape == (120, 180)
    assert max_level_error(got, expected) <= GREY_LEVELS
    assert sorted(stage_seconds) == sorted(STAGES) and all(t >= 0 for t in stage_seconds.values())


# -- availability -----------------------------------------------------------------------------
def test_cuda_backends_say_unavailable_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    with pytest.raises(BackendUnavailable, match="CUDA"):
        create_backend("torch", 3, device="cuda")
    with pytest.raises(BackendUnavailable):
        GpuFrameUpscaler(3)


@pytest.mark.parametrize("cuda,tensorrt,data", [(False, False, False), (True, False, True), (True, True, True)])
def test_marks_skip_exactly_what_is_missing(monkeypatch, tmp_path, cuda, tensorrt, data):
    """conftest's hook must skip a marked test when (and only when) what it needs is missing:
    a hook that skipped everything, or nothing, would hide GPU tests or fail them on CPUs."""
    from tests import conftest

    monkeypatch.setattr(conftest, "_torch_cuda", lambda: cuda)
    monkeypatch.setattr(conftest, "_tensorrt_gpu", lambda: tensorrt)
    monkeypatch.setattr(conftest, "DATA", tmp_path if data else tmp_path / "absent")

    class Item:
        def __init__(self, *marks):
            self.keywords = dict.fromkeys(marks, True)
            self.skips = []

        def add_marker(self, marker):
            self.skips.append(marker.kwargs["reason"])

    items = {mark: Item(mark) for mark in ("needs_cuda", "needs_tensorrt", "needs_data")}
    plain = Item()
    conftest.pytest_collection_modifyitems(None, [*items.values(), plain])
    assert bool(items["needs_cuda"].skips) is not cuda
    assert bool(items["needs_tensorrt"].skips) is not tensorrt
    assert bool(items["needs_data"].skips) is not data
    assert plain.skips == []


# -- CUDA (skipped without a GPU) --------------------------------------------------------------
@pytest.mark.needs_cuda
@pytest.mark.parametrize("graphs", [True, False])
def test_torch_cuda_fp16_matches_reference(reference, graphs):
    x = luma_batch((1, 1, 90, 160))
    options = TorchCudaOptions(device="cuda", cuda_graphs=graphs)
    with TorchCudaBackend(3, options=options) as backend:
        for _ in range(3):  # replays of the captured graph must stay correct
            out = backend.upscale_luma(x)
            assert np.abs(out - reference.upscale_luma(x)).max() <= FP16_MAX_ABS_ERROR
        x2 = luma_batch((1, 1, 90, 160), seed=5)  # new data through the same static buffers
        assert np.abs(backend.upscale_luma(x2) - reference.upscale_luma(x2)).max() <= FP16_MAX_ABS_ERROR


@pytest.mark.needs_cuda
def test_create_backend_torch_cuda_is_the_fast_path():
    backend = create_backend("torch", 3, device="cuda")
    try:
        assert isinstance(backend, TorchCudaBackend)
    finally:
        backend.close()


@pytest.mark.needs_cuda
def test_gpu_frames_on_cuda_match_the_cpu_stage(reference):
    frames = [make_frame(72, 128, "yuv420p", seed=i, index=i) for i in range(4)]
    expected = list(upscale_frames(frames, reference))
    with GpuFrameUpscaler(3, options=TorchCudaOptions(device="cuda")) as upscaler:
        for g, e in zip(upscaler.upscale_frames(frames), expected):
            assert max_level_error(g, e) <= GREY_LEVELS


# -- TensorRT (skipped unless TensorRT imports and a GPU is visible) ---------------------------
@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("precision, tolerance", [("fp16", FP16_MAX_ABS_ERROR), ("fp32", 1e-4)])
def test_tensorrt_builds_caches_and_matches_reference(tmp_path, reference, precision, tolerance):
    from vsr.backends.engine_cache import ShapeRange
    from vsr.backends.tensorrt import TensorRTBackend, TensorRTOptions
    from vsr.export import export_onnx
    from vsr.models.weights import load_model

    onnx_path = export_onnx(load_model(3), tmp_path / "x3.onnx")  # the reference's own weights
    shapes = ShapeRange((1, 1, 32, 32), (1, 1, 90, 160), (1, 1, 180, 320))
    options = TensorRTOptions(precision=precision, shapes=shapes, engine_dir=tmp_path / "engines")
    with TensorRTBackend(3, onnx_path, options) as backend:
        plan = backend.plan_path(shapes)
        assert plan.is_file() and precision in plan.name
        built_at = plan.stat().st_mtime_ns
        for shape in [(1, 1, 90, 160), (2, 1, 41, 57), (1, 1, 180, 320)]:
            x = luma_batch(shape)
            out = backend.upscale_luma(x)
            assert out.shape == (shape[0], 1, shape[2] * 3, shape[3] * 3)
            assert np.abs(out - reference.upscale_luma(x)).max() <= tolerance
        frames = [luma_batch((1, 1, 64, 96), seed=i)[0] for i in range(5)]
        for x, out in zip(frames, backend.map_luma(frames)):  # two frames in flight
            assert np.abs(out - reference.upscale_luma(x)[0]).max() <= tolerance
        # A size outside the profile gets its own exact plan, not an error.
        x = luma_batch((1, 1, 200, 360))
        assert np.abs(backend.upscale_luma(x) - reference.upscale_luma(x)).max() <= tolerance
    assert any(p.name.startswith("timing_") for p in (tmp_path / "engines").iterdir())
    with TensorRTBackend(3, onnx_path, options) as again:  # the cached plan is loaded, not rebuilt
        assert again.plan_path(shapes) == plan and plan.stat().st_mtime_ns == built_at


@pytest.mark.needs_tensorrt
def test_create_backend_tensorrt():
    backend = create_backend("tensorrt", 3, device="cuda")
    try:
        out = backend.upscale_luma(luma_batch((1, 1, 36, 64)))
        assert out.shape == (1, 1, 108, 192)
    finally:
        backend.close()
