"""TensorRT backend: ESPCN compiled for one GPU, run through cuda-python with overlapped copies.

Written against NVIDIA's TensorRT 10/11 Python API and cuda-python's ``cuda.bindings.runtime``
documentation; it runs only where ``tensorrt`` imports and a CUDA GPU is visible (the tests
marked ``needs_tensorrt``). Plans are cached under names from ``engine_cache.plan_name``.
"""
from __future__ import annotations

import ctypes
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..cache import file_sha256
from .base import BackendBase, BackendUnavailable, as_batch
from .engine_cache import PRECISIONS, ShapeRange, engine_dir, plan_name, timing_cache_name


@dataclass(frozen=True)
class TensorRTOptions:
    """Tuning for TensorRT.

    ``precision``: 'fp16' (default; the tensor cores' type, within 2e-3 of fp32 on Y in
    [0, 1]) or 'fp32'. ``shapes``: the optimisation profile; None builds (or loads) a plan
    for exactly the first frame size seen and another for each new size, which is the
    fastest plan for a video of one size. Give a range to share one plan across sizes,
    at some speed cost away from ``opt``. ``workspace_mib``: scratch memory TensorRT may
    use while choosing kernels; ESPCN needs little. ``optimization_level``: 0-5, higher
    builds slower and may run faster (3 is TensorRT's default). ``engine_dir``: the plan
    cache (default ``engine_cache.engine_dir()``: ``$VSR_ENGINE_DIR``, else
    ``$VSR_CACHE_DIR/engines``). ``device``: 'cuda' or 'cuda:N'.
    """

    precision: str = "fp16"
    shapes: ShapeRange | None = None
    workspace_mib: int = 1024
    optimization_level: int = 3
    engine_dir: Path | None = None
    device: str = "cuda"


def _check(result):
    """cuda-python returns (error, *values): raise on an error, else return the value(s)."""
    from cuda.bindings import runtime as cudart

    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA error {err.name}: {cudart.cudaGetErrorString(err)[1].decode()}")
    return values[0] if len(values) == 1 else tuple(values) or None


class _Slot:
    """One frame in flight: pinned host and device buffers for input and output, and events."""

    def __init__(self, in_bytes: int, out_bytes: int) -> None:
        from cuda.bindings import runtime as cudart

        self.host_in = _check(cudart.cudaMallocHost(in_bytes))
        self.host_out = _check(cudart.cudaMallocHost(out_bytes))
        self.dev_in = _check(cudart.cudaMalloc(in_bytes))
        self.dev_out = _check(cudart.cudaMalloc(out_bytes))
        flags = cudart.cudaEventDisableTiming
        self.uploaded, self.computed, self.downloaded = (
            _check(cudart.cudaEventCreateWithFlags(flags)) for _ in range(3))

    @staticmethod
    def view(pointer: int, count: int) -> np.ndarray:
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(count,))

    def free(self) -> None:
        from cuda.bindings import runtime as cudart

        for event in (self.uploaded, self.computed, self.downloaded):
            _check(cudart.cudaEventDestroy(event))
        _check(cudart.cudaFreeHost(self.host_in))
        _check(cudart.cudaFreeHost(self.host_out))
        _check(cudart.cudaFree(self.dev_in))
        _check(cudart.cudaFree(self.dev_out))


class TensorRTBackend(BackendBase):
    """Owns the engine, its context, three streams (upload, compute, download) and two slots.

    Frames run one per ``execute_async_v3``; the two slots let the upload of frame n+1 and
    the download of frame n-1 overlap the compute of frame n (``map_luma``). Use as a
    context manager or call ``close``.
    """

    name = "tensorrt"

    @classmethod
    def _from_spec(cls, spec) -> "TensorRTBackend":
        from .files import onnx_for

        # --precision fp32 means fp32; auto keeps TensorRT's fp16 (the tensor cores' type).
        precision = {"fp32": {"precision": "fp32"}}.get(spec.precision, {})
        options = spec.options_for(TensorRTOptions, device=spec.device, **precision)
        return cls(spec.scale, onnx_for(spec.scale, spec.weights, spec.model, spec.context), options)

    def __init__(self, scale: int, onnx_path: os.PathLike | str, options: TensorRTOptions = TensorRTOptions()) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendUnavailable("TensorRT is not installed (it needs an NVIDIA GPU; pip install tensorrt)") from None
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            raise BackendUnavailable("the TensorRT backend needs cuda-python (pip install cuda-python)") from None
        if options.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {options.precision!r}")
        if not options.device.startswith("cuda"):
            raise BackendUnavailable(f"TensorRT runs on CUDA devices only, not {options.device!r}")
        err, count = cudart.cudaGetDeviceCount()
        if err != cudart.cudaError_t.cudaSuccess or count == 0:
            raise BackendUnavailable("TensorRT finds no CUDA GPU here")
        self._trt, self._cudart = trt, cudart
        self.scale, self.options, self.device = scale, options, options.device
        self._device_index = int(options.device.partition(":")[2] or 0)
        _check(cudart.cudaSetDevice(self._device_index))
        props = _check(cudart.cudaGetDeviceProperties(self._device_index))
        name = props.name
        self.gpu_name = (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)).strip()
        self.compute_capability = (props.major, props.minor)
        self.tensorrt_version = trt.__version__
        self._onnx = Path(onnx_path)
        self._onnx_sha256 = file_sha256(self._onnx)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._upload, self._compute, self._download = (
            _check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)) for _ in range(3))
        self._engine = self._context = None
        self._slots: list[_Slot] = []
        self._shapes: ShapeRange | None = None
        if options.shapes is not None:
            try:
                self._use(options.shapes)
            except BaseException:
                self.close()
                raise

    # -- plans ---------------------------------------------------------------------------------
    @property
    def strongly_typed(self) -> bool:
        """TensorRT 11 removed the FP16 flag: precision then comes from the ONNX file's types."""
        return not hasattr(self._trt.BuilderFlag, "FP16")

    def plan_path(self, shapes: ShapeRange) -> Path:
        folder = self.options.engine_dir or engine_dir()
        return folder / plan_name(onnx_sha256=self._onnx_sha256, shapes=shapes, precision=self.options.precision,
                                  tensorrt_version=self.tensorrt_version, gpu_name=self.gpu_name,
                                  compute_capability=self.compute_capability)

    def build(self, shapes: ShapeRange) -> Path:
        """Build and cache the plan for ``shapes`` unless it is cached; return its path."""
        from ..cache import cached_file, write_atomic

        path = self.plan_path(shapes)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cached_file(path, lambda target: write_atomic(target, self._build(shapes, target.parent)))

    def _build(self, shapes: ShapeRange, folder: Path) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        onnx_path, flags = self._onnx, 0
        if self.options.precision == "fp16" and self.strongly_typed:
            from ..onnx_fp16 import cached_fp16_onnx

            onnx_path = cached_fp16_onnx(self._onnx, self._onnx_sha256, folder)
            # Accepted and ignored by TensorRT 11, where every network is strongly typed.
            if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
                flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)  # explicit batch is the only mode since TensorRT 10
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(f"TensorRT cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        if self.options.precision == "fp16" and not self.strongly_typed:
            config.set_flag(trt.BuilderFlag.FP16)
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.options.workspace_mib << 20)
        config.builder_optimization_level = self.options.optimization_level
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, shapes.min, shapes.opt, shapes.max)
        config.add_optimization_profile(profile)
        # Kernel timings are reused across builds for this GPU and TensorRT: rebuilds take seconds.
        timing_path = folder / timing_cache_name(tensorrt_version=self.tensorrt_version, gpu_name=self.gpu_name,
                                                 compute_capability=self.compute_capability)
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        config.set_timing_cache(timing, ignore_mismatch=False)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"TensorRT failed to build {onnx_path} for {shapes.tag()} (see its log above)")
        from ..cache import write_atomic

        write_atomic(timing_path, bytes(config.get_timing_cache().serialize()))
        return bytes(plan)

    def _use(self, shapes: ShapeRange) -> None:
        """Load (building if needed) the plan for ``shapes`` and size the slots for its maximum."""
        trt = self._trt
        engine = self._runtime.deserialize_cuda_engine(self.build(shapes).read_bytes())
        if engine is None:
            raise RuntimeError(f"TensorRT could not load {self.plan_path(shapes)}; delete it to rebuild")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._input = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._output = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        for name in (self._input, self._output):
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise RuntimeError(f"{name}: expected float32 I/O, the plan has {engine.get_tensor_dtype(name)}")
        self._free_slots()
        self._engine, self._context, self._shapes = engine, engine.create_execution_context(), shapes
        n, _, h, w = shapes.max
        s = self.scale
        self._slots = [_Slot(h * w * 4, h * w * s * s * 4) for _ in range(2)]

    # -- running -------------------------------------------------------------------------------
    def map_luma(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """float32 (1, H, W) or (H, W) luma in [0, 1] per frame -> float32 (1, H*s, W*s), clipped,
        in order, with two frames in flight."""
        cudart, h2d, d2h = self._cudart, self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, \
            self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        in_flight: deque[tuple[_Slot, tuple[int, int, int, int]]] = deque()
        for i, luma in enumerate(frames):
            if not self._covers(luma):
                while in_flight:  # never swap the engine under frames still in flight
                    yield self._collect(*in_flight.popleft())
                self._use(ShapeRange.for_frames(*luma.shape[-2:]))
            elif len(in_flight) == len(self._slots):
                yield self._collect(*in_flight.popleft())
            slot = self._slots[i % len(self._slots)]
            shape = (1, 1) + luma.shape[-2:]
            out_shape = (1, 1, shape[2] * self.scale, shape[3] * self.scale)
            in_bytes, out_bytes = int(np.prod(shape)) * 4, int(np.prod(out_shape)) * 4
            np.copyto(slot.view(slot.host_in, in_bytes // 4).reshape(shape[2:]), luma.reshape(shape[2:]))
            _check(cudart.cudaMemcpyAsync(slot.dev_in, slot.host_in, in_bytes, h2d, self._upload))
            _check(cudart.cudaEventRecord(slot.uploaded, self._upload))
            _check(cudart.cudaStreamWaitEvent(self._compute, slot.uploaded, 0))
            # Addresses and shapes are read at enqueue time, so switching slots per frame is safe.
            self._context.set_input_shape(self._input, shape)
            self._context.set_tensor_address(self._input, slot.dev_in)
            self._context.set_tensor_address(self._output, slot.dev_out)
            if not self._context.execute_async_v3(int(self._compute)):
                raise RuntimeError("TensorRT execute_async_v3 failed (see its log above)")
            _check(cudart.cudaEventRecord(slot.computed, self._compute))
            _check(cudart.cudaStreamWaitEvent(self._download, slot.computed, 0))
            _check(cudart.cudaMemcpyAsync(slot.host_out, slot.dev_out, out_bytes, d2h, self._download))
            _check(cudart.cudaEventRecord(slot.downloaded, self._download))
            in_flight.append((slot, out_shape))
        while in_flight:
            yield self._collect(*in_flight.popleft())

    def _covers(self, luma: np.ndarray) -> bool:
        return self._shapes is not None and self._shapes.covers((1, 1) + luma.shape[-2:])

    def _collect(self, slot: _Slot, out_shape: tuple[int, int, int, int]) -> np.ndarray:
        _check(self._cudart.cudaEventSynchronize(slot.downloaded))
        out = slot.view(slot.host_out, int(np.prod(out_shape))).reshape(out_shape[1:]).copy()
        return np.clip(out, 0.0, 1.0, out=out)

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        return np.stack(list(self.map_luma(as_batch(luma))))

    def close(self) -> None:
        if self._trt is None:
            return
        self._free_slots()
        for stream in (self._upload, self._compute, self._download):
            _check(self._cudart.cudaStreamDestroy(stream))
        self._context = self._engine = self._runtime = self._trt = None

    def _free_slots(self) -> None:
        if self._slots:
            _check(self._cudart.cudaStreamSynchronize(self._compute))
            _check(self._cudart.cudaStreamSynchronize(self._download))
            for slot in self._slots:
                slot.free()
            self._slots = []
        self._context = None  # a context must go before its engine

    def __enter__(self) -> "TensorRTBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
