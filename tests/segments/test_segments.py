"""Segment-parallel `vsr run`: keyframe plans, frame-exact joins, audio sync, resume after SIGKILL,
Ctrl-C / SIGTERM with no orphan workers, crashed workers, folders, and caches built by many processes.

Clips are written here with PyAV so their GOP structure is known: B-frames, variable frame
rate, keyframes forced at irregular places, and open GOPs (segment boundaries inside a
B-frame group).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA, make_clip, synthetic_rgb
from tests.conftest import run_config
from vsr.segments import plan_segments, upscale_video
from vsr.tuning import auto_workers
from vsr.backends import EngineSpec

TIME_BASE = Fraction(1, 90000)


def write_clip(path: Path, *, frames: int = 48, width: int = 64, height: int = 48, fps: int = 25,
               keyframes: tuple[int, ...] | None = None, gop: int = 12, bframes: int = 0, open_gop: bool = False,
               vfr: bool = False, audio: bool = False, full_range: bool = False,
               rotation_degrees: float | None = None) -> list[Fraction]:
    """A real H.264 clip; returns every frame's pts in seconds. ``keyframes`` forces IDR frames at
    those indices (irregular GOPs); otherwise one every ``gop`` frames."""
    import av

    params = ["scenecut=0", f"bframes={bframes}", "forced-idr=1"]
    params.append(f"keyint={gop if keyframes is None else 10000}")
    if open_gop:
        params.append("open-gop=1")
    pts_seconds = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = TIME_BASE
        stream.options = {"preset": "medium" if bframes else "ultrafast", "crf": "10", "x264-params": ":".join(params)}
        if full_range:
            stream.codec_context.color_range = 2
            stream.codec_context.colorspace = stream.codec_context.color_primaries = 1  # BT.709
            stream.codec_context.color_trc = 1
        if rotation_degrees is not None:
            stream.set_display_rotation(rotation_degrees)
        audio_stream = None
        if audio:
            audio_stream = container.add_stream("aac", rate=48000)
            audio_stream.layout = "stereo"
        base = synthetic_rgb(height + 60, width + 60, seed=3)
        ticks = 0
        for i in range(frames):
            rgb = np.ascontiguousarray(base[i % 11: i % 11 + height, (3 * i) % 60: (3 * i) % 60 + width])
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = ticks, TIME_BASE
            if full_range:
                frame.color_range = 2
            if keyframes is not None and i in keyframes:
                frame.pict_type = av.video.frame.PictureType.I
            pts_seconds.append(ticks * TIME_BASE)
            container.mux(stream.encode(frame))
            step = 90000 // fps
            ticks += (step * 4 // 5 if i % 3 else step * 7 // 5) if vfr else step
        container.mux(stream.encode(None))
        if audio_stream is not None:
            samples, done = int(48000 * ticks / 90000), 0
            while done < samples:
                n = min(1024, samples - done)
                wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(done, done + n) / 48000)
                data = np.stack([wave, wave]).astype(np.float32).reshape(1, -1)
                chunk = av.AudioFrame.from_ndarray(data, format="flt", layout="stereo")
                chunk.sample_rate, chunk.pts = 48000, done
                container.mux(audio_stream.encode(chunk))
                done += n
            container.mux(audio_stream.encode(None))
    return pts_seconds


def video_frames(path: Path) -> tuple[list[Fraction], list[np.ndarray]]:
    """Presentation times (seconds, exact) and luma planes of every frame, in output order."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    return ([f.pts * f.time_base for f in frames],
            [np.frombuffer(f.planes[0], np.uint8).reshape(-1, f.planes[0].line_size)[:f.height, :f.width].copy()
             for f in frames])


def _keyframe_times(path: Path) -> list[Fraction]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [p.pts * p.time_base for p in container.demux(stream) if p.size and p.is_keyframe]


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def run(src: Path, dst: Path, **options) -> object:
    options.setdefault("scale", 2)
    options.setdefault("backend", "onnxruntime")
    return upscale_video(run_config(src, dst, **options))


CASES = {
    "b-frames": dict(bframes=3, gop=12),
    "vfr": dict(vfr=True, gop=10),
    "irregular-gops": dict(keyframes=(0, 5, 7, 19, 33, 34, 41)),
    "open-gop": dict(bframes=3, gop=12, open_gop=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_puts_every_frame_in_exactly_one_segment(tmp_path, case):
    clip = tmp_path / "in.mp4"
    pts = write_clip(clip, **CASES[case])
    plan = plan_segments(clip, segment_seconds=0.2)
    assert len(plan.segments) >= 3, plan
    ticks = sorted(round(p / plan.time_base) for p in pts)
    owners = []
    for tick in ticks:
        owners.append([s.index for s in plan.segments
                       if (s.start_pts is None or tick >= s.start_pts) and (s.end_pts is None or tick < s.end_pts)])
    assert all(len(o) == 1 for o in owners)
    assert [o[0] for o in owners] == sorted(o[0] for o in owners)  # in order
    assert sum(s.num_frames for s in plan.segments) == len(pts) == plan.num_frames
    assert [s.first_frame for s in plan.segments] == [sum(t.num_frames for t in plan.segments[:i])
                                                      for i in range(len(plan.segments))]


@pytest.mark.parametrize("case", sorted(CASES))
def test_segmented_output_is_frame_exact(tmp_path, case):
    """Same frame count, every timestamp equal to the source's, each frame the right picture."""
    clip = tmp_path / "in.mp4"
    pts = write_clip(clip, **CASES[case])
    run(clip, tmp_path / "single.mp4", workers=1, encode=_crf(8))
    stats = run(clip, tmp_path / "seg.mp4", workers=2, segment_seconds=0.2, encode=_crf(8))
    assert not stats.interrupted and stats.frames == len(pts)
    assert not any("single stream" in note for note in stats.notes), stats.notes
    seg_pts, seg_luma = video_frames(tmp_path / "seg.mp4")
    single_pts, single_luma = video_frames(tmp_path / "single.mp4")
    assert seg_pts == single_pts == pts
    # Every segment starts with a keyframe of its own (an IDR: x264 starts every stream with one).
    plan = plan_segments(clip, segment_seconds=0.2)
    starts = {pts[s.first_frame] for s in plan.segments}
    assert starts <= set(_keyframe_times(tmp_path / "seg.mp4"))
    for i, (a, b) in enumerate(zip(seg_luma, single_luma)):
        same = psnr_db(a, b)
        assert same > 38, (i, same)
        if i + 1 < len(single_luma):  # and it is not the neighbouring picture
            assert same > psnr_db(a, single_luma[i + 1]) + 6, i
    assert not list(tmp_path.glob(".*vsr-work*")) and not list(tmp_path.glob(".vsr-*"))


def _crf(value: int):
    from vsr.media.encode import EncodeOptions

    return EncodeOptions(crf=value)


def test_join_keeps_audio_in_sync(tmp_path):
    import av

    clip = tmp_path / "in.mp4"
    write_clip(clip, frames=60, gop=10, audio=True)
    run(clip, tmp_path / "single.mp4", workers=1)
    run(clip, tmp_path / "seg.mp4", workers=2, segment_seconds=0.3)

    def audio(path):
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            packets = [p for p in container.demux(stream) if p.size]
            return (stream.start_time * stream.time_base, len(packets),
                    (packets[-1].pts + packets[-1].duration) * stream.time_base)

    source_start, source_packets, source_end = audio(clip)
    assert audio(tmp_path / "seg.mp4") == audio(tmp_path / "single.mp4")
    seg_start, seg_packets, seg_end = audio(tmp_path / "seg.mp4")
    assert seg_packets == source_packets and seg_end == source_end and seg_start == source_start


def test_join_keeps_colour_tags_and_rotation(tmp_path):
    import av

    clip = tmp_path / "in.mp4"
    write_clip(clip, frames=30, gop=6, full_range=True, rotation_degrees=90)
    run(clip, tmp_path / "seg.mkv", workers=2, segment_seconds=0.2)

    def tags(path):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frame = next(container.decode(stream))
            ctx = stream.codec_context
            return (ctx.color_range, ctx.colorspace, ctx.color_primaries, ctx.color_trc, frame.rotation)

    assert tags(tmp_path / "seg.mkv") == tags(clip)
    assert tags(clip)[0] == 2 and tags(clip)[4] == 90


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="needs the ffmpeg CLI (apt-get install ffmpeg) to mux SubRip")
def test_join_copies_subtitles_once(tmp_path):
    import av

    clip, srt, muxed = tmp_path / "in.mp4", tmp_path / "s.srt", tmp_path / "in.mkv"
    write_clip(clip, frames=50, gop=10, audio=True)
    srt.write_text("1\n00:00:00,100 --> 00:00:00,900\nfirst\n\n2\n00:00:01,200 --> 00:00:01,800\nsecond\n")
    subprocess.run(["ffmpeg", "-v", "error", "-i", clip, "-i", srt, "-map", "0", "-map", "1", "-c", "copy", muxed],
                   check=True)
    run(muxed, tmp_path / "seg.mkv", workers=2, segment_seconds=0.3)

    def subtitles(path):
        with av.open(str(path)) as container:
            kinds = sorted(s.type for s in container.streams)
            packets = [p for p in container.demux(container.streams.subtitles[0]) if p.size]
            return kinds, [(p.pts * p.time_base, bytes(p)) for p in packets]

    kinds, texts = subtitles(tmp_path / "seg.mkv")
    assert kinds == ["audio", "subtitle", "video"]
    assert texts == subtitles(muxed)[1] and len(texts) == 2


def test_one_keyframe_runs_as_a_single_stream(tmp_path):
    clip = tmp_path / "in.mp4"
    pts = write_clip(clip, frames=20, gop=1000)
    assert plan_segments(clip, segment_seconds=0.2).note == "one segment: one keyframe"
    stats = run(clip, tmp_path / "out.mkv", workers=2, segment_seconds=0.2)
    assert stats.frames == len(pts)
    assert any("one keyframe: ran as a single stream" in note for note in stats.notes)


def test_max_frames_with_segments(tmp_path):
    clip = tmp_path / "in.mp4"
    pts = write_clip(clip, frames=48, gop=8, bframes=2)
    stats = run(clip, tmp_path / "out.mp4", workers=2, segment_seconds=0.2, max_frames=30)
    assert stats.frames == 30
    assert video_frames(tmp_path / "out.mp4")[0] == pts[:30]


def test_auto_workers_follow_cores_and_gpus():
    cpu = EngineSpec()
    assert auto_workers(cpu, cpu_count=1) == 1
    assert auto_workers(cpu, cpu_count=2) == 2  # measured: 2 workers beat 1 on 2 cores
    assert auto_workers(cpu, cpu_count=16) == 16
    int8 = EngineSpec(device="cpu", precision="int8")  # measured: 2 int8 workers as fast as one 2-thread stream
    assert auto_workers(int8, cpu_count=2) == 2 and auto_workers(int8, cpu_count=16) == 16
    gpu = EngineSpec(device="cuda")
    assert auto_workers(gpu, cpu_count=16, gpu_count=1) == 8
    assert auto_workers(gpu, cpu_count=64, gpu_count=2) == 16


# -- the CLI in a real process: signals, kills, resume ---------------------------------------

def _as_from_a_shell() -> None:
    """A terminal's child gets Ctrl-C; a test's child inherits whatever SIGINT disposition the
    test process has (an ignored SIGINT stays ignored across exec), so restore the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _vsr(*args: object, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vsr.cli", *map(str, args)], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, preexec_fn=_as_from_a_shell, **kwargs)


def _children(pid: int) -> list[int]:
    """The worker processes of ``pid`` (not multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    workers = []
    for child in found:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:
            continue
    return workers


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, timeout_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def long_clip(tmp_path) -> Path:
    """Twelve segments of work, slow enough to interrupt in the middle."""
    clip = tmp_path / "long.mp4"
    write_clip(clip, frames=120, width=320, height=180, gop=10, bframes=2)
    return clip


ARGS = ("--scale", 3, "--workers", 2, "--segment-seconds", 0.3, "--backend", "onnxruntime")


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, long_clip):
    out = tmp_path / "out.mp4"
    work = tmp_path / ".out.mp4.vsr-work"
    proc = _vsr("run", long_clip, out, *ARGS, "-q")
    _wait_for(lambda: len(list(work.glob("seg-*.json"))) >= 2)
    _wait_for(lambda: len(_children(proc.pid)) >= 2)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait_for(lambda: not any(_alive(pid) for pid in workers), 10)  # no orphans, even after SIGKILL
    assert not out.exists()
    done_before = len(list(work.glob("seg-*.json")))

    again = _vsr("run", long_clip, out, *ARGS)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 1 and "add --resume" in err  # finished work is never thrown away silently

    resumed = _vsr("run", long_clip, out, *ARGS, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resumed: {done_before} of 12 segments" in err
    # The speed counts only the frames upscaled by this run, not the segments taken over.
    assert f"120 frames ({done_before * 10} reused)" in err
    summary = next(line for line in err.splitlines() if " reused) " in line)
    wall, fps = float(summary.split(" in ")[1].split("s ")[0]), float(summary.split("(")[2].split(" fps")[0])
    assert fps == pytest.approx((120 - done_before * 10) / wall, rel=0.05, abs=0.1)
    assert not work.exists()

    fresh = _vsr("run", long_clip, tmp_path / "fresh.mp4", *ARGS, "-q")
    assert fresh.wait(timeout=300) == 0
    resumed_pts, resumed_luma = video_frames(out)
    fresh_pts, fresh_luma = video_frames(tmp_path / "fresh.mp4")
    assert resumed_pts == fresh_pts and len(resumed_luma) == 120
    assert all(np.array_equal(a, b) for a, b in zip(resumed_luma, fresh_luma))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_stops_every_worker_and_keeps_the_work(tmp_path, long_clip, sig):
    out = tmp_path / "out.mp4"
    work = tmp_path / ".out.mp4.vsr-work"
    # Its own process group, as a shell job: Ctrl-C reaches the workers too, which must ignore it.
    proc = _vsr("run", long_clip, out, *ARGS, start_new_session=True)
    _wait_for(lambda: len(list(work.glob("seg-*.json"))) >= 1)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err  # as a shell reports it: 130 Ctrl-C, 143 SIGTERM
    assert "Traceback" not in err and "run again with --resume" in err
    assert not out.exists() and work.is_dir()
    # (multiprocessing's resource tracker, a child too, leaves once the driver's pipe closes)
    _wait_for(lambda: not any(_alive(pid) for pid in workers), 10)
    assert not list(tmp_path.glob(".vsr-*"))


def test_a_crashed_worker_stops_the_run_naming_its_segment(tmp_path, long_clip):
    out = tmp_path / "out.mp4"
    proc = _vsr("run", long_clip, out, *ARGS)
    work = tmp_path / ".out.mp4.vsr-work"
    # Both workers inside a segment: two segment files being written.
    _wait_for(lambda: len(_children(proc.pid)) >= 2 and len(list(work.glob(".vsr-*"))) >= 2, 120)
    victim = _children(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.startswith("Error") or line.startswith("error")]
    assert len(lines) == 1 and "segment" in lines[0] and "killed by signal 9" in lines[0], err
    assert not out.exists() and "Traceback" not in err


def test_second_run_to_the_same_output_is_refused(tmp_path, long_clip):
    from vsr.errors import OutputError
    from vsr.segments.workdir import WorkFolder

    out = tmp_path / "out.mp4"
    holder = WorkFolder(out, {"x": 1}, resume=False, discard=False)
    try:
        with pytest.raises(OutputError, match="another vsr run is writing"):
            run(long_clip, out, workers=2, segment_seconds=0.3)
    finally:
        holder.remove()
    assert not out.exists()


def test_folder_reports_a_bad_file_and_finishes_the_others(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write_clip(src / "a.mp4", frames=20, gop=5)
    make_clip(src / "b.mkv", frames=10)
    (src / "broken.mp4").write_bytes(b"not a video at all" * 100)
    (src / "notes.txt").write_text("not a video")
    proc = _vsr("run", src, dst, "--scale", 2, "--workers", 2, "--segment-seconds", 0.2)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert sorted(p.name for p in dst.iterdir()) == ["a.mp4", "b.mkv"]
    assert "broken.mp4" in err and "2 done, 0 skipped, 1 failed" in err
    assert len(video_frames(dst / "a.mp4")[0]) == 20
    again = _vsr("run", src, dst, "--scale", 2, "--format", "mkv")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 1 and "1 done, 1 skipped, 1 failed" in err  # a.mkv is new, b.mkv exists
    assert (dst / "a.mkv").is_file()


def _build_once(target: str, log: str) -> None:
    from vsr.cache import cached_file, write_atomic

    def build(path: Path) -> None:
        with open(log, "a") as handle:
            handle.write("built\n")
        time.sleep(0.3)
        write_atomic(path, b"x" * 1_000_000)

    cached_file(Path(target), build)
    assert Path(target).read_bytes() == b"x" * 1_000_000


def test_caches_built_by_many_processes_are_built_once(tmp_path):
    import multiprocessing

    target, log = tmp_path / "cache" / "plan.bin", tmp_path / "log.txt"
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_build_once, args=(str(target), str(log))) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert log.read_text() == "built\n"
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".part")]


@pytest.mark.needs_data
def test_shared_clip_with_audio_joins_exactly(tmp_path):
    """The tennis clip: VFR, AAC starting late; 100 frames in 1.2 s segments against one stream."""
    clip = DATA / "video" / "tennis_640x480.mp4"
    run(clip, tmp_path / "single.mp4", workers=1, max_frames=100, scale=2)
    stats = run(clip, tmp_path / "seg.mp4", workers=2, segment_seconds=1.0, max_frames=100, scale=2)
    assert stats.frames == 100
    seg_pts, seg_luma = video_frames(tmp_path / "seg.mp4")
    single_pts, single_luma = video_frames(tmp_path / "single.mp4")
    assert seg_pts == single_pts
    assert min(psnr_db(a, b) for a, b in zip(seg_luma, single_luma)) > 35


def test_sigterm_on_a_single_stream_keeps_a_playable_partial_file(tmp_path):
    """SIGTERM behaves like Ctrl-C: exit 143, no hidden partial file left, no OUTPUT, the frames
    done in a playable NAME.partial.mp4."""
    from tests.conftest import decode_all, wait_for_frames

    src, out = tmp_path / "long.mp4", tmp_path / "out.mp4"
    make_clip(src, frames=1500, width=160, height=96)
    proc = _vsr("run", src, out, "--scale", 3, "--workers", 1, "--backend", "onnxruntime",
                env={**os.environ, "VSR_PROGRESS_EVERY_S": "0"})
    wait_for_frames(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and not list(tmp_path.glob(".vsr-*"))
    assert not out.exists()
    assert 0 < len(decode_all(tmp_path / "out.partial.mp4")[0]) < 1500


@pytest.mark.needs_cuda
def test_segments_on_the_gpu_resident_path(tmp_path):
    clip = tmp_path / "in.mp4"
    pts = write_clip(clip, frames=48, gop=8, bframes=2)
    run(clip, tmp_path / "cpu.mp4", workers=1, backend="torch", device="cpu", encode=_crf(8))
    stats = run(clip, tmp_path / "gpu.mp4", workers=2, backend="auto", device="cuda", segment_seconds=0.2,
                encode=_crf(8))
    assert "GPU-resident" in stats.backend or stats.backend == "torch"
    gpu_pts, gpu_luma = video_frames(tmp_path / "gpu.mp4")
    assert gpu_pts == pts
    assert min(psnr_db(a, b) for a, b in zip(gpu_luma, video_frames(tmp_path / "cpu.mp4")[1])) > 35


def test_backend_options_are_part_of_what_resume_matches():
    """Finished segments are reused only by a run of the same engine: an int8 calibration set
    given as a backend option changes the pixels, so it changes the work folder's identity."""
    from vsr.backends import EngineSpec
    from vsr.backends.openvino import OpenVinoOptions
    from vsr.segments.driver import _engine_identity

    plain = EngineSpec(backend="openvino", precision="int8")
    calibrated = EngineSpec(backend="openvino", precision="int8",
                            backend_options=OpenVinoOptions(calibration=Path("patches.npz")))
    assert _engine_identity(plain) == _engine_identity(EngineSpec(backend="openvino", precision="int8"))
    assert _engine_identity(calibrated) != _engine_identity(plain)
    assert "patches.npz" in _engine_identity(calibrated)["backend_options"]
