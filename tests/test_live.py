"""``vsr live``: the newest-wins hand-off, file pacing, the view, errors, headless recording,
and the real window under Xvfb (skipped where Xvfb or an OpenCV with a GUI is missing)."""
from __future__ import annotations

import os
import select
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, synthetic_rgb, with_engine
from vsr.backends.base import BackendBase

SOURCE_FPS = 200.0
SLOW_BACKEND_S = 0.030


def run_vsr(*args, env=None, timeout=120):
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "vsr", *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=timeout)


def write_clip(path: Path, frames: int = 12, width: int = 200, height: int = 150, fps: int = 25,
               passes: int = 1) -> Path:
    """A small H.264 clip of a detailed synthetic picture drifting right by 2 pixels a frame,
    ``frames`` frames; with ``passes`` above 1 it drifts back and forth that many times (a longer
    clip of the same picture)."""
    import av

    picture = synthetic_rgb(height, width + 2 * frames, seed=3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "10", "preset": "ultrafast"}
        for n in range(frames * passes):
            i = n % frames if (n // frames) % 2 == 0 else frames - 1 - n % frames
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[:, 2 * i : 2 * i + width]),
                                               format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("live") / "clip.mp4")


class SlowBackend(BackendBase):
    """Stands in for a backend slower than the source: sleeps, then upscales by pixel repeat."""

    name = "slow"

    def __init__(self, scale: int, delay_s: float = SLOW_BACKEND_S) -> None:
        self.scale, self.delay_s = scale, delay_s

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return luma.repeat(self.scale, axis=2).repeat(self.scale, axis=3)

    def close(self) -> None:
        pass


# -- the newest-wins hand-off ----------------------------------------------------------------


def fast_source(count: int, fps: float = SOURCE_FPS):
    """(index, capture time) at ``fps`` on an absolute schedule, as a camera delivers them."""
    start = time.monotonic()
    for index in range(count):
        delay = start + index / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield index, time.monotonic()


def test_newest_wins_drops_stale_frames_for_a_slow_consumer():
    from vsr.pipeline.latest import NewestWins

    count, interval_s = 200, 1 / SOURCE_FPS
    picked, ages_s, behind = [], [], []
    with NewestWins(fast_source(count)) as frames:
        for index, captured_at in frames:
            ages_s.append(time.monotonic() - captured_at)
            behind.append(frames.produced - 1 - index)  # how many newer frames already existed
            picked.append(index)
            time.sleep(SLOW_BACKEND_S)
    assert picked == sorted(set(picked)), "frames must arrive in order, each once"
    assert picked[-1] == count - 1, "the last frame is never dropped: nothing newer replaces it"
    assert frames.dropped > 0 and frames.produced == count
    assert frames.consumed + frames.dropped == count
    # A queue would hand over frames ever older (~30 ms processing vs 5 ms interval: the last
    # would be about 5 s old); newest-wins keeps every pick-up within a frame interval or two.
    # The bound is on the median and the 90th percentile so a descheduled thread on a busy
    # machine cannot fail the test; the maximum only has to stay far below a queue's.
    assert statistics.median(ages_s) < 2 * interval_s, ages_s
    assert np.percentile(ages_s, 90) < 2 * interval_s, ages_s
    assert max(ages_s) < 0.25, ages_s
    assert statistics.median(behind) <= 1


def test_newest_wins_without_dropping_delivers_every_item():
    from vsr.pipeline.latest import NewestWins

    with NewestWins(range(50), drop=False) as items:
        received = []
        for item in items:
            received.append(item)
            time.sleep(0.001)
    assert received == list(range(50)) and items.dropped == 0


def test_capture_errors_are_raised_in_the_consumer():
    from vsr.errors import InputError
    from vsr.pipeline.latest import NewestWins

    def failing():
        yield from range(3)
        raise InputError("camera unplugged")

    received = []
    with pytest.raises(InputError, match="camera unplugged"), NewestWins(failing(), drop=False) as items:
        for item in items:
            received.append(item)
    assert received == [0, 1, 2]


def test_close_stops_the_capture_thread_and_closes_the_source():
    from vsr.pipeline.latest import NewestWins

    cleaned_up = []

    def endless():
        try:
            index = 0
            while True:
                time.sleep(0.002)
                yield index
                index += 1
        finally:
            cleaned_up.append(True)

    with NewestWins(endless()) as items:
        first = items.get(timeout=5)
        assert first >= 0
    assert not items.running and cleaned_up == [True]


# -- sources and the live loop ---------------------------------------------------------------


def test_file_source_plays_at_its_own_frame_rate(clip):
    from vsr.media.camera import open_live_source

    def timed(as_fast_as_possible):
        with open_live_source(clip, as_fast_as_possible=as_fast_as_possible) as source:
            assert (source.info.width, source.info.height, source.info.kind) == (200, 150, "file")
            start = time.monotonic()
            frames = list(source.frames())
            return frames, time.monotonic() - start

    paced, paced_s = timed(False)
    fast, fast_s = timed(True)
    assert len(paced) == len(fast) == 12
    assert [f.pts_seconds for f in paced] == pytest.approx([i / 25 for i in range(12)], abs=1e-3)
    assert paced_s >= 0.95 * 11 / 25
    assert fast_s < paced_s


def test_live_loop_drops_frames_when_the_backend_is_slower_than_the_source(tmp_path):
    from vsr.live import LiveConfig, run_live

    interval_s = 1 / 100
    fast_clip = write_clip(tmp_path / "fast.mp4", frames=60, width=64, height=48, fps=100)
    config = with_engine(LiveConfig, source=str(fast_clip), scale=2, headless=True)
    report = run_live(config, status=lambda line: None, backend=SlowBackend(2))
    assert report.frames_dropped > 0
    assert report.frames_processed + report.frames_dropped == 60
    assert report.median_pickup_age_ms < 2 * interval_s * 1000


def _decoded(path: Path, count: int):
    from vsr.media.decode import VideoReader

    with VideoReader(path) as reader:
        return list(reader.frames(max_frames=count))


class RecordingUpscaler:
    """A ready FrameUpscaler (host frames through ONNX Runtime) that keeps what it returned."""

    def __init__(self, scale: int) -> None:
        from vsr.backends import create_backend
        from vsr.pipeline.upscaler import HostFrameUpscaler

        self._inner = HostFrameUpscaler(create_backend("onnxruntime", scale), out_layout="yuv420p")
        self.scale, self.name = scale, "recording"
        self.description = "recording " + self._inner.description
        self.outputs, self.closed = [], False

    def upscale_frames(self, frames):
        for frame in self._inner.upscale_frames(frames):
            self.outputs.append(frame)
            yield frame

    def close(self) -> None:
        self.closed = True
        self._inner.close()


def test_live_uses_a_ready_frame_upscaler_as_is(clip):
    """backend= may be a ready FrameUpscaler: live feeds it every picture in order, one at a
    time, shows its description, and leaves closing it to the caller."""
    from vsr.backends import create_backend
    from vsr.live import LiveConfig, run_live
    from vsr.pipeline.upscaler import HostFrameUpscaler

    lines = []
    upscaler = RecordingUpscaler(2)
    try:
        report = run_live(with_engine(LiveConfig, source=str(clip), scale=2, headless=True, as_fast_as_possible=True,
                                     max_frames=5), status=lines.append, backend=upscaler)
        assert not upscaler.closed
    finally:
        upscaler.close()
    assert report.frames_processed == 5 and report.frames_dropped == 0
    assert report.backend == upscaler.description and f"upscaling with {upscaler.description}" in lines
    with HostFrameUpscaler(create_backend("onnxruntime", 2), out_layout="yuv420p") as reference:
        expected = list(reference.upscale_frames(_decoded(clip, 5)))
    assert [f.index for f in upscaler.outputs] == [f.index for f in expected] == list(range(5))
    for got, want in zip(upscaler.outputs, expected):
        assert got.luma.shape == (300, 400)
        np.testing.assert_array_equal(got.luma, want.luma)
        np.testing.assert_array_equal(got.chroma_u, want.chroma_u)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


@pytest.mark.parametrize("backend", ["auto", "openvino"])
def test_live_upscales_with_the_upscaler_vsr_run_builds(clip, tmp_path, backend):
    """Without backend=, live builds its upscaler with create_frame_upscaler: the same pick
    (`auto` included) and description as `vsr run`, and its recording is that upscaler's
    picture (closer to it than to bicubic)."""
    import av

    from vsr.backends import EngineSpec
    from vsr.live import LiveConfig, bicubic_upscale, run_live
    from vsr.pipeline.upscaler import create_frame_upscaler

    spec = EngineSpec(scale=2, backend=backend)
    with create_frame_upscaler(spec, out_layout="yuv420p") as upscaler:
        expected = list(upscaler.upscale_frames(_decoded(clip, 6)))
        description = upscaler.description
    lines = []
    out = tmp_path / "live.mp4"
    report = run_live(with_engine(LiveConfig, source=str(clip), scale=2, backend=backend, headless=True,
                                 as_fast_as_possible=True, max_frames=6, record=out), status=lines.append)
    assert report.backend == description and f"upscaling with {description}" in lines
    assert report.frames_processed == 6
    with av.open(str(out)) as container:
        recorded = [f.to_ndarray(format="yuv420p")[:300] for f in container.decode(video=0)]
    assert len(recorded) == 6
    for luma, want, source in zip(recorded, expected, _decoded(clip, 6)):
        bicubic = bicubic_upscale(source, 2).luma
        assert _mse(luma, want.luma) < 0.6 * _mse(luma, bicubic)


def test_view_keys():
    from vsr.live import ViewState, handle_key

    state = ViewState()
    for key, check in [
        (ord("s"), lambda s: not s.split), (ord("s"), lambda s: s.split),
        (ord(" "), lambda s: s.paused), (ord(" "), lambda s: not s.paused),
        (ord("p"), lambda s: s.screenshot),
        (ord("d"), lambda s: s.divider == pytest.approx(0.55)),
        (65361, lambda s: s.divider == pytest.approx(0.5)),  # left arrow (X11 keysym)
        (0x1000012, lambda s: s.divider == pytest.approx(0.45)),  # left arrow (Qt)
        (-1, lambda s: s.divider == pytest.approx(0.45)),
        (27, lambda s: s.quit),
    ]:
        handle_key(state, key)
        assert check(state), (key, state)
    assert handle_key(q := ViewState(), ord("q")) is None and q.quit


def test_split_view_and_overlay():
    from vsr.live import OVERLAY_TEXT_BGR, compose_split, draw_overlay, overlay_box, overlay_text

    left = np.full((300, 400, 3), 40, np.uint8)
    right = np.full((300, 400, 3), 200, np.uint8)
    canvas = compose_split(left, right, 0.25)
    assert (canvas[:200, :98] == 40).all() and (canvas[:200, 102:] == 200).all()
    assert (canvas[:, 99:101] == 255).all()  # the divider line
    text = overlay_text((640, 360), (1920, 1080), "onnxruntime", 23.44, 41.2)
    assert text == "640x360 -> 1920x1080  onnxruntime  23.4 fps  latency 41 ms"
    draw_overlay(canvas, [text])
    x0, y0, x1, y1 = overlay_box(canvas.shape[:2], [text])
    assert OVERLAY_TEXT_BGR == (0, 255, 255)
    assert yellow(canvas[y0:y1, x0:x1]).sum() > 100 and not yellow(canvas[y1:]).any()
    assert (canvas[y0:y1, x0:x1][~yellow(canvas[y0:y1, x0:x1])] < 200).all(), "the box darkens the picture"


def test_opencv_fallback_when_pyav_cannot_open(clip, monkeypatch):
    from vsr.media import camera

    monkeypatch.setattr(camera.LiveSource, "_open_pyav", lambda self: "PyAV disabled for this test")
    with camera.open_live_source(clip, as_fast_as_possible=True) as source:
        assert (source.info.via, source.info.width, source.info.height) == ("opencv", 200, 150)
        frames = list(source.frames())
    assert len(frames) == 12
    assert frames[0].picture.layout == "yuv420p" and frames[0].picture.luma.shape == (150, 200)
    assert [f.pts_seconds for f in frames] == sorted(f.pts_seconds for f in frames)


@pytest.mark.needs_data
def test_full_range_vfr_source_records(data_dir, tmp_path):
    out = tmp_path / "tennis_x2.mp4"
    result = run_vsr("live", "--headless", "--source", data_dir / "video" / "tennis_640x480.mp4", "--scale", 2,
                     "--as-fast-as-possible", "--max-frames", 4, "--record", out)
    assert result.returncode == 0, result.stderr
    import av

    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1280, 960)
        assert stream.codec_context.color_range == 2  # full range kept, so colours are not washed out
        assert len(list(container.decode(stream))) == 4


# -- the session: one frame per step, and what each way of ending keeps ----------------------


def _recorded_times_s(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as container:
        return [float(frame.pts * frame.time_base) for frame in container.decode(video=0)]


def test_a_session_steps_one_frame_at_a_time_and_its_close_finishes_the_recording(clip, tmp_path):
    from vsr.live import LiveConfig, LiveSession

    out = tmp_path / "rec.mp4"
    config = with_engine(LiveConfig, source=str(clip), scale=2, headless=True, as_fast_as_possible=True, record=out)
    with LiveSession(config, status=lambda line: None, backend=SlowBackend(2, delay_s=0)) as session:
        assert [session.step() for _ in range(13)] == [True] * 12 + [False]  # False: the clip's end
        report = session.finish()
        assert not out.exists(), "the recording appears once it is finished"
    assert session.source_error is None and not session.frames.running
    assert (report.frames_processed, report.frames_dropped, report.recording) == (12, 0, out)
    # Timed from each frame's media time, not from when it was upscaled.
    assert _recorded_times_s(out) == pytest.approx([i / 25 for i in range(12)], abs=1e-3)


class ScriptedWindow:
    """Stands in for LiveWindow: answers each poll with the next scripted key (then q), keeps
    every picture it was shown."""

    def __init__(self, keys: list[int]) -> None:
        self.keys, self.shown = list(keys), []

    def __call__(self, state, image_wh):  # what LiveSession calls to open its LiveWindow
        return self

    def show(self, canvas: np.ndarray) -> None:
        self.shown.append(canvas.copy())

    def poll_key(self, wait_ms: int = 1) -> int:
        return self.keys.pop(0) if self.keys else ord("q")

    def closed(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_space_pauses_on_one_frame_while_the_divider_and_screenshots_follow_the_keys(clip, tmp_path, monkeypatch):
    import cv2

    from vsr import live

    window = ScriptedWindow([ord(" "), ord("d"), ord("p"), ord(" "), ord("q")])
    monkeypatch.setattr(live, "check_display", lambda: None)
    monkeypatch.setattr(live, "LiveWindow", window)
    report = live.run_live(with_engine(live.LiveConfig, source=str(clip), scale=2, as_fast_as_possible=True,
                                           screenshot_dir=tmp_path),
                           status=lambda line: None, backend=SlowBackend(2, delay_s=0))
    # Frame 1, then, paused: redrawn to say so, redrawn at the moved divider, not redrawn for p;
    # space again lets frame 2 through, and q ends the run there.
    assert report.frames_processed == 2 and len(window.shown) == 4
    first, paused, moved, second = window.shown
    rows = slice(75, 225)  # away from the overlay and the labels

    def divider_at(canvas, fraction):
        x = live.divider_x(400, fraction)
        return (canvas[rows, x - 1 : x + 1] == 255).all()

    assert all(divider_at(c, 0.5) and not divider_at(c, 0.55) for c in (first, paused))
    assert all(divider_at(c, 0.55) and not divider_at(c, 0.5) for c in (moved, second))
    vsr_side = (rows, slice(230, 400))
    assert np.array_equal(first[vsr_side], moved[vsr_side]), "paused: still the first frame"
    assert not np.array_equal(moved[vsr_side], second[vsr_side]), "unpaused: the next frame"
    (shot,) = report.screenshots
    assert np.array_equal(cv2.imread(str(shot)), moved), "p saves the picture on show"


def test_a_source_failing_mid_stream_raises_once_the_recording_so_far_is_finished(clip, tmp_path, monkeypatch):
    from vsr.errors import InputError
    from vsr.live import LiveConfig, run_live
    from vsr.media import camera

    plays = camera.LiveSource.frames

    def unplugged_after_three(self):
        for index, frame in enumerate(plays(self)):
            if index == 3:
                raise InputError("camera unplugged")
            yield frame

    monkeypatch.setattr(camera.LiveSource, "frames", unplugged_after_three)
    out = tmp_path / "rec.mp4"
    with pytest.raises(InputError, match="camera unplugged"):
        run_live(with_engine(LiveConfig, source=str(clip), scale=2, headless=True, as_fast_as_possible=True, record=out),
                 status=lambda line: None, backend=SlowBackend(2, delay_s=0))
    assert len(_recorded_times_s(out)) == 3


class FailingBackend(SlowBackend):
    """Upscales like SlowBackend (without the wait) until frame ``at_frame``, which raises ``error``."""

    def __init__(self, scale: int, error: BaseException, at_frame: int) -> None:
        super().__init__(scale, delay_s=0)
        self.error, self.at_frame, self.calls = error, at_frame, 0

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.at_frame:
            raise self.error
        return super().upscale_luma(luma)


def test_an_error_during_the_run_throws_the_unfinished_recording_away(clip, tmp_path):
    from vsr.live import LiveConfig, run_live

    out = tmp_path / "rec.mp4"
    with pytest.raises(RuntimeError, match="the engine broke"):
        run_live(with_engine(LiveConfig, source=str(clip), scale=2, headless=True, as_fast_as_possible=True, record=out),
                 status=lambda line: None, backend=FailingBackend(2, RuntimeError("the engine broke"), at_frame=3))
    assert list(tmp_path.iterdir()) == []  # neither the recording nor a partial file


def test_ctrl_c_before_the_first_frame_keeps_no_recording(clip, tmp_path):
    from vsr.live import LiveConfig, run_live

    out = tmp_path / "rec.mp4"
    report = run_live(with_engine(LiveConfig, source=str(clip), scale=2, headless=True, as_fast_as_possible=True, record=out),
                      status=lambda line: None, backend=FailingBackend(2, KeyboardInterrupt(), at_frame=1))
    assert report.interrupted and report.frames_processed == 0 and report.recording is None
    assert list(tmp_path.iterdir()) == []


# -- the command -----------------------------------------------------------------------------


def test_no_display_is_a_clear_error(clip):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = run_vsr("live", "--source", clip, env=env)
    assert result.returncode == 1
    assert "no display" in result.stderr and "--headless" in result.stderr and "xvfb-run" in result.stderr
    assert "Traceback" not in result.stderr

    result = run_vsr("live", "--source", clip, env={**env, "DISPLAY": ":987"})
    assert result.returncode == 1 and "no X server answers on DISPLAY=:987" in result.stderr


@pytest.mark.parametrize("source, message", [
    ("/dev/video97", "no camera at /dev/video97"),
    ("missing.mp4", "missing.mp4: no such file"),
])
def test_sources_that_cannot_be_opened(tmp_path, source, message):
    result = run_vsr("live", "--headless", "--source", source)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_not_a_video_is_a_clear_error(tmp_path):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video")
    result = run_vsr("live", "--headless", "--source", bogus)
    assert result.returncode == 1 and "cannot be opened as a video" in result.stderr
    assert "Traceback" not in result.stderr


def test_headless_records_every_frame_and_takes_a_screenshot(clip, tmp_path):
    import av

    out = tmp_path / "live.mp4"
    result = run_vsr("live", "--headless", "--source", clip, "--scale", 2, "--as-fast-as-possible",
                     "--max-frames", 10, "--record", out, "--screenshot-at-frame", 4, "--screenshot-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "10 frames, 0 dropped" in result.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
    assert (stream.width, stream.height, len(decoded)) == (400, 300, 10)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no partial file
    shots = list(tmp_path.glob("vsr_live_*_000004.png"))
    assert len(shots) == 1


# -- the window, under Xvfb ------------------------------------------------------------------


def _gui_opencv() -> str | None:
    """Why this interpreter's OpenCV cannot show windows, or None when it can."""
    code = "import cv2, re; print('NONE' if re.search(r'GUI:\\s+NONE', cv2.getBuildInformation()) else 'GUI')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        return f"cv2 does not import: {result.stderr.strip().splitlines()[-1:]}"
    if result.stdout.strip() != "GUI":
        return "this OpenCV has no GUI (a -headless wheel); pip install opencv-contrib-python"
    return None


@pytest.fixture
def xvfb_display():
    """A private Xvfb server; its display number is chosen by Xvfb, so parallel runs never clash."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    reason = _gui_opencv()
    if reason:
        pytest.skip(reason)
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24",
                               "-nolisten", "tcp", "-br"], pass_fds=[write_fd],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 20)
        number = os.read(read_fd, 64).decode().strip() if ready else ""
        if not number:
            pytest.fail("Xvfb did not start")
        yield f":{number}"
    finally:
        os.close(read_fd)
        server.terminate()
        server.wait(10)


def yellow(bgr: np.ndarray) -> np.ndarray:
    """Where the overlay's yellow text is, anti-aliased edges included: red and green high, blue low."""
    bgr = bgr.astype(int)
    return (bgr[..., 2] > 150) & (bgr[..., 1] > 150) & (bgr[..., 0] < 90)


def _laplacian_energy(bgr: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32), cv2.CV_32F).var())


def test_window_shows_split_view_and_overlay(tmp_path, xvfb_display):
    import cv2
    from PIL import ImageGrab

    from vsr.live import bicubic_upscale, divider_x, overlay_box, yuv_to_bgr
    from vsr.media.decode import VideoReader

    scale, shot_at = 3, 3
    # Long enough that the window is still up while a busy machine grabs it: at 60 frames the whole
    # suite's load once let the clip end, and the window close, before the grab saw it painted.
    clip = write_clip(tmp_path / "long.mp4", frames=60, passes=4)
    env = {**os.environ, "DISPLAY": xvfb_display, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "vsr", "live", "--source", str(clip), "--scale", str(scale), "--backend",
         "onnxruntime", "--as-fast-as-possible", "--max-frames", "240", "--screenshot-at-frame", str(shot_at),
         "--screenshot-dir", str(tmp_path)],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    grabbed = None
    stderr_lines = []
    try:
        for line in process.stderr:
            stderr_lines.append(line)
            if line.startswith("screenshot:") and grabbed is None:
                # The window is up: grab the X screen as a viewer sees it, retrying while a
                # busy machine has not painted it yet.
                deadline = time.monotonic() + 10
                while grabbed is None or (_window_problem(grabbed) and time.monotonic() < deadline):
                    time.sleep(0.2)
                    grabbed = cv2.cvtColor(np.asarray(ImageGrab.grab(xdisplay=xvfb_display)), cv2.COLOR_RGB2BGR)
        process.wait(120)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = "".join(stderr_lines)
    assert process.returncode == 0, stderr

    # The screenshot (p key): exactly what the window was given, at full resolution.
    (shot_path,) = tmp_path.glob(f"vsr_live_*_{shot_at:06d}.png")
    shot = cv2.imread(str(shot_path))
    with VideoReader(clip) as reader:
        source = list(reader.frames(max_frames=shot_at))[-1]
    bicubic = yuv_to_bgr(bicubic_upscale(source, scale))
    height, width = shot.shape[:2]
    assert (width, height) == (200 * scale, 150 * scale)
    x = divider_x(width, 0.5)
    # Away from the overlay (top) and the labels (bottom):
    rows = slice(height // 4, height * 3 // 4)
    left, right = slice(20, x - 20), slice(x + 20, width - 20)
    assert np.abs(shot[rows, left].astype(int) - bicubic[rows, left]).mean() < 0.5, "left of the divider is bicubic"
    assert np.abs(shot[rows, right].astype(int) - bicubic[rows, right]).mean() > 1.0, "right is not bicubic"
    assert _laplacian_energy(shot[rows, right]) > 1.1 * _laplacian_energy(bicubic[rows, right]), \
        "vsr should carry more fine detail than bicubic"
    assert (shot[rows, x - 1 : x + 1] == 255).all(), "the divider line"
    x0, y0, x1, y1 = overlay_box(shot.shape[:2], ["200x150 -> 600x450  onnxruntime  10.0 fps  latency 10 ms"])
    assert yellow(shot[y0:y1, x0:x1]).sum() > 100, "the overlay text"

    # The real window on the X screen: split (a white divider down its middle) with the overlay.
    assert grabbed is not None, "vsr live ended before its window could be grabbed"
    assert _window_problem(grabbed) is None, _window_problem(grabbed)


def _window_problem(screen: np.ndarray) -> str | None:
    """What is wrong with the window on this X screen grab (on a black root), or None."""
    content = np.argwhere(screen.max(axis=-1) > 0)
    if len(content) == 0:
        return "no window on the screen"
    (top, left_x), (bottom, right_x) = content.min(axis=0), content.max(axis=0)
    window = screen[top : bottom + 1, left_x : right_x + 1]
    if window.shape[0] < 100 or window.shape[1] < 100:
        return f"the window is too small: {window.shape}"
    middle = window.shape[1] // 2
    divider = window[window.shape[0] // 4 : window.shape[0] * 3 // 4, middle - 4 : middle + 5] > 200
    if not divider.all(axis=-1).all(axis=0).any():
        return "no white divider line in the window's middle"
    if yellow(window[: window.shape[0] // 5, : window.shape[1] // 2]).sum() <= 30:
        return "no overlay text (yellow) at the window's top left"
    return None


def test_live_target_fps_picks_a_model_and_says_why(clip, tmp_path, monkeypatch):
    """--model auto in live: timed on the source's own frame size, chosen before the first frame."""
    from vsr.live import LiveConfig, run_live
    from vsr.models.registry import shipped_models

    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path))
    lines = []
    report = run_live(with_engine(LiveConfig, source=str(clip), scale=2, model="auto", target_fps=0.1, backend="onnxruntime",
                                 degradation="clean", headless=True, as_fast_as_possible=True, max_frames=2),
                      status=lines.append)
    best = [m for m in shipped_models() if m.degradation == "bicubic"][-1].name
    assert any(line.startswith(f"model {best}: the best model that holds 0.1 fps at 200x150 x2") for line in lines), lines
    assert any("--degradation clean" in line for line in lines)
    assert report.frames_processed == 2


@pytest.mark.parametrize("sig,status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stopped_headless_recording_is_kept_playable(tmp_path, sig, status):
    """Ctrl-C or SIGTERM ends a live recording as its natural end would: the frames recorded so
    far in a playable file at --record's path, no hidden partial beside it; exit 128 + signal."""
    import av
    import signal as signals

    clip = write_clip(tmp_path / "long.mp4", frames=250, width=96, height=64)  # 10 s at its own rate
    record = tmp_path / "rec.mp4"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # The default SIGINT disposition, as under a shell: an ignored one would be inherited from pytest.
    process = subprocess.Popen(
        [sys.executable, "-m", "vsr", "live", "--source", str(clip), "--headless", "--record", str(record),
         "--scale", "2", "--model", "espcn", "--backend", "onnxruntime"],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        preexec_fn=lambda: signals.signal(signals.SIGINT, signals.SIG_DFL))
    lines = []
    try:
        for line in process.stderr:  # a status line every 2 s once frames flow
            lines.append(line)
            if " fps " in line and "dropped" in line:
                break
        process.send_signal(getattr(signals, sig))
        lines += process.stderr.readlines()
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = "".join(lines)
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    with av.open(str(record)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert 0 < decoded < 250
    assert not [p.name for p in tmp_path.iterdir() if "partial" in p.name]


def test_the_chosen_models_reason_rounds_the_frame_rate_for_people(clip, tmp_path, monkeypatch):
    """A container's 25.0146 fps is said as 25.01, not to four decimals."""
    from vsr.live import LiveConfig, run_live

    monkeypatch.setenv("VSR_CACHE_DIR", str(tmp_path))
    lines = []
    run_live(with_engine(LiveConfig, source=str(clip), scale=2, model="auto", target_fps=25.01457, backend="onnxruntime",
                        degradation="clean", headless=True, as_fast_as_possible=True, max_frames=1),
             status=lines.append)
    reason = next(line for line in lines if line.startswith("model "))
    assert " 25.01 fps at 200x150 x2" in reason and "25.0146" not in reason


@pytest.mark.parametrize("suffix", [".gif", ".webm", ""])
def test_a_recording_container_that_cannot_hold_it_is_refused_before_any_work(clip, tmp_path, suffix):
    """One line naming --record and what to name it instead; no model timed (the default is --model auto)."""
    cache = tmp_path / "cache"
    record = tmp_path / f"rec{suffix}"
    result = run_vsr("live", "--source", clip, "--headless", "--record", record, "--scale", 2,
                     env={**os.environ, "VSR_CACHE_DIR": str(cache)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--record" in lines[0], result.stderr
    assert not cache.exists() or not any(cache.rglob("*"))
    assert not record.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]
