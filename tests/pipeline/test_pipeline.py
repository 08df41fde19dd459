"""`vsr run` end to end on clips the tests write, and on the shared real clips."""
import os
import threading
import time

import numpy as np
import pytest

from vsr.backends.base import BackendBase
from vsr.errors import OutputError
from vsr.media.encode import EncodeOptions
from tests.conftest import run_config
from vsr.pipeline.pipeline import run_video
from vsr.pipeline.workers import Prefetch

from tests.conftest import decode_all, make_clip


def _plane_psnr(reference: np.ndarray, upscaled: np.ndarray) -> float:
    """PSNR of an upscaled plane, area-downscaled back, against the input plane."""
    import cv2

    from vsr.metrics import psnr

    small = cv2.resize(upscaled, (reference.shape[1], reference.shape[0]), interpolation=cv2.INTER_AREA)
    return psnr(reference, small, border_px=2)


def _run(src, dst, **kw):
    return run_video(run_config(src, dst, backend="onnxruntime", **kw))


@pytest.mark.parametrize("pix_fmt,color_range", [("yuv420p", None), ("yuvj420p", 2), ("yuv444p", None)])
def test_frames_sizes_timestamps_and_content(tmp_path, pix_fmt, color_range):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    pts = make_clip(src, pix_fmt=pix_fmt, color_range=color_range, frames=10)
    stats = _run(src, dst, scale=3)
    assert stats.frames == 10 and dst.exists()
    before, info_in = decode_all(src)
    after, info_out = decode_all(dst)
    assert len(after) == 10
    assert (info_out.width, info_out.height) == (96 * 3, 64 * 3)
    assert [f.pts_seconds for f in after] == pytest.approx(pts, abs=1e-3)
    # An untagged source gets the tags players assume for it written out: the matrix for its size,
    # and (H.264 writes the range flag beside the matrix) limited range for an unspecified one.
    assert info_out.color_range == (info_in.color_range or 1)
    assert info_out.colorspace == (info_in.colorspace if info_in.colorspace != 2 else 6)
    for a, b in zip(before, after):
        assert _plane_psnr(a.luma, b.luma) > 30
        # Chroma comes out 4:2:0 by default, so compare at the input's chroma size only for 4:2:0 inputs.
        if a.layout == "yuv420p":
            assert _plane_psnr(a.chroma_u, b.chroma_u) > 30 and _plane_psnr(a.chroma_v, b.chroma_v) > 30


def test_444_kept_on_request(tmp_path):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_clip(src, pix_fmt="yuv444p", frames=4)
    _run(src, dst, scale=2, encode=EncodeOptions(pix_fmt="yuv444p"))
    frames, info = decode_all(dst)
    assert info.source_pix_fmt == "yuv444p" and frames[0].chroma_u.shape == (128, 192)
    source, _ = decode_all(src)
    assert _plane_psnr(source[0].chroma_v, frames[0].chroma_v) > 30


def test_variable_frame_rate_stays_variable(tmp_path):
    src, dst = tmp_path / "vfr.mp4", tmp_path / "out.mp4"
    pts = make_clip(src, vfr=True, frames=12)
    _run(src, dst, scale=2)
    out, _ = decode_all(dst)
    intervals = np.diff([f.pts_seconds for f in out])
    np.testing.assert_allclose(intervals, np.diff(pts), atol=1e-3)
    assert set(np.round(intervals, 3)) == {0.032, 0.048}


@pytest.mark.parametrize("suffix,audio,expected", [(".mp4", "aac", "aac"), (".mkv", "mp3", "mp3"),
                                                   (".webm", "aac", "opus")])
def test_audio_is_carried_over(tmp_path, suffix, audio, expected):
    import av

    src, dst = tmp_path / f"in{'.mkv' if audio == 'mp3' else '.mp4'}", tmp_path / f"out{suffix}"
    make_clip(src, audio=audio, frames=25)
    codec = "libsvtav1" if suffix == ".webm" else "libx264"
    _run(src, dst, scale=2, encode=EncodeOptions(codec=codec))
    with av.open(str(dst)) as container:
        assert [s.codec_context.codec.canonical_name for s in container.streams.audio] == [expected]
        samples = sum(f.samples for f in container.decode(audio=0))
    assert samples == pytest.approx(48000 * 1.0, rel=0.06)


def test_no_audio_flag_and_rotation(tmp_path):
    import av

    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, audio="aac", rotation_degrees=90, frames=4)
    _run(src, dst, scale=2, encode=EncodeOptions(audio=False))
    _, info = decode_all(dst)
    assert info.rotation_degrees == 90
    with av.open(str(dst)) as container:
        assert not container.streams.audio


def test_max_frames_and_existing_output_untouched(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, frames=10, audio="aac")
    assert _run(src, dst, scale=2, max_frames=3).frames == 3
    before = dst.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        _run(src, dst, scale=2)
    assert dst.read_bytes() == before
    assert _run(src, dst, scale=2, overwrite=True).frames == 10


class _Exploding(BackendBase):
    name, scale, device = "exploding", 2, "cpu"

    def __init__(self, after: int) -> None:
        self.calls, self.after = 0, after

    def upscale_luma(self, luma):
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("engine failed")
        return np.repeat(np.repeat(luma, 2, axis=2), 2, axis=3)

    def close(self):
        pass


def test_worker_exception_stops_everything_and_leaves_no_output(tmp_path, monkeypatch):
    import vsr.backends

    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, frames=30)
    monkeypatch.setattr(vsr.backends, "create_backend", lambda *a, **k: _Exploding(after=5))
    threads_before = threading.active_count()
    with pytest.raises(RuntimeError, match="engine failed"):
        _run(src, dst, scale=2)
    assert not dst.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]
    deadline = time.time() + 5
    while threading.active_count() > threads_before and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == threads_before


def test_prefetch_reraises_and_close_unblocks_producer():
    def failing():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(Prefetch(failing(), depth=1))
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    prefetch = Prefetch(endless(), depth=2)
    assert next(prefetch) == 0
    time.sleep(0.2)
    assert len(produced) <= 4  # bounded: the producer waits on the full queue
    prefetch.close()
    assert not prefetch._thread.is_alive()


@pytest.mark.needs_data
@pytest.mark.parametrize("clip,frames,pix_fmt", [("car_traffic_640x360.mp4", 917, "yuv420p"),
                                                 ("tennis_640x480.mp4", 285, "yuvj420p"),
                                                 ("cockatoo_1280x720.mp4", 280, "yuv444p")])
def test_real_clips_decode_as_documented(data_dir, clip, frames, pix_fmt):
    from vsr.media.decode import VideoReader

    with VideoReader(data_dir / "video" / clip) as reader:
        assert reader.info.source_pix_fmt == pix_fmt
        assert sum(1 for _ in reader.frames()) == frames


@pytest.mark.needs_data
def test_real_vfr_clip_with_audio(data_dir, tmp_path):
    import av

    src, dst = data_dir / "video" / "tennis_640x480.mp4", tmp_path / "tennis_x2.mp4"
    stats = _run(src, dst, scale=2, max_frames=40)
    assert stats.frames == 40
    before, info_in = decode_all(src)
    after, info_out = decode_all(dst)
    assert [f.pts_seconds for f in after] == pytest.approx([f.pts_seconds for f in before[:40]], abs=1e-4)
    assert info_out.color_range == 2 and (info_out.width, info_out.height) == (1280, 960)
    for a, b in zip(before[::10], after[::10]):
        assert _plane_psnr(a.luma, b.luma) > 30
    def audio_span(path):
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            assert stream.codec_context.name == "aac"
            packets = [p for p in container.demux(stream) if p.size]
            return float(stream.start_time * stream.time_base), sum(p.duration for p in packets) / 48000

    src_start, _ = audio_span(src)
    out_start, out_seconds = audio_span(dst)
    # The clip's audio starts 0.39 s in: kept, and cut where the 40-frame preview ends.
    assert out_start == pytest.approx(src_start, abs=0.03)
    assert out_start + out_seconds == pytest.approx(after[-1].pts_seconds + 0.04, abs=0.05)


@pytest.mark.needs_data
def test_real_444_clip_with_mp3(data_dir, tmp_path):
    import av

    dst = tmp_path / "cockatoo.mkv"
    _run(data_dir / "video" / "cockatoo_1280x720.mp4", dst, scale=2, max_frames=6)
    with av.open(str(dst)) as container:
        assert container.streams.audio[0].codec_context.codec.canonical_name == "mp3"
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert os.path.getsize(dst) > 10_000


def test_10_bit_source_stays_10_bit(tmp_path):
    """A 10-bit source is decoded, upscaled and written at 10 bits (issue 25; it used to be
    converted to 8 bits with a note)."""
    import subprocess
    import sys

    src, dst = tmp_path / "ten.mkv", tmp_path / "out.mp4"
    make_clip(src, codec="libx265", pix_fmt="yuv420p10le", frames=6)
    _, info = decode_all(src)
    assert info.source_pix_fmt == "yuv420p10le" and info.layout == "yuv420p10le" and info.conversion_note is None
    result = subprocess.run([sys.executable, "-m", "vsr", "run", str(src), str(dst), "--scale", "2",
                             "--backend", "onnxruntime"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "converted" not in result.stderr
    before, _ = decode_all(src)
    after, out_info = decode_all(dst)
    assert len(after) == 6 and out_info.source_pix_fmt == "yuv420p10le"
    assert after[0].luma.dtype == np.uint16
    assert _plane_psnr((before[0].luma >> 2).astype(np.uint8), (after[0].luma >> 2).astype(np.uint8)) > 30


def _with_subtitles(tmp_path):
    """A clip with a SubRip track, muxed by PyAV from an .srt file the test writes."""
    import av

    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,300\nhello\n\n2\n00:00:00,300 --> 00:00:00,450\nworld\n")
    video, out = tmp_path / "video.mkv", tmp_path / "with_subs.mkv"
    make_clip(video, frames=12)
    with av.open(str(video)) as v, av.open(str(srt)) as s, av.open(str(out), "w") as o:
        streams = {v.streams.video[0]: o.add_stream_from_template(v.streams.video[0]),
                   s.streams.subtitles[0]: o.add_stream_from_template(s.streams.subtitles[0])}
        for container, stream in ((v, v.streams.video[0]), (s, s.streams.subtitles[0])):
            for packet in container.demux(stream):
                if packet.size:
                    packet.stream = streams[stream]
                    o.mux(packet)
    return out


def test_subtitles_copied_or_reported(tmp_path):
    import av

    src = _with_subtitles(tmp_path)
    stats = _run(src, tmp_path / "out.mkv", scale=2)
    # (the clip has no colour tags: the only note says which the output was given)
    assert [note for note in stats.notes if "no colour matrix tag" not in note] == []
    with av.open(str(tmp_path / "out.mkv")) as container:
        texts = [bytes(p) for p in container.demux(subtitles=0) if p.size]
    assert texts == [b"hello", b"world"]
    stats = _run(src, tmp_path / "out.mp4", scale=2)
    assert any("subtitle stream 1 (subrip) dropped" in note for note in stats.notes)


def test_odd_output_size_is_cropped_to_even_for_420(tmp_path):
    src, dst = tmp_path / "odd.mkv", tmp_path / "out.mp4"
    make_clip(src, width=95, height=63, pix_fmt="yuv444p", frames=3)
    _run(src, dst, scale=3)
    frames, info = decode_all(dst)
    assert (info.width, info.height) == (284, 188) and len(frames) == 3  # 285x189, last column/row left out


def test_stage_seconds_count_every_frame_of_the_call(tmp_path, monkeypatch):
    """``stream_frames`` reports what the upscaler timed during this call, from its first frame:
    the engine thread starts at once, so totals read after it started would miss frames (two
    workers' chroma stage once read 0.003 s in all). A slow start of the calling thread makes
    the engine run ahead, as a loaded machine does."""
    from vsr.backends import EngineSpec
    from vsr.media.encode import VideoWriter
    from vsr.pipeline import pipeline
    from vsr.pipeline.upscaler import create_frame_upscaler

    class LateStart(Prefetch):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            time.sleep(0.3)

    monkeypatch.setattr(pipeline, "Prefetch", LateStart)
    make_clip(tmp_path / "in.mp4", frames=8)
    frames, info = decode_all(tmp_path / "in.mp4")
    upscaler = create_frame_upscaler(EngineSpec(scale=2, backend="onnxruntime", num_threads=1))
    with upscaler:
        for round_ in range(2):  # a worker reuses its upscaler: the second call counts its own frames only
            before = dict(upscaler.stage_seconds)
            writer = VideoWriter(tmp_path / f"out{round_}.mp4", width=info.width * 2, height=info.height * 2,
                                 source=info)
            stages: dict[str, float] = {}
            pipeline.stream_frames(iter(frames), upscaler, writer, stage_seconds=stages)
            writer.close(keep=True)
            assert set(stages) == {"engine", "chroma"}
            for stage, seconds in stages.items():
                assert seconds == pytest.approx(upscaler.stage_seconds[stage] - before[stage], abs=1e-9)
                assert seconds > 0
