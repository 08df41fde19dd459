"""How a long run shows it is alive, on standard error: a bar on a terminal, a plain line every
``VSR_PROGRESS_EVERY_S`` seconds in a log (``Progress``), or JSON objects for programs that
drive vsr (``JsonProgress``, `--progress json`). Both take ``start(info, backend, expected)`` and
``update(frames_done)``, the callbacks ``run.run`` gives its stages.
"""
from __future__ import annotations

import json
import os
import sys
import time


def say(line: str) -> None:
    """One line of ours on standard error, flushed (progress, notes, vsr live's status)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Progress:
    """tqdm bar on a terminal (frames, fps, ETA); on a pipe or log file, where a bar would be
    noise, one plain line every ``VSR_PROGRESS_EVERY_S`` seconds (default 30); silent when quiet."""

    DEFAULT_EVERY_S = 30.0

    def __init__(self, quiet: bool, pix_fmt: str | None = None) -> None:
        self.quiet, self.bar, self.total = quiet, None, None
        self.pix_fmt = pix_fmt
        self.lines = not quiet and not sys.stderr.isatty()
        self.every_s = env_seconds("VSR_PROGRESS_EVERY_S", self.DEFAULT_EVERY_S)
        self.started = self.last_line = 0.0
        self.first_line = ""  # what start() said: notes it holds need not be said again at the end

    def start(self, info, backend: str, expected_frames) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        from .media.encode import EncodeOptions
        from .pipeline.pipeline import input_notes

        notes = input_notes(info, EncodeOptions(pix_fmt=self.pix_fmt), backend)
        note = "".join(f"; {n}" for n in notes)
        self.first_line = f"{info.path}: {info.width}x{info.height} {info.source_pix_fmt}, backend {backend}{note}"
        say(self.first_line)
        self.total = expected_frames
        self.started = self.last_line = time.monotonic()
        self.bar = tqdm(total=expected_frames, unit="frame", dynamic_ncols=True, file=sys.stderr,
                        disable=not sys.stderr.isatty())

    def update(self, frames_done: int) -> None:
        if self.bar is not None:
            if self.bar.total is not None and frames_done > self.bar.total:
                self.bar.total = frames_done  # an estimate that fell short: never show 120/100
            self.bar.update(frames_done - self.bar.n)
        if self.lines and self.started and time.monotonic() - self.last_line >= self.every_s:
            self.last_line = time.monotonic()
            say(progress_line(frames_done, self.total, self.last_line - self.started))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def error_text(exc: BaseException) -> str:
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or type(exc).__name__


class JsonProgress:
    """``--progress json``: one JSON object per line on standard error, for programs that drive
    vsr: at least once a second while running (a ticker thread, so a long model load or a slow
    segment still shows life), at each file's start and end in a folder, and once at the end.

    Every object has ``frames_done``, ``frames_total`` (null when unknown), ``fps`` (since the
    current file started), ``eta_seconds`` (null when unknown), ``state`` (running, done, failed)
    and ``file``; folders add ``file_index`` and ``files_total``; the last object may add
    ``output``, ``notes`` or ``error``.
    """

    EVERY_S = 1.0

    def __init__(self, file: str | None = None) -> None:
        import threading

        self.file, self.file_index, self.files_total = file, None, None
        self.total: int | None = None
        self.done = 0
        self.state = "running"
        self.started = self.last = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._finished = False
        self._ticker = threading.Thread(target=self._tick, name="vsr-progress", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.EVERY_S):
            if time.monotonic() - self.last >= self.EVERY_S * 0.9:
                self.emit()

    def emit(self, **extra) -> None:
        with self._lock:
            now = time.monotonic()
            elapsed = now - self.started
            fps = self.done / elapsed if elapsed > 0 else 0.0
            eta = None
            if self.state != "running":
                eta = 0.0 if self.state == "done" else None
            elif self.total and fps > 0:
                eta = round(max(0, self.total - self.done) / fps, 1)
            record = {"state": self.state, "frames_done": self.done, "frames_total": self.total,
                      "fps": round(fps, 2), "eta_seconds": eta, "file": self.file}
            if self.files_total is not None:
                record.update(file_index=self.file_index, files_total=self.files_total)
            record.update({k: v for k, v in extra.items() if v is not None or k == "file"})
            sys.stderr.write(json.dumps(record) + "\n")
            sys.stderr.flush()
            self.last = now

    def start(self, info, backend: str, expected_frames) -> None:
        self.total, self.done, self.started = expected_frames, 0, time.monotonic()
        self.emit(backend=backend)

    def update(self, frames_done: int) -> None:
        self.done = frames_done
        if self.total is not None and frames_done > self.total:
            self.total = frames_done  # an estimate that fell short: never report 120 of 100
        if time.monotonic() - self.last >= self.EVERY_S:
            self.emit()

    # Folders (``folders.run_folder``): one file after another, each counted on its own.
    def start_file(self, path, index: int, count: int, expected_frames: int | None) -> None:
        self.file, self.file_index, self.files_total = str(path), index, count
        self.state, self.total, self.done, self.started = "running", expected_frames or None, 0, time.monotonic()
        self.emit()

    def end_file(self, state: str, frames: int, error: str | None = None) -> None:
        self.state, self.done = state, frames
        self.emit(error=error)
        self.state = "running"

    def finish(self, state: str, **extra) -> None:
        """The last object: ``state`` done or failed. Only the first call counts."""
        if self._finished:
            return
        self._finished = True
        self._stop.set()
        self.state = state
        if "frames_done" in extra:
            self.done = extra.pop("frames_done")
        if "file" in extra:
            self.file = extra.pop("file")
            self.file_index = self.files_total = None
        self.emit(**extra)

    def close(self) -> None:
        self._stop.set()


def progress_line(frames_done: int, total: int | None, elapsed_s: float) -> str:
    """'progress: 900/1500 frames (60 %), 29.8 fps, about 20 s left'."""
    fps = frames_done / elapsed_s if elapsed_s > 0 else 0.0
    line = f"progress: {frames_done}"
    if total and frames_done <= total:
        line += f"/{total} frames ({100 * frames_done // total} %)"
    else:
        line += " frames"
    line += f", {fps:.1f} fps"
    if total and frames_done <= total and fps > 0:
        line += f", about {round((total - frames_done) / fps)} s left"
    return line


def env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value >= 0 else default
