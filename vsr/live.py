"""``vsr live``: upscale a camera, file or stream as it plays, in a window or headless.

One loop, fed by a capture thread through a "newest wins" slot (``pipeline.latest``): when
the upscaling is slower than the source, stale frames are dropped so the picture shown is
always the newest one. Each frame goes through the frame upscaler ``vsr run`` builds for the
same options (``pipeline.upscaler.create_frame_upscaler``); then the recording, and the window
(bicubic | vsr with a movable divider, and an overlay).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import InputError, OutputError, VsrError
from .frames import YuvFrame

RECORD_TIME_BASE = Fraction(1, 1000)

WINDOW_TITLE = "vsr live"
#: Overlay text colour (BGR): pure yellow never occurs inside the darkened overlay box, so
#: tests and people can tell the text from the video under it.
OVERLAY_TEXT_BGR = (0, 255, 255)
#: The box under the overlay keeps this fraction of the picture's brightness.
OVERLAY_BOX_KEEP = 0.35
DIVIDER_BGR = (255, 255, 255)
#: Largest initial window (it is resizable); bigger outputs start scaled down to fit.
MAX_INITIAL_WINDOW_WH = (1600, 900)
DIVIDER_STEP = 0.05

# Arrow keys as cv2.waitKeyEx reports them: X11/GTK keysyms, Qt key codes, Windows codes.
_LEFT_KEYS = {65361, 0x1000012, 0x250000}
_RIGHT_KEYS = {65363, 0x1000014, 0x270000}
_ESC = 27


class DisplayUnavailable(VsrError):
    """No window can be shown here (no display, or an OpenCV build without a GUI)."""


@dataclass(frozen=True)
class LiveConfig:
    """Everything ``vsr live`` needs; see ``vsr live --help`` for the meaning of each."""

    source: str = "0"
    scale: int = 3
    #: A model of the ladder, or "auto": the best that holds ``target_fps`` (None: the source's rate, else 30);
    #: `vsr live` passes "auto" by default.
    model: str = "espcn"
    target_fps: float | None = None
    #: With ``model`` "auto": "auto" (from the source's codec), "clean" or "compressed".
    degradation: str = "auto"
    backend: str = "auto"
    weights: Path | None = None
    device: str = "cpu"
    record: Path | None = None
    headless: bool = False
    as_fast_as_possible: bool = False
    max_frames: int | None = None
    split: bool = True
    divider: float = 0.5
    screenshot_dir: Path = Path(".")
    screenshot_at_frame: int | None = None
    #: auto, fp32, bf16 or int8 (``backends.PRECISIONS``).
    precision: str = "auto"


@dataclass
class LiveReport:
    """What happened: frames processed and dropped, speed, latency, files written."""

    frames_processed: int = 0
    frames_dropped: int = 0
    backend: str = ""  # the frame upscaler's description, e.g. "openvino (cpu)"
    fps: float = 0.0
    median_latency_ms: float | None = None
    median_pickup_age_ms: float | None = None
    recording: Path | None = None
    screenshots: list[Path] = field(default_factory=list)
    #: Stopped by Ctrl-C or SIGTERM (the recording, if any, is finished all the same).
    interrupted: bool = False

    def summary(self) -> str:
        parts = [("interrupted: " if self.interrupted else "") + f"{self.frames_processed} frames", f"{self.frames_dropped} dropped", f"{self.fps:.1f} fps"]
        if self.median_latency_ms is not None:
            parts.append(f"median latency {self.median_latency_ms:.0f} ms")
        if self.recording is not None:
            parts.append(f"recorded {self.recording}")
        return ", ".join(parts)


@dataclass
class ViewState:
    """What the viewer controls with keys and the mouse."""

    split: bool = True
    divider: float = 0.5
    paused: bool = False
    quit: bool = False
    screenshot: bool = False


# -- display checks ------------------------------------------------------------------------


def check_display(environ=None, platform: str = sys.platform) -> None:
    """Raise DisplayUnavailable, naming the fix, when no window can be opened here.

    Checked before OpenCV touches the display: its Qt build aborts the whole process
    (SIGABRT, no Python exception) when the X server cannot be reached.
    """
    environ = os.environ if environ is None else environ
    if not (platform.startswith("win") or platform == "darwin"):
        display = environ.get("DISPLAY", "")
        if not display:
            raise DisplayUnavailable(
                "no display to show the window (DISPLAY is not set); use --headless --record OUT.mp4, "
                "or run under xvfb-run")
        if not x_server_reachable(display):
            raise DisplayUnavailable(
                f"no X server answers on DISPLAY={display}; start one (e.g. Xvfb {display.split('.')[0]} &), "
                "fix DISPLAY, or use --headless --record OUT.mp4")
    import cv2

    if re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        raise DisplayUnavailable(
            "this OpenCV build cannot open windows (a -headless wheel is installed); "
            "pip uninstall opencv-contrib-python-headless && pip install opencv-contrib-python, "
            "or use --headless --record OUT.mp4")


def x_server_reachable(display: str, timeout_s: float = 1.0) -> bool:
    """Whether an X server accepts connections at ``display`` ("[host]:N[.screen]")."""
    match = re.fullmatch(r"(.*):(\d+)(?:\.\d+)?", display)
    if not match:
        return False
    host, number = match.group(1), int(match.group(2))
    if host in ("", "unix"):
        candidates = [f"/tmp/.X11-unix/X{number}"]
        if sys.platform.startswith("linux"):
            candidates.append(f"\0/tmp/.X11-unix/X{number}")  # the abstract socket Xorg and Xvfb also offer
        for address in candidates:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                sock.connect(address)
                return True
        return False
    with contextlib.suppress(OSError), socket.create_connection((host, 6000 + number), timeout=timeout_s):
        return True
    return False


# -- the picture ---------------------------------------------------------------------------


def yuv_to_bgr(frame: YuvFrame, full_range: bool = False) -> np.ndarray:
    """A YuvFrame as BGR for display (BT.601: what OpenCV converts; fine for a preview)."""
    import cv2

    from .pipeline.stages import resize_plane

    height, width = frame.height, frame.width
    if full_range:
        cr = resize_plane(frame.chroma_v, (height, width))
        cb = resize_plane(frame.chroma_u, (height, width))
        return cv2.cvtColor(np.dstack([frame.luma, cr, cb]), cv2.COLOR_YCrCb2BGR)
    even_h, even_w = height + height % 2, width + width % 2
    luma = frame.luma
    if (even_h, even_w) != (height, width):
        luma = np.pad(luma, ((0, even_h - height), (0, even_w - width)), mode="edge")
    chroma_hw = (even_h // 2, even_w // 2)
    i420 = np.concatenate([
        luma.reshape(-1),
        resize_plane(frame.chroma_u, chroma_hw).reshape(-1),
        resize_plane(frame.chroma_v, chroma_hw).reshape(-1),
    ]).reshape(even_h * 3 // 2, even_w)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)[:height, :width]


def bicubic_upscale(frame: YuvFrame, scale: int, out_layout: str = "yuv420p") -> YuvFrame:
    """The reference the split view compares against: every plane resized bicubically."""
    from .pipeline.stages import assemble, resize_plane

    luma = resize_plane(frame.luma, (frame.height * scale, frame.width * scale))
    return assemble(frame, luma, out_layout)


def divider_x(width: int, fraction: float) -> int:
    return int(round(min(max(fraction, 0.0), 1.0) * width))


def compose_split(left_bgr: np.ndarray, right_bgr: np.ndarray, divider: float) -> np.ndarray:
    """``left_bgr`` left of the divider, ``right_bgr`` right of it, a 2-pixel line between, labelled."""
    import cv2

    canvas = right_bgr.copy()
    height, width = canvas.shape[:2]
    x = divider_x(width, divider)
    canvas[:, :x] = left_bgr[:, :x]
    canvas[:, max(x - 1, 0) : min(x + 1, width)] = DIVIDER_BGR
    font_scale, thickness = _font_size((height, width))
    baseline_y = height - int(12 * font_scale) - 4
    for text, right_aligned in (("bicubic", True), ("vsr", False)):
        (text_w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        text_x = x - text_w - 10 if right_aligned else x + 10
        if 0 <= text_x and text_x + text_w <= width:
            _outlined_text(canvas, text, (text_x, baseline_y), font_scale, thickness, DIVIDER_BGR)
    return canvas


def overlay_text(in_wh: tuple[int, int], out_wh: tuple[int, int], backend: str, fps: float,
                 latency_ms: float | None) -> str:
    latency = f"latency {latency_ms:.0f} ms" if latency_ms is not None else "latency -"
    return f"{in_wh[0]}x{in_wh[1]} -> {out_wh[0]}x{out_wh[1]}  {backend}  {fps:.1f} fps  {latency}"


def overlay_box(canvas_hw: tuple[int, int], lines: list[str]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the overlay box for these lines on a canvas of this size."""
    import cv2

    font_scale, thickness = _font_size(canvas_hw)
    sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0] for line in lines]
    line_h = max(h for _, h in sizes) + int(14 * font_scale)
    pad = int(10 * font_scale)
    x1 = min(canvas_hw[1], 2 * pad + max(w for w, _ in sizes))
    y1 = min(canvas_hw[0], 2 * pad + line_h * len(lines))
    return 0, 0, x1, y1


def draw_overlay(canvas: np.ndarray, lines: list[str]) -> None:
    """Darken a box at the top left and write ``lines`` in it, in place."""
    import cv2

    font_scale, thickness = _font_size(canvas.shape[:2])
    x0, y0, x1, y1 = overlay_box(canvas.shape[:2], lines)
    box = canvas[y0:y1, x0:x1]
    box[...] = (box * OVERLAY_BOX_KEEP).astype(np.uint8)
    sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0] for line in lines]
    line_h = max(h for _, h in sizes) + int(14 * font_scale)
    pad = int(10 * font_scale)
    for i, line in enumerate(lines):
        y = pad + line_h * (i + 1) - int(7 * font_scale)
        cv2.putText(canvas, line, (pad, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, OVERLAY_TEXT_BGR, thickness,
                    cv2.LINE_AA)


def _font_size(canvas_hw: tuple[int, int]) -> tuple[float, int]:
    # Sized to the canvas so the text stays readable when the window shows it scaled down,
    # and the overlay line still fits on small outputs.
    font_scale = max(0.4, min(canvas_hw[0] / 1080, canvas_hw[1] / 1920) * 1.1)
    return font_scale, max(1, int(round(font_scale * 2)))


def _outlined_text(canvas, text, origin, font_scale, thickness, colour) -> None:
    import cv2

    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, thickness, cv2.LINE_AA)


# -- keys, window, timing ------------------------------------------------------------------


def handle_key(state: ViewState, key: int) -> None:
    """Apply one cv2.waitKeyEx code: q/Esc quit, s split/full, space pause, p screenshot,
    a/d or arrows move the divider."""
    if key < 0:
        return
    if key in _LEFT_KEYS:
        state.divider = max(0.0, state.divider - DIVIDER_STEP)
        return
    if key in _RIGHT_KEYS:
        state.divider = min(1.0, state.divider + DIVIDER_STEP)
        return
    if key & 0xFFFF00:  # another special key (function keys, modifiers)
        return
    char = chr(key & 0xFF).lower()
    if char == "q" or key & 0xFF == _ESC:
        state.quit = True
    elif char == "s":
        state.split = not state.split
    elif char == " ":
        state.paused = not state.paused
    elif char == "p":
        state.screenshot = True
    elif char == "a":
        state.divider = max(0.0, state.divider - DIVIDER_STEP)
    elif char == "d":
        state.divider = min(1.0, state.divider + DIVIDER_STEP)


class LiveWindow:
    """The resizable OpenCV window; dragging with the left button moves the divider."""

    def __init__(self, state: ViewState, image_wh: tuple[int, int], title: str = WINDOW_TITLE) -> None:
        import cv2

        self._cv2 = cv2
        self.title = title
        self._state = state
        self._image_width = image_wh[0]
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as exc:
            raise DisplayUnavailable(f"cannot open a window ({str(exc).strip().splitlines()[-1]}); "
                                     "use --headless --record OUT.mp4") from None
        fit = min(1.0, MAX_INITIAL_WINDOW_WH[0] / image_wh[0], MAX_INITIAL_WINDOW_WH[1] / image_wh[1])
        cv2.resizeWindow(title, int(image_wh[0] * fit), int(image_wh[1] * fit))
        cv2.setMouseCallback(title, self._on_mouse)

    def _on_mouse(self, event, x, y, flags, _param) -> None:
        cv2 = self._cv2
        dragging = event == cv2.EVENT_MOUSEMOVE and flags & cv2.EVENT_FLAG_LBUTTON
        if event == cv2.EVENT_LBUTTONDOWN or dragging:
            # OpenCV reports mouse positions in image pixels, whatever the window's size.
            self._state.divider = min(max(x / self._image_width, 0.0), 1.0)

    def show(self, canvas: np.ndarray) -> None:
        self._cv2.imshow(self.title, canvas)

    def poll_key(self, wait_ms: int = 1) -> int:
        return self._cv2.waitKeyEx(wait_ms)

    def closed(self) -> bool:
        """Whether the viewer closed the window with its close button."""
        try:
            return self._cv2.getWindowProperty(self.title, self._cv2.WND_PROP_VISIBLE) < 1
        except self._cv2.error:
            return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._cv2.destroyWindow(self.title)
            self._cv2.waitKey(1)


class RateMeter:
    """Events per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def save_screenshot(canvas: np.ndarray, folder: Path, frame_number: int) -> Path:
    """The window's picture, at full resolution, as a PNG in ``folder``."""
    import cv2

    stamp = time.strftime("%Y%m%d_%H%M%S")
    path = Path(folder) / f"vsr_live_{stamp}_{frame_number:06d}.png"
    if not cv2.imwrite(str(path), canvas):
        raise OutputError(f"{path}: cannot write the screenshot")
    return path


# -- the loop ------------------------------------------------------------------------------


def upscale_one(upscaler, picture: YuvFrame) -> YuvFrame:
    """``picture`` through ``upscaler.upscale_frames``, the path `vsr run` ships: a live loop
    cannot wait for later frames, so each call is one frame in, that frame out."""
    (upscaled,) = upscaler.upscale_frames([picture])
    return upscaled


def run_live(config: LiveConfig, *, status: Callable[[str], None] | None = None, backend=None) -> LiveReport:
    """Capture, upscale, show and record until the source ends, ``max_frames``, or q/Esc.

    Frames are upscaled one at a time by the frame upscaler `vsr run` builds for the same
    options (``create_frame_upscaler``). ``status`` receives progress lines (stderr by default).
    ``backend``: instead of building one from the config, a ready ``FrameUpscaler`` (used as
    it is) or a ``Backend`` (run as host frames, ``HostFrameUpscaler``); the caller closes it.
    """
    status = status or (lambda line: print(line, file=sys.stderr))
    if not config.headless:
        check_display()
    if config.screenshot_at_frame is not None or not config.headless:
        if not Path(config.screenshot_dir).is_dir():
            raise OutputError(f"{config.screenshot_dir}: the screenshot folder does not exist")
    if config.record is not None:
        from .errors import unwritable_reason
        from .media.encode import check_container

        folder = Path(config.record).parent
        if not folder.is_dir():
            raise OutputError(f"{config.record}: the folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise OutputError(f"{config.record}: cannot write in {folder} ({unwritable_reason(folder)})")
        # Before the model loads: the recording is H.264.
        check_container(Path(config.record).suffix, "libx264", what="--record", codec_is_fixed=True)

    from .backends import EngineSpec
    from .media.camera import open_live_source
    from .media.encode import EncodeOptions, VideoSpec, VideoWriter
    from .pipeline.latest import NewestWins
    from .pipeline.upscaler import HostFrameUpscaler, create_frame_upscaler

    report = LiveReport()
    state = ViewState(split=config.split, divider=config.divider)
    with contextlib.ExitStack() as stack:
        source = open_live_source(config.source, as_fast_as_possible=config.as_fast_as_possible)
        capture: dict = {}

        def close_source() -> None:
            # A capture thread stuck in a device read must not have its container closed under it.
            if "frames" not in capture or not capture["frames"].running:
                source.close()

        stack.callback(close_source)
        info = source.info
        if backend is None:
            model = config.model
            if model == "auto":
                from .models.choose import choose_for_input

                # A camera's raw frames are clean, its MJPEG and a file's or stream's codec usually not
                # (no bit rate to judge by: a live source's is unknown).
                model, note = choose_for_input(
                    EngineSpec(scale=config.scale, backend=config.backend, device=config.device,
                               precision=config.precision),
                    info.width, info.height, config.target_fps or info.fps or 30.0,
                    degradation_option=config.degradation, codec_name=info.codec_name, bits_per_pixel=None)
                status(note)
            upscaler = create_frame_upscaler(EngineSpec(scale=config.scale, model=model,
                                                        backend=config.backend, device=config.device,
                                                        weights=config.weights, precision=config.precision),
                                             out_layout="yuv420p")
            stack.callback(upscaler.close)
        elif hasattr(backend, "upscale_frames"):
            upscaler = backend  # a ready FrameUpscaler; the caller closes it
        else:
            upscaler = HostFrameUpscaler(backend, out_layout="yuv420p")  # the caller closes its backend
        if upscaler.scale != config.scale:
            raise ValueError(f"the backend upscales x{upscaler.scale}, the config asks for x{config.scale}")
        report.backend = upscaler.description
        status(f"upscaling with {upscaler.description}")
        in_wh = (info.width, info.height)
        out_wh = (info.width * config.scale, info.height * config.scale)
        recorder = None
        if config.record is not None:
            # Timed in milliseconds from each frame's media time: dropped frames make it variable rate.
            from .media.encode import implied_colour_tags

            # The source's colour tags; where it has none, what players assume for its size, written out
            # (an untagged SD source recorded at HD would otherwise be shown with the HD matrix).
            (colorspace, primaries, trc), _ = implied_colour_tags(info.width, info.height, info.colorspace,
                                                                  info.color_primaries, info.color_trc)
            spec = VideoSpec(time_base=RECORD_TIME_BASE, average_fps=info.fps,
                             color_range=2 if info.full_range else 1, colorspace=colorspace,
                             color_primaries=primaries, color_trc=trc)
            recorder = stack.enter_context(VideoWriter(
                config.record, width=out_wh[0], height=out_wh[1], source=spec, overwrite=True,
                options=EncodeOptions(preset="veryfast", crf=18, audio=False)))
        last_record_pts = -1
        window = None
        if not config.headless:
            window = LiveWindow(state, out_wh)
            stack.callback(window.close)
        # A file played as fast as possible gives every frame, as fast as the upscaling goes;
        # a camera or a stream cannot wait, so there the newest frame always wins.
        every_frame = config.as_fast_as_possible and info.kind == "file"
        frames = capture["frames"] = stack.enter_context(NewestWins(source.frames(), drop=not every_frame))

        meter = RateMeter()
        latencies_ms: list[float] = []
        pickup_ages_ms: list[float] = []
        latency_ema_ms = None
        last_status = time.monotonic()
        first_pts = None

        def render(picture: YuvFrame, upscaled: YuvFrame, cache: dict) -> np.ndarray:
            if "vsr" not in cache:
                cache["vsr"] = yuv_to_bgr(upscaled, info.full_range)
            if not state.split:
                canvas = cache["vsr"].copy()
            else:
                if "bicubic" not in cache:
                    cache["bicubic"] = yuv_to_bgr(bicubic_upscale(picture, config.scale), info.full_range)
                canvas = compose_split(cache["bicubic"], cache["vsr"], state.divider)
            text = overlay_text(in_wh, out_wh, upscaler.name, meter.rate(), latency_ema_ms)
            lines = [text + ("  [paused]" if state.paused else "")]
            if frames.dropped:
                lines.append(f"dropped {frames.dropped} stale frames")
            draw_overlay(canvas, lines)
            return canvas

        def screenshot(canvas: np.ndarray) -> None:
            try:
                path = save_screenshot(canvas, config.screenshot_dir, report.frames_processed)
            except OutputError as exc:
                status(f"warning: {exc}")
                return
            report.screenshots.append(path)
            status(f"screenshot: {path}")

        started_at = None
        source_error = None
        live_frames = iter(frames)
        # Ctrl-C (and SIGTERM, which the CLI turns into the same) is how a live source is
        # stopped: it ends the loop like the end of the source, so the recording is finished.
        try:
            while True:
                try:
                    live = next(live_frames)
                except StopIteration:
                    break
                except InputError as exc:
                    # The source failed mid-stream (camera unplugged, stream cut): what was recorded
                    # so far is a good file, so finish it, then report the error.
                    source_error = exc
                    break
                picked_at = time.monotonic()
                started_at = picked_at if started_at is None else started_at
                pickup_ages_ms.append((picked_at - live.captured_at) * 1000)
                picture = live.picture
                upscaled = upscale_one(upscaler, picture)
                if recorder is not None:
                    first_pts = live.pts_seconds if first_pts is None else first_pts
                    # Timestamps must increase: two frames within a millisecond would share one.
                    pts = max(round((live.pts_seconds - first_pts) / RECORD_TIME_BASE), last_record_pts + 1)
                    recorder.write(dataclasses.replace(upscaled, pts=pts, time_base=RECORD_TIME_BASE))
                    last_record_pts = pts
                report.frames_processed += 1
                meter.tick(time.monotonic())

                cache: dict = {}
                wants_screenshot = config.screenshot_at_frame == report.frames_processed
                if window is not None or wants_screenshot:
                    canvas = render(picture, upscaled, cache)  # its overlay shows the latency so far
                    if wants_screenshot:
                        screenshot(canvas)
                if window is not None:
                    window.show(canvas)
                    key = window.poll_key(1)  # the window paints the picture here
                # Latency: from capture until the picture is in the window (or, headless, recorded).
                now = time.monotonic()
                latency_ms = (now - live.captured_at) * 1000
                latencies_ms.append(latency_ms)
                latency_ema_ms = latency_ms if latency_ema_ms is None else 0.9 * latency_ema_ms + 0.1 * latency_ms
                if window is not None:
                    handle_key(state, key)
                    shown_divider, shown_split = state.divider, state.split
                    while not state.quit:
                        if state.screenshot:
                            state.screenshot = False
                            screenshot(canvas)
                        if window.closed():
                            state.quit = True
                        if not state.paused:
                            break
                        # Paused: keep the picture, follow the divider; the capture keeps dropping.
                        if (state.divider, state.split) != (shown_divider, shown_split) or "paused" not in cache:
                            cache["paused"] = True
                            canvas = render(picture, upscaled, cache)
                            window.show(canvas)
                            shown_divider, shown_split = state.divider, state.split
                        handle_key(state, window.poll_key(30))
                    if state.quit:
                        break
                elif now - last_status > 2.0:
                    last_status = now
                    status(overlay_text(in_wh, out_wh, upscaler.name, meter.rate(), latency_ema_ms)
                           + f"  dropped {frames.dropped}")
                if config.max_frames is not None and report.frames_processed >= config.max_frames:
                    break
        except KeyboardInterrupt:
            report.interrupted = True
        if recorder is not None and recorder.frames_written == 0 and report.interrupted:
            recorder.close(keep=False)  # stopped before the first frame: nothing to keep
            recorder = None

        report.frames_dropped = frames.dropped
        if report.frames_processed > 1:
            report.fps = (report.frames_processed - 1) / max(time.monotonic() - started_at, 1e-9)
        if latencies_ms:
            report.median_latency_ms = statistics.median(latencies_ms)
            report.median_pickup_age_ms = statistics.median(pickup_ages_ms)
        if recorder is not None:
            report.recording = config.record
    if source_error is not None:
        raise source_error
    return report


__all__ = ["LiveConfig", "LiveReport", "ViewState", "DisplayUnavailable", "run_live", "check_display",
           "compose_split", "draw_overlay", "overlay_text", "overlay_box", "handle_key", "yuv_to_bgr",
           "bicubic_upscale", "OVERLAY_TEXT_BGR"]
