"""``vsr live``: upscale a camera, file or stream as it plays, in a window or headless.

A ``LiveSession`` holds one run: a capture thread feeds it through a "newest wins" slot
(``pipeline.latest``), so when the upscaling is slower than the source, stale frames are
dropped and the picture shown is always the newest one. Each ``step()`` takes one frame
through the frame upscaler ``vsr run`` builds for the same options
(``pipeline.upscaler.create_frame_upscaler``), then the recording, and the window (bicubic |
vsr with a movable divider, and an overlay). ``run_live`` is the one entry point the CLI calls.
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
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, runtime_checkable

import numpy as np

from .backends import EngineSpec
from .errors import InputError, OutputError, VsrError
from .frames import YuvFrame
from .progress import say

if TYPE_CHECKING:
    from .backends.base import Backend
    from .live_fold import LateFold
    from .media.camera import LiveFrame, LiveSource, SourceInfo
    from .media.encode import VideoWriter
    from .pipeline.latest import NewestWins

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
    #: Which network runs where; its ``model`` may be "auto": the best that holds ``target_fps``
    #: (None: the source's rate, else 30), what `vsr live` passes by default.
    engine: EngineSpec = field(default_factory=EngineSpec)
    target_fps: float | None = None
    #: With model "auto": "auto" (from the source's codec), "clean" or "compressed".
    degradation: str = "auto"
    record: Path | None = None
    headless: bool = False
    as_fast_as_possible: bool = False
    max_frames: int | None = None
    split: bool = True
    divider: float = 0.5
    screenshot_dir: Path = Path(".")
    screenshot_at_frame: int | None = None

    @property
    def scale(self) -> int:
        return self.engine.scale


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


# -- the session ---------------------------------------------------------------------------

#: Headless, a progress line goes to ``status`` at most this often.
STATUS_INTERVAL_S = 2.0
#: While paused, each wait for a key: short enough for the divider to follow the keys smoothly.
PAUSED_KEY_WAIT_MS = 30


@runtime_checkable
class LiveUpscaler(Protocol):
    """What the session needs of its upscaler: a ``FrameUpscaler`` (``pipeline.upscaler``; both
    kinds qualify) plus ``name``, the short backend name the overlay shows."""

    name: str
    description: str
    scale: int

    def upscale_frames(self, frames: Iterable[YuvFrame]) -> Iterator[YuvFrame]: ...

    def close(self) -> None: ...


def upscale_one(upscaler: LiveUpscaler, picture: YuvFrame) -> YuvFrame:
    """``picture`` through ``upscaler.upscale_frames``, the path `vsr run` ships: a live loop
    cannot wait for later frames, so each call is one frame in, that frame out."""
    (upscaled,) = upscaler.upscale_frames([picture])
    return upscaled


def check_live_config(config: LiveConfig) -> None:
    """Refuse what would fail later, before the source opens or a model is timed: a missing
    GPU, no display for the window, and folders the screenshots or the recording cannot go to."""
    if config.engine.device != "cpu":
        from .backends import check_cuda_device

        check_cuda_device(config.engine.device)  # one line, before a model is timed on a GPU that is not there
    if not config.headless:
        check_display()
    if config.screenshot_at_frame is not None or not config.headless:
        if not Path(config.screenshot_dir).is_dir():
            raise OutputError(f"{config.screenshot_dir}: the screenshot folder does not exist")
    if config.record is not None:
        _check_record_path(config.record)


def _check_record_path(record: Path) -> None:
    from .errors import unwritable_reason
    from .media.encode import check_container

    folder = Path(record).parent
    if not folder.is_dir():
        raise OutputError(f"{record}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{record}: cannot write in {folder} ({unwritable_reason(folder)})")
    # Before the model loads: the recording is H.264.
    check_container(Path(record).suffix, "libx264", what="--record", codec_is_fixed=True)


def _choose_model(config: LiveConfig, info: SourceInfo, status: Callable[[str], None]) -> str:
    """``--model auto`` for this source, timed at its own frame size; ``status`` hears why."""
    from .tuning import resolve_model

    # A camera's raw frames are clean, its MJPEG and a file's or stream's codec usually not
    # (no bit rate to judge by: a live source's is unknown).
    model, note = resolve_model(config.engine, info.width, info.height, config.target_fps or info.fps or 30.0,
                                degradation=config.degradation, codec_name=info.codec_name)
    status(note)
    return model


def _build_upscaler(config: LiveConfig, info: SourceInfo,
                    status: Callable[[str], None]) -> tuple[LiveUpscaler, LateFold | None]:
    """The frame upscaler `vsr run` builds for the same options; and, for a camera or stream whose
    network reads a global context, the ``LateFold`` that replaces it once the first seconds are seen."""
    from .pipeline.upscaler import create_frame_upscaler

    spec = config.engine
    if spec.model == "auto" and spec.weights is None:
        spec = dataclasses.replace(spec, model=_choose_model(config, info, status))
    late_fold = None
    if info.kind == "file":
        # As `vsr run` does (and as the model choice timed it): the file's context folded in.
        from .tuning import engine_with_clip_context

        spec, note = engine_with_clip_context(spec, config.source)
        if note is not None:
            status(note)
    else:
        # No clip to read ahead: each frame reads its own context until its first seconds are folded.
        from .live_fold import late_fold_for

        late_fold = late_fold_for(spec, status)
        if late_fold is not None:
            status(f"its context is read from each frame until the first {late_fold.first.count} frames "
                   f"({late_fold.first.span_s:g} s) are folded into its convolutions")
    return create_frame_upscaler(spec, out_layout="yuv420p"), late_fold


def _as_live_upscaler(backend: LiveUpscaler | Backend) -> LiveUpscaler:
    """A ready frame upscaler as it is; a ``Backend`` run as host frames (``HostFrameUpscaler``)."""
    if isinstance(backend, LiveUpscaler):
        return backend
    from .pipeline.upscaler import HostFrameUpscaler

    return HostFrameUpscaler(backend, out_layout="yuv420p")


def _open_recorder(path: Path, info: SourceInfo, out_wh_px: tuple[int, int]) -> VideoWriter:
    """The H.264 recording, timed in milliseconds from each frame's media time (dropped frames
    make it variable rate)."""
    from .media.encode import EncodeOptions, VideoSpec, VideoWriter, implied_colour_tags

    # The source's colour tags; where it has none, what players assume for its size, written out
    # (an untagged SD source recorded at HD would otherwise be shown with the HD matrix).
    (colorspace, primaries, trc), _ = implied_colour_tags(info.width, info.height, info.colorspace,
                                                          info.color_primaries, info.color_trc)
    spec = VideoSpec(time_base=RECORD_TIME_BASE, average_fps=info.fps, color_range=2 if info.full_range else 1,
                     colorspace=colorspace, color_primaries=primaries, color_trc=trc)
    return VideoWriter(path, width=out_wh_px[0], height=out_wh_px[1], source=spec, overwrite=True,
                       options=EncodeOptions(preset="veryfast", crf=18, audio=False))


class _ViewFrame:
    """One frame as the view shows it: each picture converted to BGR once, however often a
    paused view redraws it."""

    def __init__(self, picture: YuvFrame, upscaled: YuvFrame, scale: int, full_range: bool) -> None:
        self.picture, self.upscaled = picture, upscaled
        self.scale, self.full_range = scale, full_range

    @cached_property
    def vsr_bgr(self) -> np.ndarray:
        return yuv_to_bgr(self.upscaled, self.full_range)

    @cached_property
    def bicubic_bgr(self) -> np.ndarray:
        return yuv_to_bgr(bicubic_upscale(self.picture, self.scale), self.full_range)


class _Timings:
    """The run's clocks: the output rate, and how old each frame is when picked up and when shown."""

    def __init__(self) -> None:
        self.meter = RateMeter()
        self.started_at_s: float | None = None
        self.pickup_ages_ms: list[float] = []
        self.latencies_ms: list[float] = []
        #: What the overlay shows: smoothed, so the number can be read while it changes.
        self.latency_ema_ms: float | None = None

    def picked_up(self, live: LiveFrame, now_s: float) -> None:
        self.started_at_s = now_s if self.started_at_s is None else self.started_at_s
        self.pickup_ages_ms.append((now_s - live.captured_at) * 1000)

    def shown(self, live: LiveFrame, now_s: float) -> None:
        """Latency: from capture until the picture is in the window (or, headless, recorded)."""
        latency_ms = (now_s - live.captured_at) * 1000
        self.latencies_ms.append(latency_ms)
        ema_ms = self.latency_ema_ms
        self.latency_ema_ms = latency_ms if ema_ms is None else 0.9 * ema_ms + 0.1 * latency_ms

    def fill(self, report: LiveReport, now_s: float) -> None:
        if report.frames_processed > 1:
            report.fps = (report.frames_processed - 1) / max(now_s - self.started_at_s, 1e-9)
        if self.latencies_ms:
            report.median_latency_ms = statistics.median(self.latencies_ms)
            report.median_pickup_age_ms = statistics.median(self.pickup_ages_ms)


class LiveSession:
    """One ``vsr live`` run. The constructor checks the config and opens everything: the source
    and its capture thread, the upscaler, the recording and the window; ``close`` (or leaving
    ``with``) closes them. ``step()`` handles one frame; ``run()`` steps to the end.

    ``backend``: as ``run_live`` takes it. A source failing mid-stream ends the steps and is
    kept in ``source_error`` rather than raised: the recording so far is a good file, finished
    on a normal close, so the caller raises the error after closing. An exception leaving
    ``with`` throws the recording away instead.
    """

    source: LiveSource
    upscaler: LiveUpscaler
    recorder: VideoWriter | None
    window: LiveWindow | None
    frames: NewestWins[LiveFrame] | None

    def __init__(self, config: LiveConfig, *, status: Callable[[str], None] | None = None,
                 backend: LiveUpscaler | Backend | None = None) -> None:
        self.config = config
        self.status = status or say
        check_live_config(config)
        self.report = LiveReport()
        self.view = ViewState(split=config.split, divider=config.divider)
        self.source_error: InputError | None = None
        self._late_fold: LateFold | None = None
        self.frames = None
        self._timings = _Timings()
        self._first_pts_s: float | None = None
        self._last_record_pts_ms = -1
        with contextlib.ExitStack() as stack:  # what opened before a failure is closed again
            self._open(stack, backend)
            self._stack = stack.pop_all()

    def _open(self, stack: contextlib.ExitStack, backend: LiveUpscaler | Backend | None) -> None:
        from .media.camera import open_live_source
        from .pipeline.latest import NewestWins

        config = self.config
        self.source = open_live_source(config.source, as_fast_as_possible=config.as_fast_as_possible)
        stack.callback(self._close_source)
        info = self.source.info
        self.upscaler = self._open_upscaler(stack, backend)
        self.in_wh_px = (info.width, info.height)
        self.out_wh_px = (info.width * config.scale, info.height * config.scale)
        self.recorder = None
        if config.record is not None:
            self.recorder = stack.enter_context(_open_recorder(Path(config.record), info, self.out_wh_px))
        self.window = None
        if not config.headless:
            self.window = LiveWindow(self.view, self.out_wh_px)
            stack.callback(self.window.close)
        # A file played as fast as possible gives every frame, as fast as the upscaling goes;
        # a camera or a stream cannot wait, so there the newest frame always wins.
        every_frame = config.as_fast_as_possible and info.kind == "file"
        self.frames = stack.enter_context(NewestWins(self.source.frames(), drop=not every_frame))
        self._next_frames = iter(self.frames)
        self._last_status_s = time.monotonic()

    def _open_upscaler(self, stack: contextlib.ExitStack, backend: LiveUpscaler | Backend | None) -> LiveUpscaler:
        """The config's upscaler, closed with the session; or the caller's, which the caller closes."""
        if backend is None:
            self.upscaler, self._late_fold = _build_upscaler(self.config, self.source.info, self.status)
            upscaler = self.upscaler
            stack.callback(lambda: self.upscaler.close())  # the one in use: a late fold replaces the first
            if self._late_fold is not None:
                stack.callback(self._late_fold.close)
        else:
            upscaler = _as_live_upscaler(backend)
        if upscaler.scale != self.config.scale:
            raise ValueError(f"the backend upscales x{upscaler.scale}, the config asks for x{self.config.scale}")
        self.report.backend = upscaler.description
        self.status(f"upscaling with {upscaler.description}")
        return upscaler

    def _close_source(self) -> None:
        # A capture thread stuck in a device read must not have its container closed under it.
        if self.frames is None or not self.frames.running:
            self.source.close()

    # -- one frame -----------------------------------------------------------------------

    def step(self) -> bool:
        """One frame: take the newest, upscale, record, show, follow the keys. False when the
        run is over: the source ended or failed, ``max_frames`` was reached, or the viewer quit."""
        live = self._grab()
        if live is None:
            return False
        if self._late_fold is not None:
            self._fold_when_ready(live)
        upscaled = upscale_one(self.upscaler, live.picture)
        if self.recorder is not None:
            self._record(live, upscaled)
        self.report.frames_processed += 1
        self._timings.meter.tick(time.monotonic())
        frame = _ViewFrame(live.picture, upscaled, self.config.scale, self.source.info.full_range)
        canvas, key = self._show(frame)
        now_s = time.monotonic()
        self._timings.shown(live, now_s)
        if self.window is not None:
            self._follow_keys(key, frame, canvas)
            if self.view.quit:
                return False
        elif now_s - self._last_status_s > STATUS_INTERVAL_S:
            self._last_status_s = now_s
            self.status(self._overlay_line() + f"  dropped {self.frames.dropped}")
        max_frames = self.config.max_frames
        return max_frames is None or self.report.frames_processed < max_frames

    def _fold_when_ready(self, live: LiveFrame) -> None:
        """Give the late fold this frame; swap its upscaler in once it is built."""
        self._late_fold.offer(live.picture, live.pts_seconds)
        folded = self._late_fold.ready()
        if folded is not None:
            self.upscaler.close()
            self.upscaler, self._late_fold = folded, None
            self.report.backend = folded.description

    def _grab(self) -> LiveFrame | None:
        """The newest frame; None at the source's end, or when it failed (kept in ``source_error``)."""
        try:
            live = next(self._next_frames)
        except StopIteration:
            return None
        except InputError as exc:
            # The source failed mid-stream (camera unplugged, stream cut): what was recorded
            # so far is a good file, so it is finished before the error is raised.
            self.source_error = exc
            return None
        self._timings.picked_up(live, time.monotonic())
        return live

    def _record(self, live: LiveFrame, upscaled: YuvFrame) -> None:
        self._first_pts_s = live.pts_seconds if self._first_pts_s is None else self._first_pts_s
        # Timestamps must increase: two frames within a millisecond would share one.
        pts_ms = max(round((live.pts_seconds - self._first_pts_s) / RECORD_TIME_BASE), self._last_record_pts_ms + 1)
        self.recorder.write(dataclasses.replace(upscaled, pts=pts_ms, time_base=RECORD_TIME_BASE))
        self._last_record_pts_ms = pts_ms

    def _show(self, frame: _ViewFrame) -> tuple[np.ndarray | None, int]:
        """The view, rendered where it is seen or saved; in a window, shown, and the key pressed
        (-1: none, or no window)."""
        wants_screenshot = self.config.screenshot_at_frame == self.report.frames_processed
        canvas = None
        if self.window is not None or wants_screenshot:
            canvas = self._render(frame)  # its overlay shows the latency so far
            if wants_screenshot:
                self.screenshot(canvas)
        if self.window is None:
            return canvas, -1
        self.window.show(canvas)
        return canvas, self.window.poll_key(1)  # the window paints the picture here

    def _render(self, frame: _ViewFrame) -> np.ndarray:
        """Split (bicubic | vsr) or vsr alone, under the overlay."""
        if self.view.split:
            canvas = compose_split(frame.bicubic_bgr, frame.vsr_bgr, self.view.divider)
        else:
            canvas = frame.vsr_bgr.copy()
        lines = [self._overlay_line() + ("  [paused]" if self.view.paused else "")]
        if self.frames.dropped:
            lines.append(f"dropped {self.frames.dropped} stale frames")
        draw_overlay(canvas, lines)
        return canvas

    def _overlay_line(self) -> str:
        timings = self._timings
        return overlay_text(self.in_wh_px, self.out_wh_px, self.upscaler.name, timings.meter.rate(),
                            timings.latency_ema_ms)

    def _follow_keys(self, key: int, frame: _ViewFrame, canvas: np.ndarray) -> None:
        """Apply ``key``, then, while paused, keep showing this frame and follow the keys (the
        capture keeps dropping meanwhile); screenshots and the close button are handled here."""
        view = self.view
        handle_key(view, key)
        shown_view = (view.divider, view.split)
        redrawn_paused = False
        while not view.quit:
            if view.screenshot:
                view.screenshot = False
                self.screenshot(canvas)
            if self.window.closed():
                view.quit = True
            if not view.paused:
                return
            # Redrawn once to say [paused], then only when the divider or the view changes.
            if (view.divider, view.split) != shown_view or not redrawn_paused:
                redrawn_paused = True
                canvas = self._render(frame)
                self.window.show(canvas)
                shown_view = (view.divider, view.split)
            handle_key(view, self.window.poll_key(PAUSED_KEY_WAIT_MS))

    def screenshot(self, canvas: np.ndarray) -> Path | None:
        """``canvas`` as a PNG in the screenshot folder; one that cannot be written is a warning,
        not the end of the run."""
        try:
            path = save_screenshot(canvas, self.config.screenshot_dir, self.report.frames_processed)
        except OutputError as exc:
            self.status(f"warning: {exc}")
            return None
        self.report.screenshots.append(path)
        self.status(f"screenshot: {path}")
        return path

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> LiveReport:
        """Step until the source ends, ``max_frames``, q/Esc or Ctrl-C; then ``finish()``."""
        # Ctrl-C (and SIGTERM, which the CLI turns into the same) is how a live source is
        # stopped: it ends the loop like the end of the source, so the recording is finished.
        try:
            while self.step():
                pass
        except KeyboardInterrupt:
            self.report.interrupted = True
        return self.finish()

    def finish(self) -> LiveReport:
        """The report of the frames so far; a recording interrupted before its first frame is
        thrown away (nothing to keep)."""
        report = self.report
        if self.recorder is not None and self.recorder.frames_written == 0 and report.interrupted:
            self.recorder.close(keep=False)
            self.recorder = None
        report.frames_dropped = self.frames.dropped
        self._timings.fill(report, time.monotonic())
        if self.recorder is not None:
            report.recording = self.config.record
        return report

    def close(self) -> None:
        """Stop the capture, finish the recording, close the window and what the session built."""
        self._stack.close()

    def __enter__(self) -> "LiveSession":
        return self

    def __exit__(self, *exc_info) -> None:
        # The exception reaches the recorder, which then throws its unfinished file away.
        self._stack.__exit__(*exc_info)


def run_live(config: LiveConfig, *, status: Callable[[str], None] | None = None,
             backend: LiveUpscaler | Backend | None = None) -> LiveReport:
    """Capture, upscale, show and record until the source ends, ``max_frames``, or q/Esc.

    Frames are upscaled one at a time by the frame upscaler `vsr run` builds for the same
    options (``create_frame_upscaler``). ``status`` receives progress lines (stderr by default).
    ``backend``: instead of building one from the config, a ready ``FrameUpscaler`` (used as
    it is) or a ``Backend`` (run as host frames, ``HostFrameUpscaler``); the caller closes it.
    A source that fails mid-stream raises its ``InputError`` once the recording is finished.
    """
    with LiveSession(config, status=status, backend=backend) as session:
        report = session.run()
    if session.source_error is not None:
        raise session.source_error
    return report


__all__ = ["LiveConfig", "LiveReport", "LiveSession", "LiveUpscaler", "ViewState", "DisplayUnavailable", "run_live",
           "check_display", "check_live_config", "compose_split", "draw_overlay", "overlay_text", "overlay_box",
           "handle_key", "yuv_to_bgr", "bicubic_upscale", "OVERLAY_TEXT_BGR"]
