"""vsr's frame times held against the ffmpeg CLI on a corpus of inputs it makes (tests/corpus.py),
as one stream and with --workers 2; and the up-front checks on every path (one stream,
segments, folder, Ray)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import corpus

pytestmark = pytest.mark.skipif(corpus.FFMPEG is None, reason="the ffmpeg CLI is not installed: the corpus is made with it")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.mark.parametrize("workers", [1, 2], ids=["one-stream", "workers-2"])
@pytest.mark.parametrize("case", corpus.CASES, ids=[case.name for case in corpus.CASES])
def test_frame_times_match_ffmpeg(case, workers, folder):
    why = corpus.available(case)
    if why:
        pytest.skip(why)
    source = corpus.make_input(case, folder)
    ref = corpus.reference(case, source, folder)
    out = folder / f"{case.name}.w{workers}.mp4"
    stats = corpus.run_vsr(source, out, workers=workers)
    result = corpus.compare(out, ref)
    assert result.same_frames, result.describe()
    assert result.same_times, result.describe()
    assert result.same_audio, result.describe()
    repaired = [note for note in stats.notes if "timestamps" in note or "clock restarts" in note]
    if case.make in ("concat", "jump"):
        assert any("clock restarts once" in note for note in repaired), stats.notes
    elif case.make == "plain":
        # Clean inputs (index-timed ones included) are not "repaired", nor called truncated (Matroska
        # with audio outlasting the video, or a non-zero start, once were).
        assert not repaired, stats.notes
        assert not any("ends early" in note for note in stats.notes), stats.notes


def test_avi_with_bframes_is_cut_into_segments_frame_exact(folder):
    """An AVI (H.264 with B-frames, AAC) is cut at keyframes by frame number and run on two
    workers: the same frames at the same times as one stream."""
    case = next(c for c in corpus.CASES if c.name == "avi-h264-bframes-25fps")
    source = corpus.make_input(case, folder)
    from vsr.segments import plan_segments

    plan = plan_segments(source, segment_seconds=0.4)
    assert plan.note is None and len(plan.segments) >= 3
    one, two = folder / "avi-one.mp4", folder / "avi-two.mp4"
    corpus.run_vsr(source, one, workers=1)
    stats = corpus.run_vsr(source, two, workers=2)
    assert not any("single stream" in note for note in stats.notes), stats.notes
    assert corpus.timing(two).frames == corpus.timing(one).frames
    from tests.conftest import decode_all

    (frames_one, _), (frames_two, _) = decode_all(one), decode_all(two)
    assert len(frames_one) == len(frames_two) == 40
    import numpy as np

    for a, b in zip(frames_one, frames_two):
        # Same source frame in each place: encoded apart, so close, not equal (testsrc2's frames
        # differ by far more: a moving pattern and a frame counter).
        assert np.abs(a.luma.astype(float) - b.luma.astype(float)).mean() < 3


def test_concatenated_ts_keeps_every_frame_in_order(folder):
    """`cat a.ts a.ts` (B-frames; the clock jumps back mid-file) used to fail in the encoder."""
    case = next(c for c in corpus.CASES if c.name == "ts-h264-concat")
    source = corpus.make_input(case, folder)
    out = folder / "concat-cli.mp4"
    result = subprocess.run([sys.executable, "-m", "vsr", "run", str(source), str(out), "--scale", "2",
                             "--model", "espcn", "--backend", "onnxruntime", "--workers", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "clock restarts once" in result.stdout + result.stderr
    times = corpus.timing(out).frames
    assert len(times) == 80
    assert all(b > a for a, b in zip(times, times[1:]))


# --- every up-front check on every path ---------------------------------------------------------

CHECKS = {
    "unknown-format": (["OUT.xyz"], "no container format for '.xyz'"),
    "codec-vs-container": (["OUT.webm", "--codec", "libx264"], "hold only VP8, VP9 and AV1"),
    "crf": (["OUT.mp4", "--crf", "99"], "--crf 99: libx264 takes 0 to 51"),
    "pix-fmt": (["OUT.mp4", "--codec", "mpeg4", "--pix-fmt", "yuv444p"], "mpeg4 cannot encode it"),
    "size": (["OUT.mp4", "--codec", "mpeg4", "--scale", "4"], "larger than mpeg4 encodes"),
}
PATHS = {
    "one-stream": ["--workers", "1"],
    "segments": ["--workers", "2", "--segment-seconds", "0.4"],
    # Refused before Ray is even started (a real local instance would be the next step).
    "ray": ["--ray", "local", "--segment-seconds", "0.4"],
}


@pytest.fixture(scope="module")
def check_inputs(folder) -> dict:
    """A small clip, and a tall one (2100 px: x4 is past MPEG-4's 8191) for the size check."""
    small = corpus.make_input(next(c for c in corpus.CASES if c.name == "mp4-h264-bframes"), folder)
    tall = folder / "tall.mp4"
    if not tall.exists():
        subprocess.run([corpus.FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=32x2100:r=25:d=1",
                        "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", str(tall)], check=True)
    return {"small": small, "tall": tall}


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    return subprocess.run([sys.executable, "-m", "vsr", "run", *args, "--model", "espcn", "--backend", "onnxruntime"],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize("path", list(PATHS) + ["folder"])
@pytest.mark.parametrize("check", list(CHECKS))
def test_up_front_checks_on_every_path(check, path, check_inputs, tmp_path):
    """What one stream refuses before any work, segments and folder runs refuse the same way:
    one line, non-zero exit, nothing written, no work folder left."""
    out_args, message = CHECKS[check]
    source = check_inputs["tall" if check == "size" else "small"]
    if path == "folder":
        in_dir = tmp_path / "in"
        in_dir.mkdir()
        os.symlink(source, in_dir / source.name)
        suffix = Path(out_args[0]).suffix.lstrip(".")
        args = [str(in_dir), str(tmp_path / "out"), "--format", suffix, *out_args[1:], "--workers", "2"]
    else:
        args = [str(source), str(tmp_path / out_args[0]), *out_args[1:], *PATHS[path]]
    result = _run_cli(args, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and p.parent != tmp_path / "in")
    assert left == [], left
    assert not any(p.name.endswith(".vsr-work") for p in tmp_path.rglob("*"))
    if path == "folder":
        assert "error" in result.stderr.lower()


def test_ray_runs_a_restarting_clock_as_the_single_stream_does(folder, tmp_path, monkeypatch):
    """On Ray even a one-segment plan runs as a task (decode_range from the start): the clock
    restart of `cat a.ts a.ts` is closed up there too, with the same times as one stream."""
    pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
    import tempfile

    from tests.conftest import run_config
    from vsr.segments import upscale_video

    import shutil

    # Ray's socket paths must fit in 107 bytes: a short folder of its own, removed afterwards.
    ray_dir = tempfile.mkdtemp(prefix="vsr-raytest-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_dir)
    case = next(c for c in corpus.CASES if c.name == "ts-h264-concat")
    source = corpus.make_input(case, folder)
    ref = corpus.reference(case, source, folder)
    out = tmp_path / "ray.mp4"
    try:
        stats = upscale_video(run_config(source, out, scale=2, model="espcn",
                                        backend="onnxruntime", workers=None, ray_address="local", segment_seconds=0.4))
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    result = corpus.compare(out, ref)
    assert result.same_times and result.same_audio, result.describe()
    assert any("clock restarts once" in note for note in stats.notes), stats.notes


@pytest.mark.parametrize("path", ["one-stream", "segments", "ray", "folder"])
def test_memory_check_on_every_path(path, check_inputs, tmp_path, monkeypatch):
    """A run that needs more memory than there is is refused before any work on every path
    (here the machine is made to report 1 MiB available)."""
    from vsr.errors import OutputError
    from vsr.folders import run_folder
    from vsr import hardware
    from tests.conftest import run_config
    from vsr.segments import upscale_video

    monkeypatch.setattr(hardware, "available_memory_bytes", lambda: 1 << 20)
    source = check_inputs["small"]
    options = dict(scale=2, model="espcn", backend="onnxruntime", segment_seconds=0.4)
    if path == "folder":
        in_dir = tmp_path / "in"
        in_dir.mkdir()
        os.symlink(source, in_dir / source.name)
        failed = run_folder(run_config(in_dir, tmp_path / "out", workers=2, **options),
                            quiet=True)
        assert len(failed) == 1 and "GiB of memory" in failed[0].message
    else:
        workers = {"one-stream": 1, "segments": 2, "ray": None}[path]
        config = run_config(source, tmp_path / "out.mp4", workers=workers,
                           ray_address="local" if path == "ray" else None, **options)
        with pytest.raises(OutputError, match="GiB of memory"):
            upscale_video(config)
    left = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != tmp_path / "in"]
    assert left == []


LIBRARY_CHECKS = {
    "unknown-format": ("out.xyz", dict(), "no container format for '.xyz'"),
    "codec-vs-container": ("out.webm", dict(codec="libx264"), "VP8, VP9 and AV1"),
    "crf": ("out.mp4", dict(crf=99), "--crf 99: libx264 takes 0 to 51"),
    "pix-fmt": ("out.mp4", dict(codec="mpeg4", pix_fmt="yuv444p"), "mpeg4 cannot encode it"),
    "size": ("out.mp4", dict(codec="mpeg4"), "larger than mpeg4 encodes"),
}


@pytest.mark.parametrize("path", ["one-stream", "segments", "ray", "folder"])
@pytest.mark.parametrize("check", list(LIBRARY_CHECKS))
def test_library_refuses_up_front_on_every_path(check, path, check_inputs, tmp_path):
    """The same checks through the library (vsr.segments.upscale_video, vsr.folders.run_folder), which
    API users call without the CLI's own checks: refused before any frame is decoded or written."""
    from vsr.errors import VsrError
    from vsr.folders import run_folder
    from vsr.media.encode import EncodeOptions
    from tests.conftest import run_config
    from vsr.segments import upscale_video

    name, encode, message = LIBRARY_CHECKS[check]
    source = check_inputs["tall" if check == "size" else "small"]
    options = dict(scale=4 if check == "size" else 2, model="espcn", backend="onnxruntime", segment_seconds=0.4,
                   encode=EncodeOptions(**encode))
    if path == "folder":
        in_dir = tmp_path / "in"
        in_dir.mkdir()
        os.symlink(source, in_dir / source.name)
        config = run_config(in_dir, tmp_path / "out", workers=2, **options)
        if check != "size":
            # Refused before any file is read: every file would fail the same way.
            with pytest.raises(VsrError) as error:
                run_folder(config, out_format=Path(name).suffix, quiet=True)
            assert message in str(error.value)
        else:  # depends on each input: that file fails (before any of its work), the others would run
            failed = run_folder(config, quiet=True)
            assert len(failed) == 1 and message in failed[0].message
    else:
        workers = {"one-stream": 1, "segments": 2, "ray": None}[path]
        config = run_config(source, tmp_path / name, workers=workers,
                           ray_address="local" if path == "ray" else None, **options)
        with pytest.raises(VsrError) as error:
            upscale_video(config)
        assert message in str(error.value)
    left = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != tmp_path / "in"]
    assert left == []
