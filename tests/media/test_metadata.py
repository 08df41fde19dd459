"""Tags, dispositions and chapters survive `vsr run` (issue 28): what `ffmpeg -map_metadata 0
-map_chapters 0` keeps, where the output container holds it, with a note for what it cannot."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI to make the input")

CHAPTERS = """;FFMETADATA1
title=My Holiday
[CHAPTER]
TIMEBASE=1/1000
START=0
END=500
title=Arrival
[CHAPTER]
TIMEBASE=1/1000
START=500
END=1000
title=Beach
"""


@pytest.fixture(scope="module")
def tagged_mkv(tmp_path_factory) -> Path:
    """One second of Matroska: video, eng/fra audio and eng/fra/deu subtitles with languages, a
    track title, default/forced flags, a file title and two chapters; a keyframe every 5 frames."""
    folder = tmp_path_factory.mktemp("tagged")
    (folder / "meta.txt").write_text(CHAPTERS)
    for lang, text in (("en", "Hello"), ("fr", "Bonjour"), ("de", "Hallo")):
        (folder / f"{lang}.srt").write_text(f"1\n00:00:00,000 --> 00:00:00,800\n{text}\n")
    out = folder / "subs.mkv"
    subprocess.run([
        "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=1",
        "-f", "lavfi", "-i", "sine=f=440:duration=1", "-f", "lavfi", "-i", "sine=f=550:duration=1",
        "-i", folder / "en.srt", "-i", folder / "fr.srt", "-i", folder / "de.srt", "-i", folder / "meta.txt",
        "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3", "-map", "4", "-map", "5",
        "-map_metadata", "6", "-map_chapters", "6", "-c:v", "libx264", "-preset", "ultrafast", "-g", "5",
        "-c:a", "aac", "-c:s", "srt", "-metadata:s:v:0", "language=eng",
        "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-metadata:s:a:1", "title=Français",
        "-metadata:s:s:0", "language=eng", "-metadata:s:s:1", "language=fra", "-metadata:s:s:2", "language=deu",
        "-disposition:a:0", "default", "-disposition:a:1", "0", "-disposition:s:0", "0",
        "-disposition:s:1", "default+forced", "-disposition:s:2", "0", out,
    ], check=True)
    return out


def _vsr_run(src, out, *extra):
    return subprocess.run([sys.executable, "-m", "vsr", "run", str(src), str(out), "--scale", "2", "--model", "espcn",
                           "--backend", "onnxruntime", *extra], capture_output=True, text=True, timeout=300)


def _describe(path):
    import av

    with av.open(str(path)) as container:
        streams = [(s.type, s.metadata.get("language"), s.metadata.get("title"),
                    {flag for flag in ("default", "forced") if s.disposition & getattr(av.stream.Disposition, flag)})
                   for s in container.streams if s.type != "data"]
        chapters = [(round(float(c["start"] * c["time_base"]), 3), c["metadata"].get("title"))
                    for c in container.chapters()]
        return container.metadata.get("title"), streams, chapters


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-stream", "segments"])
def test_matroska_keeps_languages_dispositions_title_and_chapters(tagged_mkv, tmp_path, workers):
    out = tmp_path / "out.mkv"
    result = _vsr_run(tagged_mkv, out, "--workers", workers, "--segment-seconds", "0.2")
    assert result.returncode == 0, result.stderr
    assert _describe(out) == _describe(tagged_mkv)
    title, streams, chapters = _describe(out)
    assert title == "My Holiday" and chapters == [(0.0, "Arrival"), (0.5, "Beach")]
    assert [s[1] for s in streams] == ["eng", "eng", "fra", "eng", "fra", "deu"]
    assert streams[4][3] == {"default", "forced"} and streams[2][2] == "Français"


def test_a_container_without_chapters_says_it_dropped_them(tagged_mkv, tmp_path):
    out = tmp_path / "out.ts"
    result = _vsr_run(tagged_mkv, out, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "2 chapters dropped: .ts files cannot hold chapters" in result.stderr
    title, streams, chapters = _describe(out)
    assert chapters == [] and [s[1] for s in streams if s[0] == "audio"] == ["eng", "fra"]


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-stream", "segments"])
def test_no_audio_still_keeps_the_title_tags_and_chapters(tagged_mkv, tmp_path, workers):
    out = tmp_path / "out.mkv"
    result = _vsr_run(tagged_mkv, out, "--no-audio", "--workers", workers, "--segment-seconds", "0.2")
    assert result.returncode == 0, result.stderr
    title, streams, chapters = _describe(out)
    assert title == "My Holiday" and chapters == [(0.0, "Arrival"), (0.5, "Beach")]
    assert [(s[0], s[1]) for s in streams] == [("video", "eng")]
