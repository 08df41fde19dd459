"""Shared fixtures: the shared data folder (skipped when absent) and media the tests make."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VSR_TEST_DATA", REPO.parent / "shared" / "data"))


def _torch_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _tensorrt_gpu() -> bool:
    """TensorRT imports and cuda-python sees a GPU (what the TensorRT backend itself needs)."""
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False
    err, count = cudart.cudaGetDeviceCount()
    return err == cudart.cudaError_t.cudaSuccess and count > 0


def has_nncf() -> bool:
    try:
        import nncf  # noqa: F401
    except ImportError:
        return False
    return True


needs_nncf = pytest.mark.skipif(not has_nncf(), reason="int8 needs NNCF (pip install -e '.[int8]')")


def pytest_collection_modifyitems(config, items):
    have_data = DATA.is_dir()
    have_cuda = None
    have_tensorrt = None
    for item in items:
        if "needs_data" in item.keywords and not have_data:
            item.add_marker(pytest.mark.skip(reason=f"shared data not found at {DATA} (set VSR_TEST_DATA)"))
        if "needs_cuda" in item.keywords:
            have_cuda = _torch_cuda() if have_cuda is None else have_cuda
            if not have_cuda:
                item.add_marker(pytest.mark.skip(reason="no CUDA GPU visible to torch"))
        if "needs_tensorrt" in item.keywords:
            have_tensorrt = _tensorrt_gpu() if have_tensorrt is None else have_tensorrt
            if not have_tensorrt:
                item.add_marker(pytest.mark.skip(reason="needs TensorRT, cuda-python and a CUDA GPU"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def synthetic_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients, sharp-edged shapes, stripes and fine noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([
        90 + 80 * np.sin(xx / 23.0) * np.cos(yy / 31.0),
        120 + 60 * np.cos((xx + yy) / 17.0),
        100 + 70 * np.sin(np.hypot(xx - width / 2, yy - height / 2) / 9.0),
    ], axis=-1)
    for _ in range(12):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(5, max(6, height // 5))
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(20, 235, size=3)
    stripes = (np.sin(xx / 2.5) > 0)[..., None] * 40.0
    image[height // 3 : height // 2] += stripes[height // 3 : height // 2]
    image += rng.normal(0, 3, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """A folder of three synthetic PNGs of different sizes."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i, (h, w) in enumerate([(96, 120), (81, 75), (120, 96)]):
        Image.fromarray(synthetic_rgb(h, w, seed=i)).save(folder / f"img{i}.png")
    return folder


def make_clip(
    path: Path,
    *,
    width: int = 96,
    height: int = 64,
    frames: int = 12,
    fps: int = 25,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    audio: str | None = None,
    vfr: bool = False,
    color_range: int | None = None,
    rotation_degrees: float | None = None,
) -> list[float]:
    """Write a small real clip with PyAV: moving synthetic content, optional audio (an AAC/MP3/Opus
    sine), variable frame rate, full range or a rotation. Returns the frames' pts in seconds."""
    import av
    from fractions import Fraction

    time_base = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "12"}
        if color_range is not None:
            stream.codec_context.color_range = color_range
        if rotation_degrees is not None:
            stream.set_display_rotation(rotation_degrees)
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream(audio, rate=48000)
            audio_stream.layout = "stereo"
        base = synthetic_rgb(height + 40, width + 40, seed=5)
        pts_seconds, t = [], 0.0
        for i in range(frames):
            rgb = np.ascontiguousarray(base[i % 7 : i % 7 + height, (2 * i) % 40 : (2 * i) % 40 + width])
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            if color_range is not None:
                frame.color_range = color_range
            pts_seconds.append(float(frame.pts * time_base))
            container.mux(stream.encode(frame))
            t += (0.032 if i % 2 == 0 else 0.048) if vfr else 1 / fps
        container.mux(stream.encode(None))
        if audio_stream is not None:
            samples_total = int(48000 * t)
            done = 0
            while done < samples_total:
                n = min(1024, samples_total - done)
                wave = 0.3 * np.sin(2 * np.pi * 440 * (np.arange(done, done + n) / 48000))
                data = np.stack([wave, wave]).astype(np.float32).reshape(1, -1)
                aframe = av.AudioFrame.from_ndarray(data, format="flt", layout="stereo")
                aframe.sample_rate = 48000
                aframe.pts = done
                container.mux(audio_stream.encode(aframe))
                done += n
            container.mux(audio_stream.encode(None))
    return pts_seconds


def decode_all(path: Path):
    """(frames as YuvFrame list, StreamInfo) of a file, through vsr's own reader."""
    from vsr.media.decode import VideoReader

    with VideoReader(path) as reader:
        return list(reader.frames()), reader.info


def wait_for_frames(proc, frames: int = 30) -> None:
    """Block until a running `vsr run` (started with ``VSR_PROGRESS_EVERY_S=0``, stderr piped as
    text) reports ``frames`` frames done on its progress lines; fail, with its stderr, if it ends
    first. A test that signals a run mid-way waits on this rather than on the output file's size,
    which grows in the muxer's flushes and raced with short runs (two flaky failures).

    The pipe is first shrunk to one page: the run then cannot get more than about 70 progress
    lines ahead of this reader. With the usual 64 KiB, a test process slow to read (late in the
    full suite, on CI) read "30 frames" after the run had written all 600 and finished, and the
    signal came too late (the Ctrl-C test's CI failures: OUTPUT complete, "interrupted" at the end)."""
    import fcntl

    try:
        fcntl.fcntl(proc.stderr.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    except (AttributeError, OSError):  # not Linux, or more than a page already written
        pass
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("progress: ") and int(line.split()[1].split("/")[0]) >= frames:
            return
    raise AssertionError(f"the run ended (exit {proc.wait()}) before {frames} frames: {''.join(seen[-20:])}")


#: A spinner of ``busy_cores``: it waits for the common start (so every spinner is loaded before
#: any spins), then spins in 10 ms bursts with a 1 ms sleep between (on this project's VMs a
#: process that never sleeps starved a runnable one for minutes), and ends by itself at the deadline.
_SPINNER = """
import sys, time
start, end = float(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
while time.time() < end:
    burst = time.perf_counter()
    while time.perf_counter() - burst < 0.01:
        pass
    time.sleep(0.001)
"""


@contextlib.contextmanager
def busy_cores(per_core: int = 2, most_seconds: float = 60.0):
    """Other programs holding every core: ``per_core`` spinning processes per core this process may
    use while the block runs (at most ``most_seconds``): what a machine busy with another job
    looks like to a timing."""
    from vsr.hardware import available_cpus

    start = time.time() + 1.0
    spinners = [subprocess.Popen([sys.executable, "-c", _SPINNER, str(start), str(start + most_seconds)])
                for _ in range(per_core * available_cpus())]
    try:
        time.sleep(max(0.0, start + 0.3 - time.time()))  # every spinner spinning
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def upscale_or_skip(backend: str, scale: int, luma, *, label: str | None = None, **options):
    """``create_backend(backend, scale, **options).upscale_luma(luma)``, the engine closed after;
    where the backend cannot run here, the test is skipped with the backend's own reason."""
    from vsr.backends import BackendUnavailable, create_backend

    try:
        engine = create_backend(backend, scale, **options)
    except BackendUnavailable as exc:
        pytest.skip(f"{label or backend}: {exc}")
    try:
        return engine.upscale_luma(luma)
    finally:
        engine.close()


def with_engine(config_class, /, **fields):
    """``config_class`` (RunConfig, LiveConfig, BenchConfig) from flat keyword options, as the
    commands' flags read: the engine's (scale, model, backend, device, weights, precision,
    batch_size, num_threads) go into its ``engine`` spec, over the class's default one."""
    from dataclasses import fields as dataclass_fields, replace

    from vsr.backends import EngineSpec

    engine_names = {f.name for f in dataclass_fields(EngineSpec)}
    engine = {k: fields.pop(k) for k in list(fields) if k in engine_names}
    default = config_class.__dataclass_fields__["engine"].default_factory()
    return config_class(engine=replace(default, **engine), **fields)


def run_config(input_path, output_path, **fields):
    """A ``RunConfig`` from flat keyword options (``with_engine``)."""
    from vsr.pipeline.pipeline import RunConfig

    return with_engine(RunConfig, input_path=input_path, output_path=output_path, **fields)
