"""`vsr run` from the command line: bad input gives one clear line and no file; Ctrl-C stops cleanly."""
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import decode_all, make_clip, wait_for_frames


def vsr(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    make_clip(path, frames=30, audio="aac")
    return path


def _audio_only(path):
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.float32), format="flt", layout="stereo")
        frame.sample_rate, frame.pts = 48000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _truncated(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 3])


def _garbage(src, dst):
    data = bytearray(src.read_bytes())
    data[48:] = bytes(len(data) - 48)  # keep the first box header, zero everything else
    dst.write_bytes(bytes(data))


@pytest.mark.parametrize("case,message", [
    ("missing", "no such file"),
    ("directory", "is a directory"),
    ("text file", "cannot be opened as a video"),
    ("audio only", "has no video stream"),
    ("truncated", "truncated or corrupt"),
    ("garbage", "cannot be opened as a video"),
    ("unwritable output", "does not exist"),
    ("unsupported scale", "'5' is not one of"),
    ("bad extension", "no container format"),
])
def test_bad_input_one_line_no_output(tmp_path, clip, case, message):
    out = tmp_path / "out.mp4"
    source = clip
    extra = []
    if case == "missing":
        source = tmp_path / "nope.mp4"
    elif case == "directory":
        source = tmp_path
    elif case == "text file":
        source = tmp_path / "notes.mp4"
        source.write_text("not a video")
    elif case == "audio only":
        source = tmp_path / "audio.m4a"
        _audio_only(source)
    elif case == "truncated":
        source = tmp_path / "cut.mp4"
        _truncated(clip, source)
    elif case == "garbage":
        source = tmp_path / "garbage.mp4"
        _garbage(clip, source)
    elif case == "unwritable output":
        out = tmp_path / "missing_dir" / "out.mp4"
    elif case == "unsupported scale":
        extra = ["--scale", "5"]
    elif case == "bad extension":
        out = tmp_path / "out.notavideo"
    result = vsr("run", source, out, *extra)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert message in last, result.stderr
    assert not out.exists()
    assert not [p for p in out.parent.glob("*partial*")] if out.parent.exists() else True


def test_existing_output_is_refused_and_kept(tmp_path, clip):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    result = vsr("run", clip, out, "--scale", "2")
    assert result.returncode != 0 and "--overwrite" in result.stderr
    assert out.read_bytes() == b"precious"
    result = vsr("run", clip, out, "--scale", "2", "--overwrite", "--max-frames", "5", "--quiet")
    assert result.returncode == 0 and result.stderr == ""
    assert len(decode_all(out)[0]) == 5


def test_summary_line(tmp_path, clip):
    result = vsr("run", clip, tmp_path / "o.mkv", "--scale", "2", "--backend", "onnxruntime")
    assert result.returncode == 0, result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("30 frames 96x64 -> 192x128 in ") and "fps" in summary
    assert "busy: decode" in summary and "engine" in summary and "encode" in summary
    assert "backend onnxruntime" in result.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_lines_in_a_log(tmp_path, clip, workers):
    """On a pipe (a log file, a CI job) there is no bar: plain progress lines instead, every
    VSR_PROGRESS_EVERY_S seconds (here 0: every frame), counting up to the clip's 30 frames;
    none with --quiet. Also with segment workers."""
    env = {**os.environ, "VSR_PROGRESS_EVERY_S": "0"}
    result = vsr("run", clip, tmp_path / "o.mp4", "--scale", "2", "--backend", "onnxruntime",
                 "--workers", workers, "--segment-seconds", "0.4", env=env)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("progress: ")]
    done = [int(line.split()[1].split("/")[0]) for line in lines]
    assert len(lines) >= 3 and done == sorted(done) and done[-1] <= 30
    assert all("/30 frames (" in line and " fps" in line for line in lines)
    quiet = vsr("run", clip, tmp_path / "q.mp4", "--scale", "2", "--backend", "onnxruntime", "--quiet", env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_ctrl_c_keeps_the_frames_done_in_a_partial_file_never_at_output(tmp_path):
    """Ctrl-C of a single stream once frames are done: exit 130, OUTPUT does not appear (a shortened
    file there would pass for a finished one), the frames done are in a playable NAME.partial.mp4, and
    a later folder run does the file again instead of skipping it as "output exists". The signal is
    sent once progress lines report frames, not after a guessed sleep, so the run is always mid-way."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir(), out_dir.mkdir()
    src, out = in_dir / "long.mp4", out_dir / "long.mp4"
    make_clip(src, frames=600, width=160, height=96)  # a few seconds of run; signalled after 30 frames
    args = ["--scale", "3", "--backend", "onnxruntime", "--model", "espcn", "--workers", "1"]
    def as_a_child_of_a_blocking_parent():
        # The default SIGINT disposition, as under a shell (an ignored one would be inherited from
        # pytest), but SIGINT blocked, as a parent forking from a thread that blocks it leaves it:
        # vsr must unblock it (it once ran to the end with Ctrl-C pending).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    proc = subprocess.Popen([sys.executable, "-m", "vsr", "run", str(src), str(out), *args],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "VSR_PROGRESS_EVERY_S": "0"},
                            preexec_fn=as_a_child_of_a_blocking_parent)
    wait_for_frames(proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    # Every check names what the run printed and left: a failure on CI must be readable from its log alone.
    left = f"files left: {sorted(p.name for p in out_dir.iterdir())}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr, left
    assert proc.returncode == 130, left
    assert not out.exists(), f"{len(decode_all(out)[0])} frames at OUTPUT; {left}"
    partial = out_dir / "long.partial.mp4"
    assert str(partial) in stderr, left
    frames, _ = decode_all(partial)
    assert 0 < len(frames) < 600, left
    assert not list(out_dir.glob(".vsr-*")), left
    again = vsr("run", in_dir, out_dir, *args, "--quiet")
    assert again.returncode == 0, again.stderr
    assert len(decode_all(out)[0]) == 600


def test_nvenc_without_an_nvidia_gpu_is_one_line(tmp_path, clip):
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("an NVIDIA driver is present: NVENC may work here")
    out = tmp_path / "out.mp4"
    result = vsr("run", clip, out, "--codec", "h264_nvenc", "--max-frames", "3")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "needs an NVIDIA GPU with NVENC" in result.stderr.strip().splitlines()[-1]
    assert not out.exists() and not list(tmp_path.glob("*partial*"))


@pytest.mark.parametrize("source,pix_fmt,noted,written", [
    ("yuv444p", None, True, "yuv420p"),
    ("yuv422p", None, True, "yuv420p"),
    ("yuv444p", "yuv444p", False, "yuv444p"),
    ("yuv420p", None, False, "yuv420p"),
])
def test_chroma_subsampled_by_default_is_said(tmp_path, source, pix_fmt, noted, written):
    """A 4:4:4 or 4:2:2 source is written 4:2:0 by default (plays everywhere): the start line says
    so and how to keep its chroma; asked for, the layout is kept, and 4:2:0 sources hear nothing."""
    import av

    src, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    make_clip(src, frames=4, pix_fmt=source)
    extra = ["--pix-fmt", pix_fmt] if pix_fmt else []
    result = vsr("run", src, out, "--scale", "2", "--backend", "onnxruntime", "--workers", "1", *extra)
    assert result.returncode == 0, result.stderr
    assert ("written as yuv420p" in result.stderr) is noted
    if noted:
        assert f"--pix-fmt {source} keeps its chroma" in result.stderr
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == written


@pytest.mark.parametrize("args,expected", [
    (["--workers", "0"], "Invalid value for '--workers': '0': give a number of workers, 1 or more"),
    (["--preset", "superduper"], "--preset superduper: libx264 has no such preset; choose one of ultrafast"),
    (["--codec", "libsvtav1", "--preset", "20"], "--preset 20: libsvtav1 has no such preset"),
    (["--codec", "mpeg4", "--preset", "fast"], "--preset fast: mpeg4 has no presets"),
    (["--out-suffix", ".gif"], ".gif files cannot hold any video vsr encodes (H.264, HEVC, AV1, MPEG-4); "
                               "name OUTPUT .mp4, .mkv, .mov or .webm"),
])
def test_bad_options_are_one_line_naming_the_option_before_any_work(tmp_path, clip, args, expected):
    """Refused before a model is timed or loaded (the model-timing cache stays empty, with --model
    auto the default), in one line naming the option and what to do."""
    cache = tmp_path / "cache"
    out = tmp_path / "out.mp4"
    if args[0] == "--out-suffix":
        out, args = tmp_path / f"out{args[1]}", []
    result = vsr("run", clip, out, "--scale", "2", *args, env={**os.environ, "VSR_CACHE_DIR": str(cache)})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert expected in result.stderr.strip().splitlines()[-1], result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith(("model ", "note", str(clip)))]
    assert not cache.exists() or not any(cache.rglob("*"))
    assert not out.exists() and not list(tmp_path.glob("*partial*"))


def test_a_read_only_filesystem_is_named_as_such(tmp_path, clip):
    """Not "permission denied": nothing about permissions would help."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a read-only tmpfs")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    command = (f"mount -t tmpfs -o ro tmpfs {readonly} && exec {sys.executable} -m vsr run {clip} {readonly}/out.mp4 "
               "--scale 2 --model espcn --backend onnxruntime --workers 1")
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", command],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "read-only filesystem" in result.stderr.strip().splitlines()[-1], result.stderr
    assert "permission denied" not in result.stderr


def test_the_summary_of_a_run_stopped_before_any_frame_has_no_empty_busy():
    from pathlib import Path

    from vsr.pipeline.pipeline import RunStats

    stats = RunStats(frames=0, wall_seconds=0.4, backend="onnxruntime", busy_seconds={}, interrupted=True,
                     output_path=None, input_size=(96, 64), output_size=(192, 128))
    assert "busy" not in stats.summary() and "no output written" in stats.summary()
    done = RunStats(frames=3, wall_seconds=1.0, backend="onnxruntime", busy_seconds={"decode": 0.2, "engine": 0.5},
                    interrupted=False, output_path=Path("o.mp4"), input_size=(96, 64), output_size=(192, 128))
    assert "busy: decode 0.2s, engine 0.5s -> o.mp4" in done.summary()


def test_an_mp4_with_its_index_at_the_end_from_a_pipe_says_why_and_what_to_do(tmp_path):
    """FFmpeg's default MP4 puts the index (moov) after the frames; a pipe cannot seek back to
    them. The message names that cause and the fix; the same file with the index first plays."""
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg CLI to make the clips")
    late, early = tmp_path / "late.mp4", tmp_path / "early.mp4"
    # Lossless, so the file is larger than what FFmpeg's probe reads ahead of the index.
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
                    "-c:v", "libx264", "-preset", "ultrafast", "-crf", "0", str(late)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(late), "-c", "copy", "-movflags", "+faststart", str(early)],
                   check=True)
    args = ["--scale", "2", "--model", "espcn", "--backend", "onnxruntime", "--max-frames", "2"]
    refused = subprocess.run([sys.executable, "-m", "vsr", "run", "-", str(tmp_path / "a.mp4"), *args],
                             input=late.read_bytes(), capture_output=True, timeout=300)
    stderr = refused.stderr.decode()
    assert refused.returncode == 1 and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert "index (moov) at the end cannot be read from a pipe" in last and "-movflags +faststart" in last
    assert not (tmp_path / "a.mp4").exists()
    played = subprocess.run([sys.executable, "-m", "vsr", "run", "-", str(tmp_path / "b.mp4"), *args],
                            input=early.read_bytes(), capture_output=True, timeout=300)
    assert played.returncode == 0, played.stderr.decode()
    assert len(decode_all(tmp_path / "b.mp4")[0]) == 2


def test_a_folder_run_gives_each_file_the_notes_a_single_run_prints(tmp_path):
    """A 4:4:4 source written 4:2:0 is said in the folder summary, on its own row only."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    make_clip(in_dir / "full.mp4", frames=4, pix_fmt="yuv444p")
    make_clip(in_dir / "plain.mp4", frames=4)
    result = vsr("run", in_dir, out_dir, "--scale", "2", "--model", "espcn", "--backend", "onnxruntime",
                 "--workers", "1")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stderr.splitlines() if line.startswith(("full.mp4", "plain.mp4"))}
    assert "written as yuv420p (plays everywhere; --pix-fmt yuv444p keeps its chroma)" in rows["full.mp4"]
    assert "written as" not in rows["plain.mp4"]


def test_level_note_names_the_codec_and_its_highest_level():
    from vsr.pipeline.pipeline import level_note

    note = level_note("libx264", 15360, 8640)
    assert note and "larger than H.264's highest level (6.2" in note and "smaller --scale" in note
    assert "HEVC's highest level" in level_note("libx265", 15360, 8640)
    assert level_note("libx264", 8192, 4320) is None and level_note("libx264", 3840, 2160) is None



def test_the_library_entry_runs_a_folder_or_one_video(tmp_path, capsys):
    """``vsr.run.run``, what the CLI calls: a folder gives its failures (none) and, with no
    ``echo`` given, prints its lines on standard output; a file gives its stats."""
    from tests.conftest import run_config
    from vsr.pipeline.pipeline import RunStats
    from vsr.run import run

    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=5, width=64, height=48)
    options = dict(scale=2, model="espcn", backend="onnxruntime", workers=1)
    assert run(run_config(folder, tmp_path / "out", **options)) == []
    assert len(decode_all(tmp_path / "out" / "a.mp4")[0]) == 5
    assert "a.mp4" in capsys.readouterr().out
    stats = run(run_config(folder / "a.mp4", tmp_path / "one.mp4", **options))
    assert isinstance(stats, RunStats) and stats.frames == 5 and stats.output_size == (128, 96)


def test_what_a_pipe_or_standard_output_allows_is_decided_in_the_library(tmp_path):
    from vsr.errors import OptionConflict
    from vsr.run import choose_streams

    src = tmp_path / "a.mp4"
    make_clip(src, frames=2, width=64, height=48)
    out = choose_streams(src, "-")
    assert (out.container, out.codec, out.workers) == ("yuv4mpegpipe", "wrapped_avframe", 1)
    assert choose_streams(src, "-", out_format="nut").container == "nut"
    webm = choose_streams(src, tmp_path / "o.webm")
    assert webm.codec == "libsvtav1" and "cannot hold H.264" in webm.notes[0] and webm.workers is None
    assert choose_streams("/dev/stdin", tmp_path / "o.mp4").workers == 1  # a pipe is read once
    with pytest.raises(OptionConflict, match="INPUT is a stream or pipe"):
        choose_streams("/dev/stdin", tmp_path / "o.mp4", workers=2)
    with pytest.raises(OptionConflict, match="OUTPUT - is a stream"):
        choose_streams(src, "-", resume=True)
