"""The Python API: what ``vsr upscale`` and ``vsr run`` do, callable from a program.

``Upscaler`` holds one network (load it once, upscale many images or frames); ``upscale_video``
is ``vsr run`` as a function. Options are keyword-only and checked up front; failures a caller
can cause raise the named errors of ``vsr.errors`` (``InputError``, ``OutputError``,
``UnsupportedScale``, ``BackendUnavailable``, all ``VsrError``); a misspelt choice raises
``ValueError`` listing the allowed values. See docs/api.md.
"""
from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal

from . import backends as _backends

if TYPE_CHECKING:
    import numpy as np

    from .pipeline.pipeline import RunStats

__all__ = ["Upscaler", "upscale_video"]

#: For type checkers; the values checked at run time are the library's (tests hold the two equal).
BackendName = Literal["auto", "openvino", "onnxruntime", "torch", "tensorrt"]
Precision = Literal["auto", "fp32", "bf16", "int8"]
BACKENDS = ("auto", *_backends.BACKENDS)
PRECISIONS = _backends.PRECISIONS
SCALES = (2, 3, 4)


def _choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: choose one of {', '.join(map(repr, allowed))}")


def _check_scale(scale) -> int:
    from .errors import UnsupportedScale

    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise UnsupportedScale(f"scale={scale!r}: vsr has models for x2, x3 and x4")
    return scale


class Upscaler:
    """One network, ready to upscale images and video frames by ``scale``.

    ``model``: a model of the ladder (``vsr models``), by default ``vsr upscale``'s
    (``realtime``); ``device``: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``backend`` and
    ``precision`` as ``vsr run``'s options (``auto`` picks the fastest here, once).
    ``weights``: a ``.pt`` checkpoint or ``.onnx`` instead of the shipped weights.
    The network loads on first use; ``close()`` (or a ``with`` block) frees it.
    """

    def __init__(self, scale: int, *, model: str | None = None, device: str = "cpu",
                 backend: BackendName = "auto", precision: Precision = "auto",
                 weights: os.PathLike | str | None = None, batch_size: int = 1, num_threads: int = 0) -> None:
        from .backends import EngineSpec
        from .models.registry import IMAGE_MODEL, MODELS

        self.scale = _check_scale(scale)
        model = IMAGE_MODEL if model is None else model
        if weights is None:
            _choice("model", model, tuple(MODELS))
        _choice("backend", backend, BACKENDS)
        _choice("precision", precision, PRECISIONS)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: a positive number of frames")
        self.spec = EngineSpec(scale=self.scale, model=model, backend=backend, device=device,
                               weights=None if weights is None else os.fspath(weights), batch_size=batch_size,
                               precision=precision, num_threads=num_threads)
        if self.spec.cuda:
            _check_cuda_device(device)
        self._backend = None
        self._frames = None
        self._tensors = None
        self._closed = False

    # -- the engines, made on first use -------------------------------------------------------
    def _host_backend(self):
        self._check_open()
        if self._backend is None:
            from .backends import create_backend

            self._backend = create_backend(self.spec)
        return self._backend

    def _frame_upscaler(self):
        """The same ``FrameUpscaler`` ``vsr run`` builds for this spec (GPU-resident frames on
        CUDA with torch); on the host it shares the image path's backend."""
        self._check_open()
        if self._frames is None:
            from .pipeline.upscaler import HostFrameUpscaler, create_frame_upscaler, uses_gpu_frames

            if uses_gpu_frames(self.spec):
                self._frames = create_frame_upscaler(self.spec)
            else:
                self._frames = HostFrameUpscaler(self._host_backend(), batch_size=self.spec.batch_size)
        return self._frames

    @property
    def description(self) -> str:
        """The backend as ``vsr run`` names it, e.g. ``openvino fp32 (cpu)`` (loads the network)."""
        from .backends import describe

        return describe(self._host_backend())

    # -- images ------------------------------------------------------------------------------
    def upscale_image(self, image: "np.ndarray") -> "np.ndarray":
        """(H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey, uint8 or uint16 -> the same kind of
        array ``scale`` times larger. The same pixels as ``vsr upscale`` writes: luma through the
        network, chroma (and alpha) bicubic, in seam-free tiles; 16 bits stay 16 bits."""
        import numpy as np

        from .errors import InputError
        from .images import Picture
        from .upscale import upscale_picture

        array = np.asarray(image)
        if array.dtype not in (np.uint8, np.uint16):
            raise InputError(f"image dtype {array.dtype}: expected uint8 or uint16")
        grey = array.ndim == 2
        if grey:
            rgb, alpha = np.repeat(array[..., None], 3, axis=2), None
        elif array.ndim == 3 and array.shape[2] in (3, 4):
            rgb, alpha = array[..., :3], (array[..., 3] if array.shape[2] == 4 else None)
        else:
            raise InputError(f"image shape {array.shape}: expected (H, W, 3), (H, W, 4) or (H, W)")
        backend = self._host_backend()
        min_px = backend.min_input_px
        if min(array.shape[:2]) < min_px:
            raise InputError(f"image {array.shape[1]}x{array.shape[0]}: at least {min_px}x{min_px} pixels")
        out = upscale_picture(Picture(np.ascontiguousarray(rgb), alpha), backend)
        return out[..., 0].copy() if grey else out

    # -- video frames ------------------------------------------------------------------------
    def upscale_frames(self, frames: Iterable[Any]) -> Iterator[Any]:
        """Upscale a stream of frames, lazily and in order, through the same ``FrameUpscaler``
        as ``vsr run`` (luma through the network, chroma bicubic): the iterator may read a few
        frames ahead of what it has given back (frames in flight, batches).

        Each item is an (H, W, 3) uint8 RGB array (-> RGB array), an ``av.VideoFrame``
        (-> ``av.VideoFrame`` in the same YUV layout and bit depth, pts and time base kept), or a
        torch tensor (H, W, 3) uint8 RGB on any device, CUDA included (-> a tensor on that device:
        the frame never leaves the GPU)."""
        pending: deque = deque()
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            return
        if _is_tensor(first):
            yield from self._upscale_tensors(_chain(first, frames))
            return
        upscaler = self._frame_upscaler()
        for out in upscaler.upscale_frames(self._to_yuv(_chain(first, frames), pending)):
            kind = pending.popleft()
            yield _from_yuv(out, kind)

    def _to_yuv(self, frames: Iterable[Any], pending: deque):
        import numpy as np

        from .errors import InputError
        from .media.decode import to_yuv_frame, yuv_layout_for

        for index, item in enumerate(frames):
            if _is_video_frame(item):
                layout, _ = yuv_layout_for(item.format.name)
                pending.append(("av", item.format.name))
                yield to_yuv_frame(item, layout, index)
                continue
            array = np.asarray(item)
            if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
                raise InputError(f"frame {index}: expected (H, W, 3) uint8 RGB, an av.VideoFrame or a tensor, "
                                 f"got {array.dtype} {array.shape}")
            import av

            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            pending.append(("rgb", None))
            # 4:4:4: the RGB frame's colour is kept at full resolution through the YUV pipeline.
            yield to_yuv_frame(frame, "yuv444p", index)

    def _upscale_tensors(self, tensors: Iterable[Any]) -> Iterator[Any]:
        if self._tensors is None:
            self._check_open()
            self._tensors = _TensorUpscaler(self.spec)
        for index, tensor in enumerate(tensors):
            if not _is_tensor(tensor):
                from .errors import InputError

                raise InputError(f"frame {index}: a {type(tensor).__name__} among tensors; give one kind of frame")
            yield self._tensors.upscale(tensor)

    # -- life cycle --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Upscaler is closed")

    def close(self) -> None:
        """Free the network (sessions, compiled models, device memory). Idempotent."""
        self._closed = True
        for engine in (self._frames, self._backend, self._tensors):
            if engine is not None:
                engine.close()
        self._frames = self._backend = self._tensors = None

    def __enter__(self) -> "Upscaler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.spec
        return f"Upscaler({s.scale}, model={s.model!r}, device={s.device!r}, backend={s.backend!r})"


def _chain(first, rest):
    yield first
    yield from rest


def _is_tensor(item) -> bool:
    return type(item).__module__.startswith("torch") and hasattr(item, "device")


def _is_video_frame(item) -> bool:
    return type(item).__name__ == "VideoFrame" and type(item).__module__.startswith("av")


def _from_yuv(frame, kind: tuple[str, str | None]):
    """An upscaled ``YuvFrame`` back into the caller's type."""
    from .media.encode import yuv_frame_to_av

    out = yuv_frame_to_av(frame)
    if kind[0] == "av":
        return out
    return out.to_ndarray(format="rgb24")


def _check_cuda_device(device: str) -> None:
    from .backends import check_cuda_device

    check_cuda_device(device)


class _TensorUpscaler:
    """RGB tensors on a torch device, upscaled there: BT.601 studio-range YCbCr (as ``vsr
    upscale``), luma through the torch network, chroma bicubic, back to uint8 RGB; nothing is
    copied to the host."""

    def __init__(self, spec) -> None:
        from .backends.torch_cuda import TorchCudaBackend, TorchCudaOptions

        self.backend = TorchCudaBackend(spec.scale, spec.weights, TorchCudaOptions(device=spec.device),
                                        model=spec.model, context=spec.context)
        self.scale = spec.scale
        torch = self.backend._torch
        from .color import _RGB_TO_YCBCR, _YCBCR_OFFSET, _YCBCR_TO_RGB

        device = self.backend.device
        self._to_ycc = torch.tensor(_RGB_TO_YCBCR.T, dtype=torch.float32, device=device)
        self._to_rgb = torch.tensor(_YCBCR_TO_RGB.T, dtype=torch.float32, device=device)
        self._offset = torch.tensor(_YCBCR_OFFSET, dtype=torch.float32, device=device)

    def upscale(self, tensor):
        from .errors import InputError

        backend = self.backend
        torch = backend._torch
        if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[2] != 3:
            raise InputError(f"tensor frames must be (H, W, 3) uint8 RGB, got {tensor.dtype} {tuple(tensor.shape)}")
        with torch.no_grad():
            rgb = tensor.to(backend.device).float()
            ycc = rgb @ self._to_ycc + self._offset
            luma = (ycc[..., 0] / 255.0)[None, None].to(backend.dtype).contiguous(memory_format=backend._format)
            luma_out = backend._model(luma).float().clamp_(0, 1)[0, 0] * 255.0
            out_hw = (tensor.shape[0] * self.scale, tensor.shape[1] * self.scale)
            chroma = torch.nn.functional.interpolate(ycc[..., 1:].permute(2, 0, 1)[None], size=out_hw,
                                                     mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
            out = torch.cat([luma_out[..., None], chroma], dim=-1)
            out = (out - self._offset) @ self._to_rgb
            result = out.add_(0.5).clamp_(0, 255).to(torch.uint8)
        return result.to(tensor.device)

    def close(self) -> None:
        self.backend.close()


def upscale_video(
    input: os.PathLike | str,
    output: os.PathLike | str,
    *,
    scale: int = 3,
    model: str = "auto",
    target_fps: float | None = None,
    degradation: Literal["auto", "clean", "compressed"] = "auto",
    backend: BackendName = "auto",
    device: str = "cpu",
    weights: os.PathLike | str | None = None,
    precision: Precision = "auto",
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    pix_fmt: str | None = None,
    audio: bool = True,
    max_frames: int | None = None,
    batch_size: int = 1,
    workers: int | Literal["auto"] = "auto",
    segment_seconds: float = 5.0,
    resume: bool = False,
    ray_address: str | None = None,
    strict: bool = False,
    deinterlace: bool = True,
    overwrite: bool = False,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> "RunStats":
    """``vsr run INPUT OUTPUT`` as a function, with the same options and defaults; returns its
    ``RunStats`` (frames, wall_seconds, fps, notes ...). ``on_progress(frames_done, frames_total)``
    is called as frames are written (``frames_total`` None when unknown).

    Segment workers are processes started with "spawn": call this under
    ``if __name__ == "__main__":`` in a script, or pass ``workers=1``.
    """
    from .backends import EngineSpec
    from .media.encode import CODECS, EncodeOptions
    from .models.registry import MODELS
    from .pipeline.pipeline import RunConfig
    from .run import choose_streams, is_folder, run_one

    scale = _check_scale(scale)
    if weights is None and model != "auto":
        _choice("model", model, tuple(MODELS) + ("auto",))
    _choice("backend", backend, BACKENDS)
    _choice("precision", precision, PRECISIONS)
    _choice("degradation", degradation, ("auto", "clean", "compressed"))
    if codec is not None:
        _choice("codec", codec, CODECS)
    if workers != "auto" and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers={workers!r}: a positive number or 'auto'")
    if model == "auto" and weights is not None:
        from .models.registry import DEFAULT_MODEL

        model = DEFAULT_MODEL
    input_text = os.fspath(input)
    input_path = input_text if "://" in input_text or input_text == "-" else Path(input_text)
    if input_text == "-":
        input_path = "/dev/stdin"
    if is_folder(input_path):
        from .errors import InputError

        raise InputError(f"{input_path}: is a folder; call upscale_video for each video in it")
    output_path = Path(os.fspath(output))
    streams = choose_streams(input_path, output_path, codec=codec, workers=None if workers == "auto" else workers,
                             resume=resume, ray_address=ray_address)
    engine = EngineSpec(scale=scale, model=model, backend=backend, device=device,
                        weights=None if weights is None else Path(weights), precision=precision, batch_size=batch_size)
    config = RunConfig(
        input_path=input_path, output_path=output_path, engine=engine, target_fps=target_fps, degradation=degradation,
        encode=EncodeOptions(codec=streams.codec, crf=crf, preset=preset, pix_fmt=pix_fmt, audio=audio,
                             container=streams.container),
        max_frames=max_frames, overwrite=overwrite, workers=streams.workers, segment_seconds=segment_seconds,
        resume=resume,
        ray_address=ray_address, strict=strict, deinterlace=deinterlace,
    )
    total: list[int | None] = [None]

    def started(info, description, expected) -> None:
        total[0] = expected

    def frame(done: int) -> None:
        on_progress(done, total[0])

    return run_one(config, on_start=started if on_progress else None, on_frame=frame if on_progress else None)
