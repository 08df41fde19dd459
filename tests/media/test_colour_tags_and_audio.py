"""Colour tags and audio players can use (issue 28): an untagged source (y4m holds no matrix)
gets the tags players assume for it written out, range kept; a live recording keeps its source's
tags; Vorbis, which FFmpeg puts into MP4 but players refuse there, is re-encoded to AAC."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI to make the inputs")


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def vsr(*args):
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def tags(path):
    import av

    with av.open(str(path)) as container:
        ctx = container.streams.video[0].codec_context
        return ctx.color_range, ctx.colorspace, ctx.color_primaries, ctx.color_trc


@pytest.mark.parametrize("size,scale,noted", [("96x64", 2, False), ("640x360", 2, True)], ids=["sd", "sd-to-hd"])
def test_a_y4m_source_keeps_its_range_and_gets_the_matrix_players_assume(tmp_path, size, scale, noted):
    """y4m holds a range but no matrix: the output is tagged BT.601, what players assume for the SD
    source; said when it matters, where the upscale crosses into HD (players would switch to BT.709)."""
    src, out = tmp_path / "in.y4m", tmp_path / "out.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration=0.12", "-pix_fmt", "yuv420p",
           "-color_range", "pc", src)
    assert "XCOLORRANGE=FULL" in src.read_bytes()[:100].decode("ascii", "replace")
    result = vsr("run", src, out, "--scale", scale, "--model", "espcn", "--backend", "onnxruntime", "--workers", 1)
    assert result.returncode == 0, result.stderr
    # Full range (2), and BT.601 (SMPTE 170M: 6) matrix, primaries and curve for an SD source.
    assert tags(out) == (2, 6, 6, 6)
    assert ("no colour matrix tag: the output is tagged BT.601" in result.stderr) == noted, result.stderr


def test_a_live_recording_keeps_the_sources_colour_tags(tmp_path):
    src, record = tmp_path / "in.mp4", tmp_path / "rec.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=0.4", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", "-color_range", "tv", "-colorspace", "bt709", "-color_primaries", "bt709",
           "-color_trc", "bt709", src)
    assert tags(src) == (1, 1, 1, 1)
    result = vsr("live", "--source", src, "--headless", "--record", record, "--scale", 2, "--model", "espcn",
                 "--backend", "onnxruntime", "--as-fast-as-possible", "--max-frames", 3)
    assert result.returncode == 0, result.stderr
    assert tags(record) == (1, 1, 1, 1)


@pytest.mark.parametrize("suffix,codec", [(".mp4", "aac"), (".mkv", "vorbis")])
def test_vorbis_is_re_encoded_where_players_refuse_it(tmp_path, suffix, codec):
    import av

    src, out = tmp_path / "in.mkv", tmp_path / f"out{suffix}"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=0.4", "-f", "lavfi", "-i",
           "sine=f=440:duration=0.4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libvorbis", src)
    result = vsr("run", src, out, "--scale", 2, "--model", "espcn", "--backend", "onnxruntime", "--workers", 1)
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == codec
        assert sum(1 for _ in container.decode(audio=0)) > 0
    noted = "audio stream 1 (vorbis) re-encoded to aac: players of .mp4 files do not play vorbis" in result.stderr
    assert noted == (suffix == ".mp4")
