"""Issue 11, the output side: audio offsets and lengths kept in every container, colour tags valid
for the output's pixel format, containers and encoders that used to fail (MPEG-TS, WebM, MPEG-PS),
and one clear line (never a traceback, never a file at OUTPUT) for what cannot work: a pipe
read twice, tiny or huge frames, a full disk, a bad --crf or --pix-fmt, OUTPUT that is a folder.

Inputs are made here with the ffmpeg CLI (skipped without it) or PyAV.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, decode_all, make_clip
from tests.segments.test_segments import write_clip
from vsr.media.encode import EncodeOptions
from tests.conftest import run_config
from vsr.segments import upscale_video

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg CLI makes these inputs")


def ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=120)


def vsr(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def assert_one_line_no_output(result, out: Path, *words: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    line = last_line(result)
    for word in words:
        assert word in line, result.stderr
    if out.parent.is_dir() and str(out) not in ("", "."):
        assert not out.is_file()
        assert not list(out.parent.glob(".vsr-*partial*"))


def audio_span(path: Path) -> tuple[float, float]:
    """(start, end) in seconds of the first audio stream, from its packets."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        start = end = None
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            t0 = float(packet.pts * packet.time_base)
            t1 = t0 + float((packet.duration or 0) * packet.time_base)
            start = t0 if start is None else min(start, t0)
            end = t1 if end is None else max(end, t1)
        # Opus and AAC encoders add priming samples, which the container's start skips.
        skip = float(stream.start_time * stream.time_base) if stream.start_time is not None else start
        return max(start, skip), end


@pytest.fixture(scope="module")
def late_audio(tmp_path_factory) -> Path:
    """2 s of 64x48 video (a keyframe every 10 frames) with AAC that starts at 0.5 s and ends at 2.0 s."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg CLI makes this input")
    path = tmp_path_factory.mktemp("late") / "late.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2", "-itsoffset", "0.5",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1.5", "-map", "0:v", "-map", "1:a",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-c:a", "aac", path)
    return path


def run(source, out, **kwargs):
    kwargs.setdefault("backend", "onnxruntime")
    kwargs.setdefault("scale", 2)
    return upscale_video(run_config(source, out, **kwargs))


# -- 1. audio: start offset and full duration, copied and re-encoded, one stream and segments ---------
@pytest.mark.parametrize("suffix,codec", [(".mp4", "libx264"), (".mkv", "libx264"), (".ts", "libx264"),
                                          (".webm", "libsvtav1")])
@pytest.mark.parametrize("workers", [1, 2])
def test_audio_start_and_length_kept(tmp_path, late_audio, suffix, codec, workers):
    out = tmp_path / f"out{suffix}"
    run(late_audio, out, workers=workers, segment_seconds=0.5, encode=EncodeOptions(codec=codec))
    src_start, src_end = audio_span(late_audio)
    start, end = audio_span(out)
    assert abs(start - src_start) < 0.03, (start, src_start)  # was 0.0 for re-encoded (WebM) audio
    assert abs(end - src_end) < 0.05, (end, src_end)


@needs_ffmpeg
def test_mp3_at_44k_re_encoded_for_webm(tmp_path):
    """Opus takes 48 kHz in frames of 960 samples: MP3's 1152-sample frames at 44.1 kHz failed."""
    source, out = tmp_path / "mp3.mkv", tmp_path / "out.webm"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1", "-itsoffset", "0.3", "-f", "lavfi",
           "-i", "sine=sample_rate=44100:duration=1", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset",
           "ultrafast", "-c:a", "libmp3lame", source)
    stats = run(source, out, workers=1, encode=EncodeOptions(codec="libsvtav1"))
    assert any("re-encoded to libopus" in note for note in stats.notes)
    (src_start, src_end), (start, end) = audio_span(source), audio_span(out)
    assert abs(start - src_start) < 0.03 and abs(end - src_end) < 0.05, (start, end, src_start, src_end)


@pytest.mark.needs_data
@pytest.mark.parametrize("suffix,codec", [(".mp4", "libx264"), (".webm", "libsvtav1")])
def test_tennis_audio_kept_whole(tmp_path, suffix, codec):
    """The shared clip's AAC starts at 0.39 s; the writer must keep its start and its last 0.39 s."""
    from fractions import Fraction

    import numpy as np

    from vsr.frames import YuvFrame
    from vsr.media.encode import VideoSpec, VideoWriter

    source = DATA / "video" / "tennis_640x480.mp4"
    out = tmp_path / f"tennis{suffix}"
    writer = VideoWriter(out, width=64, height=48, source=VideoSpec(time_base=Fraction(1, 25), average_fps=25.0),
                         options=EncodeOptions(codec=codec), audio_from=source)
    grey = np.full((24, 32), 128, np.uint8)
    for i in range(25):
        writer.write(YuvFrame(np.zeros((48, 64), np.uint8), grey, grey, "yuv420p", i, Fraction(1, 25), i))
    writer.close()
    src_start, src_end = audio_span(source)
    start, end = audio_span(out)
    assert abs(start - src_start) < 0.03 and abs(end - src_end) < 0.05, (start, end, src_start, src_end)


# -- 2. colour tags valid for YUV output from an RGB source -------------------------------------------
@needs_ffmpeg
@pytest.mark.parametrize("workers", [1, 2])
def test_rgb_source_gets_a_yuv_matrix_tag(tmp_path, workers):
    import av

    source = tmp_path / "rgb.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1", "-c:v", "libx264rgb", "-preset",
           "ultrafast", "-g", "5", "-pix_fmt", "rgb24", source)
    with av.open(str(source)) as container:
        assert container.streams.video[0].codec_context.colorspace == 0  # the input really is tagged RGB
    out = tmp_path / "out.mp4"
    stats = run(source, out, workers=workers, segment_seconds=0.2)
    with av.open(str(out)) as container:
        ctx = container.streams.video[0].codec_context
        assert ctx.pix_fmt in ("yuv420p", "yuvj420p")  # full range: RGB sources are
        assert ctx.colorspace == 6  # BT.601: the matrix swscale converted the RGB frames with (was 0, RGB)
    if workers == 1:
        assert any("BT.601" in note for note in stats.notes)


# -- 3. containers that failed, and what cannot work as one line ---------------------------------------
@pytest.mark.parametrize("suffix", [".ts", ".m2ts"])
def test_ts_output_works(tmp_path, late_audio, suffix):
    out = tmp_path / f"out{suffix}"
    result = vsr("run", late_audio, out, "--scale", "2", "--workers", "1", "-q")
    assert result.returncode == 0, result.stderr
    frames, info = decode_all(out)
    assert len(frames) == 50 and (info.width, info.height) == (128, 96) and info.has_audio


def test_mpeg_ps_output_is_one_line(tmp_path, late_audio):
    out = tmp_path / "out.mpg"
    assert_one_line_no_output(vsr("run", late_audio, out, "--scale", "2"), out, "MPEG-PS", ".ts")


def test_webm_without_codec_picks_av1(tmp_path, late_audio):
    import av

    out = tmp_path / "out.webm"
    result = vsr("run", late_audio, out, "--scale", "2", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "note: libsvtav1 chosen for .webm" in result.stderr
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name in ("libdav1d", "av1", "libaom-av1")
        assert len(container.streams.audio) == 1


def test_webm_with_h264_asked_is_one_line(tmp_path, late_audio):
    out = tmp_path / "out.webm"
    assert_one_line_no_output(vsr("run", late_audio, out, "--codec", "libx264"), out, "--codec libsvtav1")


@needs_ffmpeg
@pytest.mark.parametrize("name", ["-", "/dev/stdin"])
def test_stdin_with_audio_runs_as_one_stream(tmp_path, name):
    source = tmp_path / "in.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1", "-f", "lavfi", "-i",
           "sine=duration=1", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", source)
    out = tmp_path / "out.mkv"
    with open(source, "rb") as stdin:
        # cat | vsr: a real pipe, not a file that could be opened again
        cat = subprocess.Popen(["cat"], stdin=stdin, stdout=subprocess.PIPE)
        result = vsr("run", name, out, "--scale", "2", stdin=cat.stdout)
        cat.wait()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "audio and subtitles dropped: the input is a pipe" in result.stderr
    assert len(decode_all(out)[0]) == 25


def test_stdin_cannot_be_segmented(tmp_path):
    out = tmp_path / "out.mkv"
    result = vsr("run", "-", out, "--workers", "2", stdin=subprocess.DEVNULL)
    assert_one_line_no_output(result, out, "--workers 1")


def test_frames_under_5x5_are_refused_up_front(tmp_path):
    source, out = tmp_path / "tiny.mkv", tmp_path / "out.mp4"
    make_clip(source, width=4, height=4, frames=3, codec="ffv1", pix_fmt="yuv444p")
    assert_one_line_no_output(vsr("run", source, out, "--scale", "2"), out, "4x4", "at least 5x5")


@needs_ffmpeg
def test_output_larger_than_the_encoder_is_refused_up_front(tmp_path):
    source, out = tmp_path / "8k.mkv", tmp_path / "out.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=size=7680x4320:rate=25:duration=0.04", "-c:v", "libx264", "-preset",
           "ultrafast", source)
    result = vsr("run", source, out, "--scale", "3", "--workers", "1")
    assert_one_line_no_output(result, out, "23040x12960", "libx264", "--scale")


def test_memory_is_checked_up_front(tmp_path, monkeypatch):
    from vsr.errors import OutputError
    from vsr.media.decode import VideoReader
    from vsr import hardware
    from vsr.pipeline import pipeline

    source = tmp_path / "in.mp4"
    make_clip(source, frames=2)
    with VideoReader(source) as reader:
        info = reader.info
    config = run_config(source, tmp_path / "out.mp4", scale=3)
    need = pipeline.estimated_memory_bytes(info.width, info.height, 3, "yuv420p", queue_depth=8, batch_size=1)
    monkeypatch.setattr(hardware, "available_memory_bytes", lambda: 10 * need)
    pipeline.check_run(config, info)  # plenty: no error
    pipeline.check_run(config, info, workers=2)
    monkeypatch.setattr(hardware, "available_memory_bytes", lambda: need)
    with pytest.raises(OutputError, match="--scale"):
        pipeline.check_run(config, info)


def test_memory_estimate_grows_with_what_is_held():
    from vsr.pipeline.pipeline import estimated_memory_bytes

    base = estimated_memory_bytes(640, 360, 3, "yuv420p", queue_depth=8, batch_size=1)
    assert base > 8 * 640 * 360 * 9 * 1.5  # at least the queued 4:2:0 output frames
    assert estimated_memory_bytes(640, 360, 4, "yuv420p", queue_depth=8, batch_size=1) > base
    assert estimated_memory_bytes(640, 360, 3, "yuv420p", queue_depth=16, batch_size=1) > base
    assert estimated_memory_bytes(640, 360, 3, "yuv444p", queue_depth=8, batch_size=1) > base


_FSIZE_RUNNER = """
import resource, signal, sys
from vsr.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = ["vsr"] + sys.argv[2:]
main()
"""


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: the segments fit, the join's trailer does not
def test_file_size_limit_at_the_mp4_trailer_is_one_line(tmp_path, workers):
    source = tmp_path / "in.mp4"
    write_clip(source, frames=20, gop=5, audio=True)  # a keyframe every 0.2 s: four segments
    full = tmp_path / "full.mp4"
    args = ["run", str(source), "--scale", "2", "--workers", workers, "--segment-seconds", "0.2",
            "--backend", "onnxruntime", "-q"]
    assert vsr(*args[:2], full, *args[2:]).returncode == 0
    # The same run with room for all but the end of the file: the MP4 index (moov), written last.
    out = tmp_path / "out.mp4"
    result = subprocess.run([sys.executable, "-c", _FSIZE_RUNNER, str(full.stat().st_size - 64), *args[:2],
                             str(out), *args[2:]], capture_output=True, text=True, timeout=300)
    assert_one_line_no_output(result, out, str(out), "File too large")
    assert "encoder" not in last_line(result)


def test_full_disk_is_one_line_naming_the_output(tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        source = tmp_path / "in.mp4"
        make_clip(source, frames=30, width=160, height=96)
        out = disk / "out.mp4"
        result = vsr("run", source, out, "--scale", "3", "--workers", "1", "--backend", "onnxruntime", "-q")
        assert_one_line_no_output(result, out, str(out), "No space left on device")
        assert "encoder" not in last_line(result)
    finally:
        subprocess.run(["umount", str(disk)])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_249_character_output_name(tmp_path, workers):
    source = tmp_path / "in.mp4"
    write_clip(source, frames=20, gop=5, audio=True)  # a keyframe every 0.2 s: four segments
    out = tmp_path / ("n" * 245 + ".mp4")
    assert len(out.name) == 249
    result = vsr("run", source, out, "--scale", "2", "--workers", workers, "--segment-seconds", "0.2",
                 "--backend", "onnxruntime", "-q")
    assert result.returncode == 0, result.stderr
    frames, info = decode_all(out)
    assert len(frames) == 20 and info.has_audio
    assert not list(tmp_path.glob(".*vsr*"))  # no temporary file or work folder left


# -- 4. messages ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("small") / "clip.mp4"
    make_clip(path, frames=5)
    return path


def test_output_directory_and_empty_name(tmp_path, small_clip):
    folder = tmp_path / "folder"
    folder.mkdir()
    result = vsr("run", small_clip, folder)
    assert_one_line_no_output(result, folder / "x", "is a directory")
    assert "already exists" not in last_line(result)
    result = vsr("run", small_clip, "", cwd=tmp_path)
    assert_one_line_no_output(result, tmp_path / "x", "output name is empty")


def test_url_keeps_its_slashes(tmp_path):
    url = "http://127.0.0.1:9/clip.mp4"  # port 9 (discard): nothing listens
    result = vsr("run", url, tmp_path / "out.mp4")
    assert_one_line_no_output(result, tmp_path / "out.mp4", url)
    assert "no such file" not in last_line(result)


@pytest.mark.parametrize("codec,crf,words", [
    ("libx264", 52, ["0 to 51"]), ("libx265", 60, ["0 to 51"]), ("libsvtav1", 64, ["0 to 63"]),
    ("mpeg4", 10, ["no CRF"]), ("libx264", -1, ["0 to 51"]),
])
def test_crf_outside_the_codec_range_is_refused(tmp_path, small_clip, codec, crf, words):
    out = tmp_path / "out.mkv"
    assert_one_line_no_output(vsr("run", small_clip, out, "--codec", codec, "--crf", crf), out, *words)


def test_crf_inside_the_range_is_used(tmp_path, small_clip):
    out = tmp_path / "out.mkv"
    result = vsr("run", small_clip, out, "--codec", "libsvtav1", "--crf", "63", "--scale", "2", "-q")
    assert result.returncode == 0, result.stderr


def test_pix_fmt_the_codec_cannot_encode_lists_what_it_can(tmp_path, small_clip):
    out = tmp_path / "out.mp4"
    result = vsr("run", small_clip, out, "--codec", "mpeg4", "--pix-fmt", "yuv444p")
    assert_one_line_no_output(result, out, "mpeg4", "yuv420p")
    assert "Invalid argument" not in result.stderr


def test_progress_total_for_vfr_mkv(tmp_path):
    """Matroska stores no frame count, and its average rate comes from the first frames: a clip
    slow at first (10 fps) then fast (50 fps) was estimated at 21 frames of 60."""
    from fractions import Fraction

    import av
    import numpy as np

    from vsr.media.decode import VideoReader
    from vsr.pipeline.pipeline import expected_frames

    path, time_base = tmp_path / "vfr.mkv", Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        t = 0
        for i in range(60):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 4, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = t, time_base
            container.mux(stream.encode(frame))
            t += 100 if i < 10 else 20
        container.mux(stream.encode(None))
    with VideoReader(path) as reader:
        assert reader.info.num_frames is None
        assert expected_frames(reader.info, None) == 60
        assert expected_frames(reader.info, 7) == 7


def test_progress_bar_total_never_below_done():
    from vsr.progress import Progress

    progress = Progress(quiet=False)

    class Bar:
        n, total = 0, 10

        def update(self, k):
            self.n += k

    progress.bar = Bar()
    progress.update(14)
    assert progress.bar.n == 14 and progress.bar.total >= 14
