"""Without --model, `vsr run` and `vsr live` run the best model that holds real time for this input
here, chosen from the clean or the compressed ladder by the input's codec and bits per pixel
(--degradation auto); the first line says which model and why."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import decode_all, make_clip
from vsr.backends import EngineSpec
from vsr.tuning.model_choice import CLEAN_BITS_PER_PIXEL, RETIMES, EngineTiming, choose_model, input_degradation


def _vsr(*args, env=None, stdin=None):
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True,
                          env=env, stdin=stdin)


@pytest.mark.parametrize("codec,bpp,expected", [
    ("ffv1", None, "bicubic"), ("rawvideo", 0.01, "bicubic"), ("png", None, "bicubic"), ("utvideo", None, "bicubic"),
    ("h264", 0.04, "compressed"), ("hevc", 0.2, "compressed"), ("mpeg4", None, "compressed"),
    ("h264", CLEAN_BITS_PER_PIXEL * 2, "bicubic"), ("vp9", CLEAN_BITS_PER_PIXEL * 0.99, "compressed"),
    (None, None, "compressed"),
])
def test_degradation_rules(codec, bpp, expected):
    degradation, why = input_degradation(codec, bpp)
    assert degradation == expected
    assert (codec or "unknown") in why


def test_bits_per_pixel_of_real_files(tmp_path):
    """The rate the rules read: a lossless FFV1 file carries several bits per pixel, a real
    camera clip compressed for the web a few hundredths."""
    from vsr.media.probe import video_bits_per_pixel

    lossless = tmp_path / "ffv1.mkv"
    make_clip(lossless, codec="ffv1", frames=10)
    assert video_bits_per_pixel(lossless) > CLEAN_BITS_PER_PIXEL
    lossy = tmp_path / "x264.mp4"
    make_clip(lossy, frames=10)
    assert 0 < video_bits_per_pixel(lossy) < video_bits_per_pixel(lossless)
    assert video_bits_per_pixel(tmp_path / "missing.mp4") is None


@pytest.mark.needs_data
def test_shared_clips_are_compressed(data_dir):
    from vsr.media.probe import video_bits_per_pixel

    for clip in sorted((data_dir / "video").glob("*.mp4")):
        assert input_degradation("h264", video_bits_per_pixel(clip))[0] == "compressed", clip.name


def test_compressed_ladder_is_climbed_for_compressed_input(tmp_path, monkeypatch):
    """degradation picks the ladder: compressed input gets a model trained for it, clean input never does."""
    from vsr.models.registry import get_model

    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path))
    timed = []

    fps = {"realtime": 40.0, "realtime-compressed": 40.0, "espcn": 35.0}

    def measure(spec, width_px, height_px):
        timed.append(spec.model)
        return EngineTiming(fps.get(spec.model, 5.0))

    spec = EngineSpec(scale=3, backend="openvino")
    compressed = choose_model(spec, 640, 360, 25.0, degradation="compressed", measure=measure)
    assert compressed.model == "realtime-compressed"
    assert all(get_model(name).degradation == "compressed" for name in timed)
    assert "compressed-input model" in compressed.reason and "realtime-compressed-plus is too slow" in compressed.reason
    # Where the half-resolution rung keeps up, it is the better one: chosen, the next rung too slow.
    fps["realtime-compressed-plus"] = 38.0
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path / "second"))
    plus = choose_model(spec, 640, 360, 25.0, degradation="compressed", measure=measure)
    assert plus.model == "realtime-compressed-plus" and "balanced-compressed is too slow" in plus.reason
    timed.clear()
    clean = choose_model(spec, 640, 360, 25.0, measure=measure)
    assert clean.model == "realtime" and "espcn" in clean.engine_fps  # the near tie is timed too
    assert all(get_model(name).degradation == "bicubic" for name in timed)
    # Nothing holds 200 fps: the fastest of those timed.
    assert choose_model(spec, 640, 360, 200.0, measure=measure).model == "realtime"


def test_a_timing_on_a_busy_machine_is_used_but_not_cached(tmp_path, monkeypatch):
    """A calibration made while other programs held the cores decides this run only: cached, it
    would make every later run on a quiet machine pick a lower rung (seen: 19.4 fps for a rung
    that runs at 40 here, timed beside a test suite)."""
    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path))
    waiting, timed = {"share": 0.5}, []

    def measure(spec, width_px, height_px):
        timed.append(spec.model)
        return EngineTiming(100.0 if spec.model == "realtime-compressed" else 20.0, waiting["share"])

    spec = EngineSpec(scale=3, backend="openvino")
    busy = choose_model(spec, 640, 360, 25.0, degradation="compressed", measure=measure)
    assert busy.model == "realtime-compressed"
    assert "other programs kept the CPU busy" in busy.reason and "not cached, timed again next run" in busy.reason
    assert "realtime-compressed 50%" in busy.reason
    assert not (tmp_path / "calibration.json").exists()
    first = list(timed)
    choose_model(spec, 640, 360, 25.0, degradation="compressed", measure=measure)
    assert timed == first + first  # timed again
    waiting["share"] = 0.01  # a quiet machine: cached, and the next run reads the cache
    quiet = choose_model(spec, 640, 360, 25.0, degradation="compressed", measure=measure)
    assert "busy" not in quiet.reason and (tmp_path / "calibration.json").is_file()
    choose_model(spec, 640, 360, 25.0, degradation="compressed", measure=measure)
    # Quiet, the better rung measured too slow beside a near tie that held was timed again with it
    # (model_choice._retime_near_ties); then all came from the cache.
    assert first == ["realtime-compressed-plus", "realtime-compressed"]
    assert timed == first * 3 + first * RETIMES


@pytest.fixture()
def cache_env(tmp_path):
    return {**os.environ, "VSR_CACHE_DIR": str(tmp_path / "cache")}


@pytest.mark.parametrize("codec,suffix,ladder,why", [
    ("ffv1", ".mkv", "bicubic", "ffv1 is lossless"),
    ("libx264", ".mp4", "compressed", "is lossy"),
])
def test_run_without_model_picks_by_the_input(tmp_path, cache_env, codec, suffix, ladder, why):
    """A real encoder's output: lossless FFV1 gets a clean-input model, lossy H.264 (here well
    under a bit per pixel) one trained for compressed input (on frames this small even the larger
    rungs hold the rate); the first line names it and says why."""
    import re

    from vsr.models.registry import get_model

    clip = tmp_path / f"in{suffix}"
    make_clip(clip, width=96, height=64, frames=8, codec=codec)
    if codec == "libx264":
        from vsr.media.probe import video_bits_per_pixel

        if video_bits_per_pixel(clip) >= CLEAN_BITS_PER_PIXEL:
            pytest.skip("this x264 build wrote the tiny test clip near-losslessly")
    out = tmp_path / "out.mp4"
    result = _vsr("run", clip, out, "--scale", "2", "--workers", "1", env=cache_env)
    assert result.returncode == 0, result.stderr
    # The run's first line, even on a first run here (an empty cache: precision auto's notes follow it).
    first = result.stderr.splitlines()[0]
    assert first.startswith(str(clip)) and why in first, result.stderr
    # Said once: not again as a note at the end of the run.
    assert sum(why in line for line in result.stderr.splitlines()) == 1, result.stderr
    model = re.search(r"model (\S+): (the best|even the fastest)", first)[1]  # a loaded machine: the fastest
    assert get_model(model).degradation == ladder
    frames, info = decode_all(out)
    assert len(frames) == 8 and (info.width, info.height) == (192, 128)
    # The pixels are that model's: the same as naming it (at the precision the first run took: on a busy
    # machine precision auto is timed again in each run and may pick another).
    precision = re.search(r"backend openvino (\w+) ", first)[1]
    named = tmp_path / "named.mp4"
    assert _vsr("run", clip, named, "--scale", "2", "--workers", "1", "--model", model, "--precision", precision,
                "-q", env=cache_env).returncode == 0
    assert np.array_equal(decode_all(named)[0][3].luma, frames[3].luma)


def test_degradation_option_overrides_the_codec(tmp_path, cache_env):
    clip = tmp_path / "in.mkv"
    make_clip(clip, width=96, height=64, frames=4, codec="ffv1")
    result = _vsr("run", clip, tmp_path / "o.mp4", "--scale", "2", "--workers", "1", "--degradation", "compressed",
                  env=cache_env)
    assert result.returncode == 0, result.stderr
    first = next(line for line in result.stderr.splitlines() if line.startswith(str(clip)))
    assert "compressed-input model" in first and "--degradation compressed" in first, first


def test_pipe_input_runs_the_real_time_rung(tmp_path, cache_env):
    """A pipe cannot be timed on or probed: the clean real-time rung, with a note saying so."""
    clip = tmp_path / "in.mkv"
    make_clip(clip, width=96, height=64, frames=5, codec="ffv1")
    out = tmp_path / "out.mkv"
    with open(clip, "rb") as stdin:
        result = _vsr("run", "-", out, "--scale", "2", env=cache_env, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert "model realtime: the real-time model for a stream or pipe" in result.stderr
    assert len(decode_all(out)[0]) == 5


def test_weights_without_model_still_work(tmp_path, cache_env):
    """--weights names the network: no --model is needed, and auto is not run."""
    from vsr.models.registry import get_model

    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=3)
    result = _vsr("run", clip, tmp_path / "o.mp4", "--scale", "3", "--workers", "1",
                  "--weights", get_model("espcn").weights_path(3), env=cache_env)
    assert result.returncode == 0, result.stderr
    assert "the best" not in result.stderr


def test_upscale_defaults_to_the_clean_real_time_rung(tmp_path, image_dir, cache_env):
    from PIL import Image

    source = sorted(image_dir.iterdir())[0]
    default, named = tmp_path / "d.png", tmp_path / "n.png"
    assert _vsr("upscale", source, default, "-q", env=cache_env).returncode == 0
    assert _vsr("upscale", source, named, "--model", "realtime", "-q", env=cache_env).returncode == 0
    assert np.array_equal(np.asarray(Image.open(default)), np.asarray(Image.open(named)))


def test_cli_spells_the_image_model_as_the_registry_does():
    import vsr.cli
    from vsr.models.registry import IMAGE_MODEL, get_model

    assert vsr.cli.IMAGE_MODEL == IMAGE_MODEL and get_model(IMAGE_MODEL).degradation == "bicubic"
