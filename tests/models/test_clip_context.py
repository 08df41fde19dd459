"""A clip's context folded into a network with a global context: the fold is exact, the frames it
is read from are spread over the clip, and `vsr run` runs the folded network (whose int8 records
are its source's) as the model choice timed it."""
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _context_network(seed: int = 0):
    from vsr.models.reparam import RepSR

    torch.manual_seed(seed)
    network = RepSR(3, channels=8, blocks=2, stride=2, act="relu", context=6, codec_stats=True)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # the context's last layer and the tail start at zero
    return network.eval().collapse()


def _picture(seed: int, height: int = 37, width: int = 53) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.standard_normal((height, width)), 0), 1)
    noisy = 128 + 60 * smooth / np.abs(smooth).max() + rng.normal(0, 4, (height, width))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _as_tensor(plane: np.ndarray):
    return torch.from_numpy(plane.astype(np.float32) / 255)[None, None]


def test_a_picture_s_own_context_folded_gives_the_network_s_output():
    from vsr.models.clip_context import measure_context

    network = _context_network()
    plane = _picture(1)
    folded = network.folded(torch.tensor(measure_context(network, [plane]).pooled))
    assert folded.context is None
    with torch.no_grad():
        expected, got = network(_as_tensor(plane)), folded(_as_tensor(plane))
    assert (expected - got).abs().max() < 1e-5
    # Another picture's context is another network: the fold is not a no-op.
    other = network.folded(torch.tensor(measure_context(network, [_picture(7) // 3]).pooled))
    with torch.no_grad():
        assert (other(_as_tensor(plane)) - expected).abs().max() > 1e-3


def test_a_clip_s_context_is_the_mean_of_its_frames_pooled_inputs():
    from vsr.models.clip_context import ClipContext, measure_context

    network = _context_network()
    planes = [_picture(seed) for seed in (1, 2, 3)]
    context = measure_context(network, planes)
    each = np.array([measure_context(network, [p]).pooled for p in planes])
    assert context.frames == 3 and np.allclose(context.pooled, each.mean(0), atol=1e-6)
    assert context.digest != measure_context(network, planes[:1]).digest
    assert ClipContext(context.pooled, 3).digest == context.digest


def _numbered_clip(path, frames: int = 24, keyint: int = 6) -> None:
    """Flat frames whose grey level tells their index, a keyframe every ``keyint`` frames."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"qp": "0", "g": str(keyint),
                                                                    "keyint_min": str(keyint), "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            picture = np.full((48, 64, 3), 20 + 8 * index, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 25)
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_sampled_frames_are_spread_over_the_clip_and_skip_the_keyframes(tmp_path):
    from vsr.media.decode import VideoReader, sample_frames

    clip = tmp_path / "numbered.mp4"
    _numbered_clip(clip)
    with VideoReader(clip) as reader:
        info = reader.info
        levels = [int(np.median(f.luma)) for f in reader.frames()]
    frames = sample_frames(clip, info, points=4, per_point=2)
    indices = [levels.index(min(levels, key=lambda v: abs(v - int(np.median(f.luma))))) for f in frames]
    assert len(indices) == 8 and len(set(indices)) == 8
    assert not any(i % 6 == 0 for i in indices), indices  # never an intra frame
    assert min(indices) < 6 and max(indices) >= 18, indices  # from the start to the last quarter


def _vsr(*args):
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True)


def test_run_folds_the_clip_s_context_and_the_fold_keeps_the_source_s_int8_record(tmp_path, monkeypatch):
    from tests.conftest import make_clip
    from vsr.backends.int8 import onnx_digest, recorded_loss_db
    from vsr.models.registry import get_model
    from vsr.models.weights import shipped_weights

    if not get_model("realtime-compressed-plus").global_context(3):
        pytest.skip("no shipped network has a global context")
    cache = tmp_path / "cache"
    monkeypatch.setenv("VSR_CACHE_DIR", str(cache))
    clip = tmp_path / "in.mp4"
    make_clip(clip, width=96, height=64, frames=20)
    result = _vsr("run", clip, tmp_path / "out.mp4", "--scale", "3", "--model", "realtime-compressed-plus",
                  "--backend", "openvino", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "context read from" in result.stderr and "folded into its convolutions" in result.stderr
    folds = sorted((cache / "onnx").glob("realtime-compressed-plus_x3_*_fold*.onnx"))
    assert len(folds) == 1
    source = shipped_weights(3, "onnx", "realtime-compressed-plus")
    assert (folds[0].parent / (folds[0].name + ".source")).read_text() == onnx_digest(source)
    assert onnx_digest(folds[0]) != onnx_digest(source)
    # The fold has its source's record, measured folded; the source reading its context per frame has none.
    assert recorded_loss_db(folds[0]) is not None and recorded_loss_db(source) is None
    # Another clip is another fold, but the same cost: precision auto's decision is reused.
    other = tmp_path / "other.mp4"
    make_clip(other, width=128, height=72, frames=16, pix_fmt="yuv444p")
    result = _vsr("run", other, tmp_path / "out2.mp4", "--scale", "3", "--model", "realtime-compressed-plus",
                  "--backend", "openvino", "--workers", "1")
    assert result.returncode == 0, result.stderr
    folds = sorted((cache / "onnx").glob("realtime-compressed-plus_x3_*_fold*.onnx"))
    assert len(folds) == 2
    # (Whether the decision is written depends on the machine being quiet: compare where it goes.)
    from vsr.backends.precision import _cache_path

    assert _cache_path(folds[0])[0] == _cache_path(folds[1])[0] != _cache_path(source)[0]


def test_model_choice_times_a_context_network_folded():
    from vsr.backends import EngineSpec
    from vsr.models.registry import get_model
    from vsr.tuning.model_choice import EngineTiming, choose_model, model_fingerprint

    seen = {}

    def measure(spec, width_px, height_px):
        seen[spec.model] = spec.context
        return EngineTiming(1000.0, 0.0)

    choose_model(EngineSpec(scale=3, backend="onnxruntime"), 640, 360, 1e-3, degradation="compressed",
                 measure=measure)
    for name, context in seen.items():
        folded = get_model(name).global_context(3)
        assert (context is not None) == folded, name
        assert ("+fold" in model_fingerprint(name, 3)) == folded
        if folded:
            assert context.frames == 0 and not any(context.pooled)


def test_an_onnx_of_one_s_own_is_not_folded(tmp_path):
    from vsr.backends.files import has_global_context, onnx_for
    from vsr.models.clip_context import ClipContext
    from vsr.models.weights import shipped_weights

    onnx = shipped_weights(3, "onnx", "realtime-compressed-plus")
    assert not has_global_context(3, "espcn", onnx)
    assert onnx_for(3, onnx, "espcn", ClipContext((0.0,), 1)) == onnx


def test_live_on_a_file_folds_the_file_s_context(tmp_path, monkeypatch):
    from tests.conftest import make_clip, with_engine
    from vsr.live import LiveConfig, run_live
    from vsr.models.registry import get_model

    if not get_model("realtime-compressed-plus").global_context(3):
        pytest.skip("no shipped network has a global context")
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path / "cache"))
    clip = tmp_path / "in.mp4"
    make_clip(clip, width=96, height=64, frames=12)
    lines = []
    report = run_live(with_engine(LiveConfig, source=str(clip), scale=3, model="realtime-compressed-plus",
                                  backend="openvino", headless=True, as_fast_as_possible=True, max_frames=4),
                      status=lines.append)
    assert report.frames_processed == 4
    assert any("folded into its convolutions" in line for line in lines), lines
    assert list((tmp_path / "cache" / "onnx").glob("*_fold*.onnx"))


def test_live_from_a_stream_folds_its_first_frames_context_then_swaps(tmp_path, monkeypatch):
    """A stream (here a file:// URL, which `vsr live` reads as a stream: paced, newest frame wins)
    starts with the network reading each frame's context; once its first frames, taken a spacing
    apart in media time, are folded, the session runs the plain network with their mean context."""
    import numpy as np

    from tests.conftest import make_clip, with_engine
    from vsr.models import clip_context
    from vsr.live import LiveConfig, LiveSession
    from vsr.media.camera import LiveSource, _paced
    from vsr.models.clip_context import measure_context
    from vsr.models.registry import get_model
    from vsr.models.weights import load_model

    if not get_model("realtime-compressed-plus").global_context(3):
        pytest.skip("no shipped network has a global context")
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(clip_context, "FIRST_FRAMES", 3)
    monkeypatch.setattr(clip_context, "FIRST_SPACING_S", 0.2)
    # A real stream arrives at its frame rate; a file:// one is decoded as fast as it goes.
    monkeypatch.setattr(LiveSource, "frames", lambda self: _paced(self._frames_pyav()))
    clip = tmp_path / "in.mp4"
    make_clip(clip, width=96, height=64, frames=300, fps=30)  # 10 s
    lines, taken = [], []
    config = with_engine(LiveConfig, source=f"file://{clip}", scale=3, model="realtime-compressed-plus",
                         backend="openvino", headless=True)
    with LiveSession(config, status=lines.append) as session:
        assert session.source.info.kind == "stream"
        fold, first = session._late_fold, session.upscaler
        assert fold is not None and any("read from each frame" in line for line in lines), lines
        offer = fold.offer
        monkeypatch.setattr(fold, "offer", lambda picture, pts_s: (taken.append((picture.luma.copy(), pts_s)),
                                                                   offer(picture, pts_s)))
        while fold._thread is None:
            assert session.step(), "the stream ended before its first frames were taken"
        fold._thread.join()
        assert session.step()
        assert session._late_fold is None and session.upscaler is not first
    assert any("folded into its convolutions: a plain network" in line for line in lines), lines
    assert list((tmp_path / "cache" / "onnx").glob("*_fold*.onnx"))
    kept = [taken[0]]
    for luma, pts_s in taken[1:]:
        if pts_s - kept[-1][1] >= 0.2:
            kept.append((luma, pts_s))
    assert len(kept) >= 3 and len(taken) > 3  # frames between the kept ones were passed over
    expected = measure_context(load_model(3, None, "realtime-compressed-plus"), [luma for luma, _ in kept[:3]])
    assert fold.context.frames == 3
    np.testing.assert_allclose(fold.context.pooled, expected.pooled, rtol=1e-6, atol=1e-7)


def test_a_piped_input_folds_its_first_frames_context(tmp_path):
    """A pipe cannot be read twice: `vsr run -` reads ahead through its first seconds, folds the
    context of the frames FirstFrames keeps (one every FIRST_SPACING_S, from the first), and then
    upscales every frame, the held-back ones included."""
    import os
    import subprocess
    import sys

    import av

    from tests.conftest import make_clip
    from vsr.media.decode import VideoReader
    from vsr.models.clip_context import FIRST_FRAMES, FirstFrames, measure_context
    from vsr.models.registry import get_model
    from vsr.models.weights import load_model

    if not get_model("realtime-compressed-plus").global_context(3):
        pytest.skip("no shipped network has a global context")
    clip = tmp_path / "in.ts"
    make_clip(clip, width=96, height=64, frames=90, fps=30)  # 3 s: the first frames span 2
    cache = tmp_path / "cache"
    out = tmp_path / "out.mp4"
    with open(clip, "rb") as stdin:
        result = subprocess.run([sys.executable, "-m", "vsr", "run", "-", str(out), "--scale", "3", "--model",
                                 "realtime-compressed-plus"], stdin=stdin, capture_output=True, text=True,
                                env=dict(os.environ, VSR_CACHE_DIR=str(cache)), timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"its context read from its first {FIRST_FRAMES} frames" in result.stderr
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 90
    first = FirstFrames()
    with VideoReader(clip) as reader:
        for frame in reader.frames():
            if first.offer(frame, frame.pts_seconds):
                break
    expected = measure_context(load_model(3, None, "realtime-compressed-plus"), first.lumas)
    folds = list((cache / "onnx").glob(f"*_fold{expected.digest}_*.onnx"))
    assert len(folds) == 1, sorted(p.name for p in (cache / "onnx").iterdir())


def test_bench_times_a_context_network_folded_as_vsr_run_runs_it(tmp_path, monkeypatch):
    from tests.conftest import with_engine
    from vsr.bench import BenchConfig, run_bench
    from vsr.models.registry import get_model

    if not get_model("realtime-compressed-plus").global_context(3):
        pytest.skip("no shipped network has a global context")
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path / "cache"))
    report = run_bench(with_engine(BenchConfig, scale=3, model="realtime-compressed-plus", backend="openvino",
                                   size=(96, 64), frames=6, warmup_frames=1))
    assert any("folded into its convolutions" in note for note in report.notes), report.notes
    assert report.engine_only_fps > 0 and report.to_json()
    assert list((tmp_path / "cache" / "onnx").glob("*_fold*.onnx"))
    espcn = run_bench(with_engine(BenchConfig, scale=3, model="espcn", backend="openvino", size=(96, 64), frames=6,
                                  warmup_frames=1))
    assert not any("folded" in note for note in espcn.notes)


def test_the_cache_keeps_the_most_recently_used_folds(tmp_path, monkeypatch):
    """Every clip makes a fold (its ONNX, its int8 model): the cache keeps the newest FOLDS_KEPT,
    and a fold used again counts as new."""
    import os

    from vsr import export
    from vsr.backends import EngineSpec, create_backend
    from vsr.backends.files import onnx_for
    from vsr.models.clip_context import ClipContext, timing_context
    from vsr.models.registry import get_model

    info = get_model("realtime-compressed-plus")
    if not info.global_context(3):
        pytest.skip("no shipped network has a global context")
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(export, "FOLDS_KEPT", 2)
    size = len(timing_context(info, 3).pooled)
    contexts = [ClipContext(tuple([0.01 * i] * size), 1) for i in range(4)]
    first = onnx_for(3, None, "realtime-compressed-plus", contexts[0])
    backend = create_backend(EngineSpec(scale=3, model="realtime-compressed-plus", backend="openvino",
                                       precision="int8", context=contexts[0]))
    backend.close()
    stem = first.name[:-len(".onnx")]
    assert any(p.name.startswith(stem) for p in (tmp_path / "openvino_int8").iterdir())
    os.utime(first, (1, 1))
    second = onnx_for(3, None, "realtime-compressed-plus", contexts[1])
    os.utime(second, (2, 2))
    assert onnx_for(3, None, "realtime-compressed-plus", contexts[0]) == first  # used again: now the newest
    assert first.stat().st_mtime > 2
    third = onnx_for(3, None, "realtime-compressed-plus", contexts[2])  # a third: the least recent goes
    assert first.exists() and third.exists() and not second.exists()
    assert not Path(str(second) + export.SOURCE_SUFFIX).exists()
    onnx_for(3, None, "realtime-compressed-plus", contexts[3])
    assert not first.exists()
    leftovers = [p.name for folder in tmp_path.iterdir() for p in folder.iterdir() if stem in p.name]
    assert leftovers == [], leftovers
    assert len(list((tmp_path / "onnx").glob("*_fold*.onnx"))) == 2


def test_a_second_fold_is_the_first_refilled_byte_for_byte_as_torch_exports_it(tmp_path, monkeypatch):
    """Every fold of one network is the same graph with other weights: after the first export the
    cache writes the weights into a copy of it, which must be exactly what torch's export writes."""
    from vsr import export
    from vsr.backends.files import onnx_for
    from vsr.models.clip_context import ClipContext, timing_context
    from vsr.models.registry import get_model
    from vsr.models.weights import load_model

    info = get_model("realtime-compressed-plus")
    if not info.global_context(3):
        pytest.skip("no shipped network has a global context")
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path / "cache"))
    size = len(timing_context(info, 3).pooled)
    rng = np.random.default_rng(0)
    first, second = (ClipContext(tuple(float(v) for v in rng.uniform(0, 0.3, size)), 8) for _ in range(2))
    exported = []
    real_export = export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda model, path, **kw: (exported.append(path),
                                                                          real_export(model, path, **kw))[1])
    a = onnx_for(3, None, "realtime-compressed-plus", first)
    assert exported == [a] and Path(str(a) + export.OFFSETS_SUFFIX).is_file()
    b = onnx_for(3, None, "realtime-compressed-plus", second)
    assert exported == [a]  # refilled, not exported
    direct = tmp_path / "direct.onnx"
    real_export(load_model(3, None, "realtime-compressed-plus", context=second), direct)
    assert b.read_bytes() == direct.read_bytes()
    assert a.read_bytes() != b.read_bytes()


def test_live_ending_while_its_fold_is_built_exits_cleanly(tmp_path):
    """The session ends (here after 3 frames) while the fold of its first 2 frames is being built:
    the process must wait for the build and exit 0 (a thread left inside OpenVINO or NNCF at exit
    aborts the interpreter)."""
    import os

    from tests.conftest import make_clip
    from vsr.models.registry import get_model

    if not get_model("realtime-compressed-plus").global_context(3):
        pytest.skip("no shipped network has a global context")
    clip = tmp_path / "in.mp4"
    make_clip(clip, width=96, height=64, frames=100, fps=30)
    script = f"""
from tests.conftest import with_engine
from vsr.live import LiveConfig, run_live
from vsr.media.camera import LiveSource, _paced
from vsr.models import clip_context
clip_context.FIRST_FRAMES, clip_context.FIRST_SPACING_S = 2, 0.0
LiveSource.frames = lambda self: _paced(self._frames_pyav())  # a stream arrives at its frame rate
report = run_live(with_engine(LiveConfig, source="file://{clip}", scale=3, model="realtime-compressed-plus",
                              backend="openvino", headless=True, max_frames=3))
print("frames", report.frames_processed)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[2],
                            env=dict(os.environ, VSR_CACHE_DIR=str(tmp_path / "cache")))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "frames 3" in result.stdout
