"""`vsr run - -` between two ffmpeg CLI processes, over real pipes: any stream FFmpeg pipes in,
y4m (or NUT, Matroska, MPEG-TS) out, nothing but the stream on standard output."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs the ffmpeg and ffprobe CLI")

WIDTH, HEIGHT, FRAMES = 64, 48, 6
VSR = [sys.executable, "-m", "vsr", "run", "-", "-", "--scale", "2", "--model", "espcn", "--precision", "fp32"]
#: How each container is piped out of ffmpeg (a codec that container really carries on a pipe).
SOURCE_CODEC = {"yuv4mpegpipe": [], "nut": ["-c:v", "rawvideo"], "matroska": ["-c:v", "ffv1"],
                "mpegts": ["-c:v", "libx264", "-preset", "ultrafast"]}


def _source(fmt: str, pix_fmt: str = "yuv420p") -> list[str]:
    return ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate=10",
            "-frames:v", str(FRAMES), "-pix_fmt", pix_fmt, *SOURCE_CODEC[fmt],
            *(["-strict", "-1"] if pix_fmt != "yuv420p" else []),  # y4m's 10-bit extension
            "-f", fmt, "-"]


def run_pipeline(producer: list[str], vsr_args: list[str], consumer: list[str] | None, timeout: float = 120):
    """producer | vsr ... | consumer with OS pipes. Returns (vsr's stderr, consumer's stdout
    (or vsr's stdout when no consumer), return codes)."""
    first = subprocess.Popen(producer, stdout=subprocess.PIPE)
    middle = subprocess.Popen(vsr_args, stdin=first.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first.stdout.close()  # vsr alone holds the read end: the producer sees a broken pipe if vsr dies
    if consumer is None:
        out, err = middle.communicate(timeout=timeout)
        return err.decode(), out, (first.wait(timeout), middle.returncode)
    last = subprocess.Popen(consumer, stdin=middle.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    middle.stdout.close()
    err = middle.stderr.read()
    out, consumer_err = last.communicate(timeout=timeout)
    codes = (first.wait(timeout), middle.wait(timeout), last.returncode)
    assert last.returncode == 0, consumer_err.decode()
    return err.decode(), out, codes


def probe(path) -> dict:
    result = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                             "stream=width,height,nb_read_frames,pix_fmt,codec_name", "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)["streams"][0]


def test_y4m_pipe_between_two_ffmpegs(tmp_path):
    out = tmp_path / "out.mp4"
    err, _, codes = run_pipeline(_source("yuv4mpegpipe"), VSR,
                                 ["ffmpeg", "-v", "error", "-f", "yuv4mpegpipe", "-i", "-", "-c:v", "libx264",
                                  "-preset", "ultrafast", str(out)])
    assert codes == (0, 0, 0), err
    stream = probe(out)
    assert (stream["width"], stream["height"]) == (2 * WIDTH, 2 * HEIGHT)
    assert int(stream["nb_read_frames"]) == FRAMES
    assert "6 frames" in err  # the summary went to standard error


@pytest.mark.parametrize("fmt", ["nut", "matroska", "mpegts"])
def test_any_piped_container_in(tmp_path, fmt):
    out = tmp_path / "out.nut"
    err, _, codes = run_pipeline(_source(fmt), VSR + ["-q"],
                                 ["ffmpeg", "-v", "error", "-f", "yuv4mpegpipe", "-i", "-", "-c:v", "rawvideo",
                                  str(out)])
    assert codes == (0, 0, 0), err
    stream = probe(out)
    assert (stream["width"], stream["height"], int(stream["nb_read_frames"])) == (2 * WIDTH, 2 * HEIGHT, FRAMES)


@pytest.mark.parametrize("fmt,codec", [("nut", "rawvideo"), ("matroska", "h264"), ("mpegts", "h264")])
def test_format_picks_the_piped_container(tmp_path, fmt, codec):
    out = tmp_path / "out.nut"
    err, _, codes = run_pipeline(_source("yuv4mpegpipe"), VSR + ["-q", "--format", fmt],
                                 ["ffmpeg", "-v", "error", "-f", fmt, "-i", "-", "-c:v", "copy", str(out)])
    assert codes == (0, 0, 0), err
    stream = probe(out)
    assert stream["codec_name"] == codec
    assert (stream["width"], stream["height"], int(stream["nb_read_frames"])) == (2 * WIDTH, 2 * HEIGHT, FRAMES)


def test_stdout_holds_the_stream_alone():
    """Every byte on standard output belongs to the y4m stream: its header, then FRAMES frames
    of exactly FRAME + 4:2:0 planes each, and nothing after them."""
    err, out, codes = run_pipeline(_source("yuv4mpegpipe"), VSR, None)
    assert codes == (0, 0), err
    header, _, body = out.partition(b"\n")
    assert header.startswith(b"YUV4MPEG2 W128 H96 ")
    frame_bytes = len(b"FRAME\n") + 2 * WIDTH * 2 * HEIGHT * 3 // 2
    assert len(body) == FRAMES * frame_bytes
    assert all(body[i * frame_bytes:i * frame_bytes + 6] == b"FRAME\n" for i in range(FRAMES))
    assert "backend" in err


def test_ten_bit_y4m_in_gives_ten_bit_out(tmp_path):
    import numpy as np

    out = tmp_path / "out.nut"
    err, _, codes = run_pipeline(_source("yuv4mpegpipe", "yuv420p10le"), VSR + ["-q"],
                                 ["ffmpeg", "-v", "error", "-f", "yuv4mpegpipe", "-i", "-", "-c:v", "rawvideo",
                                  str(out)])
    assert codes == (0, 0, 0), err
    stream = probe(out)
    assert stream["pix_fmt"] == "yuv420p10le"
    assert (stream["width"], stream["height"], int(stream["nb_read_frames"])) == (2 * WIDTH, 2 * HEIGHT, FRAMES)
    import av

    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        luma = np.frombuffer(frame.planes[0], np.uint16).reshape(-1, frame.planes[0].line_size // 2)[:, :2 * WIDTH]
    assert luma.max() > 255 and np.any(luma % 4 != 0)  # really 10-bit values, not 8-bit ones shifted


def test_garbage_on_stdin_is_one_line():
    result = subprocess.run(VSR, input=b"this is not a video\n" * 50, capture_output=True, timeout=60)
    assert result.returncode != 0
    assert result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), lines
    assert "Traceback" not in result.stderr.decode()


def test_several_workers_with_stdout_is_refused():
    result = subprocess.run(VSR + ["--workers", "2"], input=b"", capture_output=True, timeout=60)
    assert result.returncode == 2 and result.stdout == b""
    assert "one stream only" in result.stderr.decode()


def test_reader_that_stops_early_is_one_line():
    """`vsr run - - | head -c 100`: the reader goes away; vsr says so in one line, no traceback."""
    producer = subprocess.Popen(["ffmpeg", "-v", "quiet", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
                                 "-frames:v", "40", "-f", "yuv4mpegpipe", "-"], stdout=subprocess.PIPE)
    middle = subprocess.Popen(VSR, stdin=producer.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    producer.stdout.close()
    assert len(middle.stdout.read(100)) == 100
    middle.stdout.close()  # as `head -c 100` does
    err = middle.stderr.read().decode()
    assert middle.wait(120) == 1
    producer.wait(120)
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("Error:")] == [
        "Error: standard output was closed by the reading program"]


@pytest.mark.parametrize("side", ["stdin", "stdout"])
def test_a_terminal_is_refused_in_one_line(side):
    """`vsr run - -` typed at a terminal: no waiting on the keyboard, no binary on the screen."""
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        streams = {"stdin": follower} if side == "stdin" else {"stdin": subprocess.DEVNULL, "stdout": follower}
        result = subprocess.run(VSR, stderr=subprocess.PIPE, timeout=60, **streams,
                                **({} if side == "stdout" else {"stdout": subprocess.PIPE}))
    finally:
        os.close(leader)
        os.close(follower)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "is a terminal here" in err and ("standard input" if side == "stdin" else "standard output") in err
