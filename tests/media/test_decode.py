"""Issue 11, decode side: inputs FFmpeg's CLI converts must come out right through `vsr run`.

Every input is made here with the ``ffmpeg`` CLI (what PyAV cannot write: AVI with B-frames, raw
H.264, MPEG-TS with a clock reset, two sizes in one stream, interlaced coding) and, where it
matters, compared with what ``ffmpeg -i IN -c:v libx264 OUT`` makes of it. Damage is made by
overwriting one packet's bytes (its offset and size come from the demuxer).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vsr.errors import InputError
from tests.conftest import run_config
from vsr.segments import plan_segments, upscale_video

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                reason="the ffmpeg CLI makes these inputs (apt-get install ffmpeg)")

WORKERS = [dict(workers=1), dict(workers=2, segment_seconds=0.2)]
WORKER_IDS = ["one-stream", "segments"]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def source(size: str = "64x48", rate: int = 25, frames: int = 20, pattern: str = "testsrc2") -> list[str]:
    return ["-f", "lavfi", "-i", f"{pattern}=size={size}:rate={rate}", "-frames:v", str(frames)]


def run(src: Path, dst: Path, **options):
    options.setdefault("scale", 2)
    options.setdefault("backend", "onnxruntime")
    return upscale_video(run_config(src, dst, **options))


def output_frames(path: Path):
    """(pts in seconds, in presentation order; the decoded frames; the video stream's codec context)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return [float(f.pts * f.time_base) for f in frames], frames, stream.codec_context.sample_aspect_ratio


def packet_times(path: Path) -> list[float]:
    """Presentation times of the video packets, sorted (what a player shows, in order)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(float(p.pts * p.time_base) for p in container.demux(stream) if p.size)


def luma(frame) -> np.ndarray:
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:frame.height, :frame.width].astype(np.float64)


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


# --- 1. timestamps -------------------------------------------------------------------------------

def _avi_bframes(path: Path) -> None:
    ffmpeg(*source(), "-c:v", "libx264", "-bf", "2", "-g", "10", str(path))


def _raw_h264(path: Path) -> None:
    ffmpeg(*source(), "-c:v", "libx264", "-bf", "2", "-g", "10", "-bsf:v", "h264_mp4toannexb", "-f", "h264", str(path))


def _ts_clock_reset(path: Path) -> None:
    """Two TS files, the second's clock 100 s ahead, as one file (a recording across a reset)."""
    first, second = path.with_suffix(".a.ts"), path.with_suffix(".b.ts")
    ffmpeg(*source(frames=15), "-c:v", "libx264", "-g", "5", str(first))
    ffmpeg(*source(frames=15), "-c:v", "libx264", "-g", "5", "-output_ts_offset", "100", str(second))
    path.write_bytes(first.read_bytes() + second.read_bytes())


TIMESTAMP_INPUTS = {"avi-bframes.avi": _avi_bframes, "raw.h264": _raw_h264, "clock-reset.ts": _ts_clock_reset}


@pytest.mark.parametrize("options", WORKERS, ids=WORKER_IDS)
@pytest.mark.parametrize("name", list(TIMESTAMP_INPUTS))
def test_unusable_timestamps_get_best_effort_ones_as_ffmpeg_cli(tmp_path, name, options):
    """AVI with B-frames failed with 'encoder libx264 failed: Invalid argument' (its frames' pts go
    backwards), raw H.264 has no pts at all, and a TS clock reset left a 100 s gap: the frames must
    be FFmpeg CLI's, in count and order, at its times (within one frame: the CLI's CFR output
    may start a frame later), strictly increasing."""
    src = tmp_path / name
    TIMESTAMP_INPUTS[name](src)
    reference = tmp_path / "ffmpeg.mp4"
    ffmpeg("-i", str(src), "-c:v", "libx264", "-preset", "ultrafast", str(reference))
    expected = packet_times(reference)

    stats = run(src, tmp_path / "out.mp4", **options)

    got = packet_times(tmp_path / "out.mp4")
    assert stats.frames == len(got) == len(expected)
    assert all(b > a for a, b in zip(got, got[1:]))
    # Relative to the first frame: FFmpeg's CLI moves a TS's start to 0, vsr keeps the source's.
    frame = 1 / 25
    assert max(abs((g - got[0]) - (e - expected[0])) for g, e in zip(got, expected)) <= frame + 1e-6
    decoded, _, _ = output_frames(tmp_path / "out.mp4")
    assert len(decoded) == len(expected)


def test_clock_reset_in_ts_plans_one_segment(tmp_path):
    src = tmp_path / "reset.ts"
    _ts_clock_reset(src)
    plan = plan_segments(src, segment_seconds=0.2)
    assert len(plan.segments) == 1
    assert "jump" in plan.note


# --- 2. damage ------------------------------------------------------------------------------------

def _clip_with_packets(path: Path, frames: int = 30) -> list[tuple[int, int, bool]]:
    """An MP4 (index at the front, so a cut file still opens); its packets' (offset, size, keyframe)."""
    import av

    ffmpeg(*source(frames=frames), "-c:v", "libx264", "-g", "10", "-bf", "0", "-movflags", "+faststart", str(path))
    with av.open(str(path)) as container:
        return [(p.pos, p.size, p.is_keyframe) for p in container.demux(video=0) if p.size]


def _damage(path: Path, packet: tuple[int, int, bool]) -> None:
    with open(path, "r+b") as file:
        file.seek(packet[0])
        file.write(b"\xff" * packet[1])


@pytest.mark.parametrize("options", WORKERS, ids=WORKER_IDS)
def test_a_damaged_packet_costs_its_frame_not_the_run(tmp_path, options):
    """One corrupt packet mid-MP4 ended the whole run with an error; FFmpeg skips it and goes on."""
    src = tmp_path / "damaged.mp4"
    packets = _clip_with_packets(src)
    middle = [p for p in packets[len(packets) // 2:] if not p[2]][0]
    _damage(src, middle)

    stats = run(src, tmp_path / "out.mp4", **options)

    notes = " ".join(stats.notes)
    skipped = re.search(r"(\d+) frames? could not be decoded and (was|were) skipped", notes)
    assert skipped, stats.notes
    assert int(skipped.group(1)) >= 1
    assert stats.frames + int(skipped.group(1)) == len(packets)
    times, _, _ = output_frames(tmp_path / "out.mp4")
    assert len(times) == stats.frames
    assert all(b > a for a, b in zip(times, times[1:]))


def test_strict_fails_on_a_damaged_packet_with_one_line(tmp_path):
    from vsr.cli import main

    src = tmp_path / "damaged.mp4"
    packets = _clip_with_packets(src)
    _damage(src, [p for p in packets[len(packets) // 2:] if not p[2]][0])
    with pytest.raises(InputError, match="damaged packet"):
        run(src, tmp_path / "out.mp4", strict=True)
    assert not (tmp_path / "out.mp4").exists()

    result = CliRunner().invoke(main, ["run", str(src), str(tmp_path / "cli.mp4"), "--scale", "2", "--backend",
                                       "onnxruntime", "--workers", "1", "--strict", "-q"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "damaged packet" in lines[0], result.output
    assert not (tmp_path / "cli.mp4").exists()


@pytest.mark.parametrize("options", WORKERS, ids=WORKER_IDS)
def test_a_truncated_input_says_so(tmp_path, options):
    """A cut-off file was upscaled to where it stops, with no word that anything was missing."""
    full = tmp_path / "full.mp4"
    _clip_with_packets(full)
    src = tmp_path / "cut.mp4"
    data = full.read_bytes()
    src.write_bytes(data[: len(data) * 6 // 10])

    stats = run(src, tmp_path / "out.mp4", **options)

    assert any("ends early" in note for note in stats.notes), stats.notes
    assert stats.frames == len(output_frames(tmp_path / "out.mp4")[0]) > 0
    with pytest.raises(InputError, match="truncated"):
        run(src, tmp_path / "strict.mp4", strict=True)
    # A complete file says nothing of the kind.
    whole = run(full, tmp_path / "whole.mp4")
    assert not any("ends early" in note or "skipped" in note for note in whole.notes)


# --- 3. resolution changes --------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [("64x48", "96x64"), ("96x64", "64x48")], ids=["grows", "shrinks"])
def test_later_frames_of_another_size_are_scaled_to_the_first(tmp_path, sizes):
    """Larger later frames were cropped to the first size, smaller ones crashed the run."""
    import av

    parts = []
    for i, size in enumerate(sizes):
        part = tmp_path / f"part{i}.ts"
        # The second part's clock continues where the first ends (10 frames at 25 fps).
        ffmpeg(*source(size=size, frames=10, pattern="testsrc"), "-c:v", "libx264", "-g", "5",
               "-output_ts_offset", str(0.4 * i), str(part))
        parts.append(part.read_bytes())
    src = tmp_path / "sizes.ts"
    src.write_bytes(b"".join(parts))
    first_w, first_h = (int(v) for v in sizes[0].split("x"))

    stats = run(src, tmp_path / "out.mkv")

    _, frames, _ = output_frames(tmp_path / "out.mkv")
    assert stats.frames == len(frames) == 20
    assert {(f.width, f.height) for f in frames} == {(2 * first_w, 2 * first_h)}
    assert any("resolution changes" in note for note in stats.notes), stats.notes
    # The last frame shows the whole of the source's last picture, scaled (not a corner of it).
    with av.open(str(src)) as container:
        last = list(container.decode(video=0))[-1]
    expected = luma(last.reformat(width=first_w, height=first_h, format="yuv420p"))
    got = luma(frames[-1].reformat(width=first_w, height=first_h, format="yuv420p"))
    assert psnr_db(got, expected) > 25


# --- 4. non-square pixels ---------------------------------------------------------------------------

@pytest.mark.parametrize("options", WORKERS, ids=WORKER_IDS)
def test_sample_aspect_ratio_is_kept(tmp_path, options):
    """An anamorphic 64x48 at SAR 4:3 is 16:9 on screen; the output lost the SAR (4:3 on screen)."""
    from vsr.media.decode import VideoReader

    src = tmp_path / "anamorphic.mp4"
    ffmpeg(*source(frames=20), "-vf", "setsar=4/3", "-c:v", "libx264", "-g", "5", str(src))
    with VideoReader(src) as reader:
        assert reader.info.sample_aspect_ratio == Fraction(4, 3)

    run(src, tmp_path / "out.mp4", **options)

    _, frames, sar = output_frames(tmp_path / "out.mp4")
    assert sar == Fraction(4, 3)
    assert frames[0].width * sar / frames[0].height == Fraction(16, 9)


# --- 5. interlaced input ----------------------------------------------------------------------------

def combing(frames) -> float:
    """How much odd rows differ from the average of their neighbours: high where fields are woven
    from different moments."""
    values = []
    for frame in frames:
        # Back to the source's rows (outputs are x2), where the fields alternate.
        y = luma(frame.reformat(width=frame.width // 2, height=frame.height // 2, format="yuv420p",
                                interpolation="AREA"))
        values.append(np.mean(np.abs(y[1:-1:2] - (y[:-2:2] + y[2::2]) / 2)))
    return float(np.mean(values))


def test_interlaced_input_is_deinterlaced_unless_told_not_to(tmp_path):
    """Interlaced input was upscaled with its combing (and not said to be interlaced)."""
    src = tmp_path / "interlaced.mkv"
    # A bar moving 6 px per field, 50 fields/s woven into 25 interlaced frames/s, coded as fields.
    bar = "nullsrc=s=64x48:r=50,geq=lum='if(lt(mod(X-N*6\\,64)\\,16)\\,235\\,16)':cb=128:cr=128,format=yuv420p"
    ffmpeg("-f", "lavfi", "-i", bar, "-frames:v", "12", "-vf", "interlace", "-c:v", "libx264",
           "-flags", "+ilme+ildct", str(src))
    progressive = tmp_path / "progressive.mkv"
    ffmpeg(*source(size="64x48", rate=25, frames=12), "-c:v", "libx264", str(progressive))
    source_times = packet_times(src)

    deinterlaced = run(src, tmp_path / "on.mkv")
    kept = run(src, tmp_path / "off.mkv", deinterlace=False)
    plain = run(progressive, tmp_path / "plain.mkv")

    assert any("deinterlaced" in note for note in deinterlaced.notes), deinterlaced.notes
    assert any("interlaced" in note for note in kept.notes) and not any("deinterlaced with" in n for n in kept.notes)
    assert not any("interlaced" in note for note in plain.notes)
    on_times, on_frames, _ = output_frames(tmp_path / "on.mkv")
    _, off_frames, _ = output_frames(tmp_path / "off.mkv")
    assert len(on_frames) == len(off_frames) == len(source_times)
    assert np.allclose(on_times, source_times, atol=1e-3)
    assert combing(on_frames) < 0.3 * combing(off_frames)


def test_interlaced_input_is_deinterlaced_in_segments_too(tmp_path):
    """Segment workers cannot see the first frame: the driver tells them to deinterlace."""
    src = tmp_path / "interlaced.mkv"
    bar = "nullsrc=s=64x48:r=50,geq=lum='if(lt(mod(X-N*6\\,64)\\,16)\\,235\\,16)':cb=128:cr=128,format=yuv420p"
    ffmpeg("-f", "lavfi", "-i", bar, "-frames:v", "16", "-vf", "interlace", "-c:v", "libx264", "-g", "4",
           "-flags", "+ilme+ildct", str(src))
    assert len(plan_segments(src, segment_seconds=0.2).segments) > 1

    segmented = run(src, tmp_path / "segments.mkv", workers=2, segment_seconds=0.2)
    run(src, tmp_path / "off.mkv", deinterlace=False)

    assert any("deinterlaced" in note for note in segmented.notes), segmented.notes
    times, frames, _ = output_frames(tmp_path / "segments.mkv")
    _, off_frames, _ = output_frames(tmp_path / "off.mkv")
    assert len(frames) == len(off_frames) == len(packet_times(src))
    assert np.allclose(times, packet_times(src), atol=1e-3)
    assert combing(frames) < 0.3 * combing(off_frames)
