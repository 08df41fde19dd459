"""A live camera's or stream's context, folded once its first seconds have been seen.

`vsr run` and `vsr live` on a file read a network's global context from frames spread over the
clip and run the network with it folded into its convolutions (``tuning.engine_with_clip_context``):
a plain network, which is how the model choice timed it. A camera or a stream has no clip to read
ahead, so it starts with the network reading each frame's context (30.9 ms per 640x360 plane in
int8 against 19.4 folded on two Zen 4 cores: the modulation between convolution and activation is
what int8 engines run slowly). ``LateFold`` keeps the first frames the way
``models.clip_context.FirstFrames`` picks them, then folds their mean context and builds that plain
network's upscaler on a background thread, which the live loop swaps in when it is ready.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable

from .backends import EngineSpec
from .frames import YuvFrame

if TYPE_CHECKING:
    from .pipeline.upscaler import FrameUpscaler

__all__ = ["LateFold", "late_fold_for"]


def late_fold_for(spec: EngineSpec, status: Callable[[str], None]) -> "LateFold | None":
    """A ``LateFold`` where ``spec``'s network reads a per-frame global context it could fold
    (not an .onnx of one's own, not one already folded); else None."""
    from .pipeline.context import unfolded

    if not unfolded(spec):
        return None
    return LateFold(spec, status)


class LateFold:
    """Collects the first frames' lumas (``offer``), then builds the folded upscaler on a thread;
    ``ready()`` hands it over once. ``close()`` waits for a build under way and closes an upscaler
    never handed over."""

    def __init__(self, spec: EngineSpec, status: Callable[[str], None]) -> None:
        from .models.clip_context import FirstFrames
        from .models.weights import load_model

        # Loaded at start-up, torch imported with it: on the build thread torch's import would hold
        # Python's lock for up to 0.3 s at a time in the middle of the preview.
        self.network = load_model(spec.scale, spec.weights, spec.model)
        self.spec, self.status = spec, status
        self.first = FirstFrames()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._built: FrameUpscaler | None = None
        self._closed = False
        #: The context folded (a ``ClipContext``), once read.
        self.context = None

    def offer(self, picture: YuvFrame, pts_s: float) -> None:
        """One frame the loop took, at media time ``pts_s``; the last one needed starts the build."""
        if self._thread is None and self.first.offer(picture, pts_s):
            # Not a daemon: the interpreter must not exit under a thread inside OpenVINO or NNCF (it aborts).
            self._thread = threading.Thread(target=self._build, name="vsr-live-fold")
            self._thread.start()

    def _build(self) -> None:
        from .pipeline.context import engine_with_context_of
        from .pipeline.upscaler import create_frame_upscaler

        try:
            spec = engine_with_context_of(self.spec, self.first.lumas, peak=self.first.peak, network=self.network)
            self.context = spec.context
            if self._closed:  # the session ended meanwhile: the rest (export, int8) is not needed
                return
            upscaler = create_frame_upscaler(spec, out_layout="yuv420p")
        except Exception as exc:  # the per-frame network goes on: a preview is better slower than stopped
            self.status(f"could not fold the context ({exc}); the network goes on reading each frame's")
            return
        finally:
            self.first.lumas = []
        with self._lock:
            if self._closed:
                upscaler.close()
                return
            self._built = upscaler
        self.status(f"its context read from the first {self.first.count} frames ({self.first.span_s:g} s) "
                    "and folded into its convolutions: a plain network from here on")

    def ready(self) -> "FrameUpscaler | None":
        """The folded upscaler, once, when built; else None."""
        with self._lock:
            upscaler, self._built = self._built, None
        return upscaler

    def close(self) -> None:
        """Wait for a build under way (at most the few seconds of one fold's int8), then close what
        was never handed over."""
        with self._lock:
            self._closed = True
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            upscaler, self._built = self._built, None
        if upscaler is not None:
            upscaler.close()
