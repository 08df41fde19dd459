"""The Python API (vsr.Upscaler, vsr.upscale_video): the same pixels as the CLI, typed
keyword-only options, named errors, and an import that stays light."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import vsr

from tests.conftest import make_clip, synthetic_rgb

ENGINE = {"model": "espcn", "backend": "onnxruntime"}  # deterministic: no timing picks anything


def cli(*args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr
    return result


def test_import_stays_light():
    code = ("import sys, vsr, vsr.cli; vsr.InputError; "
            "print(','.join(m for m in ('numpy', 'av', 'torch', 'openvino', 'onnxruntime', 'cv2') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_named_errors_and_typed_options(tmp_path):
    for name in ("VsrError", "InputError", "OutputError", "UnsupportedScale", "BackendUnavailable"):
        assert issubclass(getattr(vsr, name), vsr.VsrError)
    with pytest.raises(vsr.UnsupportedScale):
        vsr.Upscaler(5)
    with pytest.raises(ValueError, match="'auto', 'openvino'"):
        vsr.Upscaler(2, backend="tensorflow")
    with pytest.raises(TypeError):
        vsr.Upscaler(2, "espcn")  # options are keyword-only
    with pytest.raises(vsr.InputError, match="no such file"):
        vsr.upscale_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", scale=2, model="espcn", workers=1)
    with vsr.Upscaler(2, **ENGINE) as upscaler:
        with pytest.raises(vsr.InputError, match="expected"):
            upscaler.upscale_image(np.zeros((20, 20, 2), np.uint8))
    with pytest.raises(RuntimeError, match="closed"):
        upscaler.upscale_image(np.zeros((20, 20, 3), np.uint8))


def test_upscale_image_gives_what_vsr_upscale_writes(tmp_path):
    from vsr.images import read_picture, write_png_rows

    rgb = synthetic_rgb(70, 90, seed=3)
    deep = (rgb.astype(np.uint16) * 257 + np.arange(90, dtype=np.uint16)[None, :, None]).astype(np.uint16)
    write_png_rows(tmp_path / "in.png", 90, 70, [rgb])
    write_png_rows(tmp_path / "in16.png", 90, 70, [deep])
    cli("upscale", tmp_path / "in.png", tmp_path / "out.png", "--scale", "2", "--model", "espcn",
        "--backend", "onnxruntime", "-q")
    cli("upscale", tmp_path / "in16.png", tmp_path / "out16.png", "--scale", "2", "--model", "espcn",
        "--backend", "onnxruntime", "-q")
    with vsr.Upscaler(2, **ENGINE) as upscaler:
        ours = upscaler.upscale_image(rgb)
        ours16 = upscaler.upscale_image(deep)
        grey = upscaler.upscale_image(rgb[..., 1])
    assert ours.shape == (140, 180, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, read_picture(tmp_path / "out.png").rgb)
    assert ours16.dtype == np.uint16
    np.testing.assert_array_equal(ours16, read_picture(tmp_path / "out16.png").rgb)
    assert grey.shape == (140, 180) and grey.dtype == np.uint8


def _planes(frame) -> list[np.ndarray]:
    from vsr.media.decode import plane_array

    height, width = frame.height, frame.width
    shapes = [(height, width), ((height + 1) // 2, (width + 1) // 2), ((height + 1) // 2, (width + 1) // 2)]
    return [plane_array(frame.planes[i], shapes[i]).copy() for i in range(3)]


def test_upscale_frames_and_upscale_video_give_what_vsr_run_writes(tmp_path):
    """A clip made by PyAV; `vsr run` writes it losslessly (x264 at CRF 0), so its decoded
    frames are exactly what the engine gave; the API's frames and upscale_video's file must match."""
    import av

    from tests.conftest import decode_all

    src = tmp_path / "in.mp4"
    make_clip(src, width=96, height=64, frames=6)
    lossless = ["--codec", "libx264", "--crf", "0", "--workers", "1"]
    cli("run", src, tmp_path / "cli.mkv", "--scale", "2", "--model", "espcn", "--backend", "onnxruntime",
        *lossless, "-q")
    expected, _ = decode_all(tmp_path / "cli.mkv")

    progress = []
    stats = vsr.upscale_video(src, tmp_path / "api.mkv", scale=2, codec="libx264", crf=0, workers=1,
                              on_progress=lambda done, total: progress.append((done, total)), **ENGINE)
    assert isinstance(stats, vsr.RunStats) and stats.frames == 6
    assert progress[-1] == (6, 6)
    from_api, _ = decode_all(tmp_path / "api.mkv")

    with vsr.Upscaler(2, **ENGINE) as upscaler, av.open(str(src)) as container:
        frames = list(upscaler.upscale_frames(container.decode(video=0)))
    assert len(frames) == len(expected) == len(from_api) == 6
    for got, file_frame, api_frame in zip(frames, expected, from_api):
        assert isinstance(got, av.VideoFrame) and (got.width, got.height) == (192, 128)
        for ours, theirs, api in zip(_planes(got), (file_frame.luma, file_frame.chroma_u, file_frame.chroma_v),
                                     (api_frame.luma, api_frame.chroma_u, api_frame.chroma_v)):
            np.testing.assert_array_equal(ours, theirs)
            np.testing.assert_array_equal(api, theirs)


def test_upscale_frames_is_lazy_and_takes_rgb():
    taken = []

    def source():
        for i in range(50):
            taken.append(i)
            yield synthetic_rgb(40, 48, seed=i)

    with vsr.Upscaler(3, **ENGINE) as upscaler:
        frames = upscaler.upscale_frames(source())
        first = next(frames)
        assert first.shape == (120, 144, 3) and first.dtype == np.uint8
        assert len(taken) < 10  # frames in flight, not the whole stream
        assert sum(1 for _ in frames) == 49


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / mse)


def test_tensor_frames_stay_tensors_on_cpu():
    """The device-tensor path, run on the CPU here: the same network and colour maths as the
    image path (only torch's bicubic chroma differs from MATLAB's)."""
    torch = pytest.importorskip("torch")
    rgb = synthetic_rgb(48, 64, seed=2)
    with vsr.Upscaler(2, model="espcn", backend="torch") as upscaler:
        out = next(upscaler.upscale_frames([torch.from_numpy(rgb)]))
        reference = upscaler.upscale_image(rgb)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and tuple(out.shape) == (96, 128, 3)
    assert _psnr(out.numpy(), reference) > 35


@pytest.mark.needs_cuda
def test_cuda_tensors_in_and_out():
    import torch

    rgb = synthetic_rgb(72, 96, seed=4)
    with vsr.Upscaler(2, model="espcn", device="cuda") as upscaler:
        outs = list(upscaler.upscale_frames([torch.from_numpy(rgb).cuda() for _ in range(3)]))
        reference = upscaler.upscale_image(rgb)
    assert all(o.is_cuda and o.dtype == torch.uint8 and tuple(o.shape) == (144, 192, 3) for o in outs)
    assert _psnr(outs[0].cpu().numpy(), reference) > 35  # fp16 on the GPU


def test_missing_gpu_is_a_named_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    with pytest.raises(vsr.BackendUnavailable, match="no CUDA GPU"):
        vsr.Upscaler(2, device="cuda:0")


def test_the_api_types_name_the_library_choices():
    """The Literal types type checkers read list exactly what the library accepts at run time."""
    import typing

    from vsr import api, backends

    assert typing.get_args(api.BackendName) == ("auto", *backends.BACKENDS) == api.BACKENDS
    assert typing.get_args(api.Precision) == backends.PRECISIONS == api.PRECISIONS
