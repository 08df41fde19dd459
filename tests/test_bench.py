"""vsr bench on a tiny clip the test writes with PyAV (CPU backends: what runs everywhere)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from vsr.bench import PAPER_FPS, STAGE_ORDER, BenchConfig, run_bench
from vsr.cli import main

from tests.conftest import synthetic_rgb, with_engine


@pytest.fixture
def tiny_clip(tmp_path):
    import av

    path = tmp_path / "tiny.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(synthetic_rgb(48, 64, seed=i), format="rgb24")
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode(None))
    return path


def test_bench_on_a_clip(tiny_clip):
    report = run_bench(with_engine(BenchConfig, scale=2, input=tiny_clip, size=None, frames=4, warmup_frames=1))
    assert report.frames == 4 and report.input_hw == (48, 64) and report.output_hw == (96, 128)
    for stage in ("decode", "engine", "chroma", "encode"):
        assert report.stage_fps[stage] > 0
    assert report.stage_fps["upload"] is None and report.stage_fps["download"] is None  # CPU backend
    assert any("host frames on the CPU: no upload/download" in note for note in report.notes)
    assert report.engine_only_fps > 0 and report.end_to_end_fps > 0
    data = json.loads(report.to_json())
    assert data["paper_target"]["fps"] == pytest.approx(PAPER_FPS, abs=0.1)
    assert {"python", "av", "onnxruntime"} <= set(data["versions"])
    table = report.to_table()
    assert "paper target" in table and "end to end" in table
    assert all(stage in table for stage in STAGE_ORDER)


def test_bench_cli_with_synthetic_frames(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--size", "40x30", "--scale", "3", "--backend", "torch",
                                       "--frames", "3", "--warmup", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "paper target (K2, 1080p x3)" in result.output
    data = json.loads(out.read_text())
    assert data["output_hw"] == [90, 120] and data["stage_fps"]["decode"] is None
    assert data["machine"]["cpu_cores"] >= 1 and data["backend"].startswith("torch")
    # The figure names its CPU fully: model, family/model/stepping, cores (and the speed flags).
    assert f"{data['machine']['cpu_cores']} cores" in data["machine"]["cpu_identity"]
    assert "family" in data["machine"]["cpu_identity"] and data["machine"]["cpu_identity"] in data["machine"]["device"]


def test_bench_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    both = runner.invoke(main, ["bench", "--input", "x.mp4", "--size", "40x30"])
    assert both.exit_code != 0 and "not both" in both.output
    bad = runner.invoke(main, ["bench", "--size", "forty"])
    assert bad.exit_code != 0 and "WIDTHxHEIGHT" in bad.output
    missing = runner.invoke(main, ["bench", "--input", str(tmp_path / "none.mp4"), "--frames", "2"])
    assert missing.exit_code == 1 and "Error: " in missing.output and "Traceback" not in missing.output


def test_build_engine_without_tensorrt_is_one_line():
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    result = CliRunner().invoke(main, ["build-engine", "--scale", "3", "--size", "640x360"])
    assert result.exit_code == 1 and "TensorRT" in result.output and "Traceback" not in result.output


def test_synthetic_frames_are_valid():
    from vsr.bench import synthetic_frames

    frames = synthetic_frames(33, 21, 2)
    assert frames[0].chroma_u.shape == (11, 17) and not np.array_equal(frames[0].luma, frames[1].luma)


@pytest.mark.parametrize("backend", ["auto", "onnxruntime", "openvino"])
def test_bench_measures_the_upscaler_vsr_run_builds(tiny_clip, backend):
    """One seam: bench builds its upscaler with the factory `vsr run` uses, so `auto` names the
    same pick and the end-to-end loop encodes every frame of the clip through it."""
    from vsr.backends import EngineSpec
    from vsr.pipeline.upscaler import create_frame_upscaler

    upscaler = create_frame_upscaler(EngineSpec(scale=2, backend=backend))
    expected = upscaler.description
    upscaler.close()
    report = run_bench(with_engine(BenchConfig, scale=2, backend=backend, input=tiny_clip, size=None, frames=6, warmup_frames=1))
    assert report.backend == expected
    assert report.end_to_end_fps > 0 and report.frames == 6


def _decoded_frames(path, count):
    from vsr.media.decode import VideoReader

    with VideoReader(path) as reader:
        return list(reader.frames(max_frames=count))


@pytest.mark.parametrize("backend,batch_size", [("onnxruntime", 1), ("openvino", 1), ("onnxruntime", 4)])
def test_bench_end_to_end_encodes_the_frames_vsr_run_ships(tiny_clip, backend, batch_size):
    """The end-to-end loop runs the shipped upscaler (host frames, luma through the backend in
    batches, chroma bicubic, `vsr run`'s yuv420p): every frame it hands the encoder equals
    what HostFrameUpscaler makes of the decoded clip, pixel for pixel, in order."""
    from vsr.backends import create_backend
    from vsr.pipeline.upscaler import HostFrameUpscaler

    upscaled = []
    report = run_bench(with_engine(BenchConfig, scale=2, backend=backend, input=tiny_clip, size=None, frames=6,
                                   warmup_frames=1, batch_size=batch_size, num_threads=1),
                       on_upscaled=upscaled.append)
    assert report.config["batch_size"] == batch_size and report.config["num_threads"] == 1
    with HostFrameUpscaler(create_backend(backend, 2, num_threads=1), out_layout="yuv420p",
                           batch_size=batch_size) as reference:
        assert report.backend == reference.description  # e.g. "openvino bf16 (cpu)"
        assert report.backend.startswith(backend) and report.backend.endswith(" (cpu)")
        expected = list(reference.upscale_frames(_decoded_frames(tiny_clip, 6)))
    assert len(upscaled) == len(expected) == 6
    for got, want in zip(upscaled, expected):
        assert got.index == want.index and got.layout == "yuv420p"
        assert got.luma.shape == (96, 128) and got.chroma_u.shape == (48, 64)
        np.testing.assert_array_equal(got.luma, want.luma)
        np.testing.assert_array_equal(got.chroma_u, want.chroma_u)
        np.testing.assert_array_equal(got.chroma_v, want.chroma_v)
    for stage in ("engine", "chroma"):
        assert report.stage_fps[stage] > 0
    assert report.stage_fps["upload"] is None and report.stage_fps["download"] is None
    assert ("batches of 4" in report.engine_note) == (batch_size == 4)


def test_bench_runs_given_weights_through_the_factory(tiny_clip, tmp_path):
    """--weights reach the upscaler as they reach `vsr run`'s: a missing file is refused, and
    the shipped ONNX file given explicitly gives the shipped upscaler's frames."""
    from vsr.errors import InputError
    from vsr.models.weights import shipped_weights

    with pytest.raises(InputError, match="no such weights file"):
        run_bench(with_engine(BenchConfig, scale=2, backend="onnxruntime", weights=tmp_path / "missing.onnx",
                              input=tiny_clip, size=None, frames=2, warmup_frames=0))
    shipped, given = [], []
    for weights, out in ((None, shipped), (shipped_weights(2, "onnx"), given)):
        report = run_bench(with_engine(BenchConfig, scale=2, backend="onnxruntime", weights=weights, input=tiny_clip, size=None,
                                       frames=3, warmup_frames=0), on_upscaled=out.append)
    assert report.config["weights"] == str(shipped_weights(2, "onnx"))
    assert len(given) == len(shipped) == 3
    assert all(np.array_equal(a.luma, b.luma) for a, b in zip(given, shipped))


@pytest.mark.needs_cuda
@pytest.mark.parametrize("backend", ["auto", "torch", "onnxruntime"])
def test_bench_on_cuda_measures_the_path_vsr_run_takes(backend):
    """--device cuda with auto or torch: GPU-resident frames (upload and download stages), as
    `vsr run` ships them; a GPU backend on host frames says its copies are per batch."""
    from vsr.backends import EngineSpec
    from vsr.pipeline.upscaler import create_frame_upscaler

    from vsr.backends import BackendUnavailable

    spec = EngineSpec(scale=2, backend=backend, device="cuda")
    try:
        upscaler = create_frame_upscaler(spec, out_layout="yuv420p")
    except BackendUnavailable as exc:
        pytest.skip(f"{backend} cannot run on CUDA here: {exc}")
    expected, gpu_frames = upscaler.description, hasattr(upscaler, "upscale_frame")
    upscaler.close()
    report = run_bench(with_engine(BenchConfig, scale=2, backend=backend, device="cuda", size=(64, 48), frames=4,
                                   warmup_frames=1))
    assert report.backend == expected
    assert gpu_frames == (backend in ("auto", "torch"))
    assert (report.stage_fps["upload"] is not None) == gpu_frames
    assert not any("no upload/download stages (the engine reads host memory)" in note for note in report.notes)
    if not gpu_frames:
        assert any("copied to the device and back per batch" in note for note in report.notes)
