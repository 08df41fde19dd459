"""OpenVINO backend: the fastest CPU path we measured, thanks to bf16 on AMX / AVX-512 BF16 CPUs.

On this project's 2-core Xeon (AMX), ESPCN x3 on a 640x360 luma plane took 21 ms in bf16
against 56 ms in fp32 (ONNX Runtime: 58 ms); see benchmarks/. bf16 keeps fp32's range and
accumulates in fp32, so the output moves by about one grey level at most.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import BackendUnavailable, as_batch

PRECISIONS = ("auto", "bf16", "f32")


@dataclass(frozen=True)
class OpenVinoOptions:
    """``precision``: 'auto' uses bf16 where the CPU computes it natively (AMX, AVX-512 BF16)
    and fp32 elsewhere, where emulated bf16 would be slower. ``num_threads`` 0 lets OpenVINO
    use every core; give fewer to leave room for decoding and encoding."""

    precision: str = "auto"
    num_threads: int = 0
    device: str = "cpu"


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, scale: int, onnx_path: os.PathLike | str, options: OpenVinoOptions = OpenVinoOptions()) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise BackendUnavailable("openvino is not installed (pip install openvino)") from None
        if options.device != "cpu":
            raise BackendUnavailable("the openvino backend runs on the CPU only (--device cpu)")
        if options.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {options.precision!r}")
        self._ov = ov
        self._core = ov.Core()
        native_bf16 = "BF16" in self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if options.precision == "bf16" and not native_bf16:
            raise BackendUnavailable("this CPU has no native bf16 (AMX or AVX-512 BF16); use precision f32")
        self.precision = "bf16" if options.precision == "auto" and native_bf16 else (
            "f32" if options.precision == "auto" else options.precision)
        self.scale = scale
        self.device = "cpu"
        self._options = options
        self._onnx_path = Path(onnx_path)
        self._compiled: dict = {}

    def _compile(self, shape: tuple[int, ...], uint8: bool):
        """One compiled model per input shape: static shapes let OpenVINO pick its fastest kernels."""
        key = (shape, uint8)
        if key not in self._compiled:
            ov = self._ov
            model = self._core.read_model(str(self._onnx_path))
            if uint8:
                model = _with_uint8_io(model)
                model.reshape({model.inputs[0]: ov.PartialShape([shape[0], shape[1], shape[2]])})
            else:
                model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
            config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
            if self._options.num_threads:
                config["INFERENCE_NUM_THREADS"] = self._options.num_threads
                # OpenVINO pins its threads to cores, counting from the first: several workers
                # sharing a machine would all pin to core 0 (measured: 2 workers on 2 cores used
                # 1.2 of them). Given a thread budget, leave placement to the OS.
                config["ENABLE_CPU_PINNING"] = False
            compiled = self._core.compile_model(model, "CPU", config)
            self._compiled[key] = compiled.create_infer_request()
        return self._compiled[key]

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        batch = as_batch(luma)
        request = self._compile(batch.shape, uint8=False)
        out = request.infer({0: batch})[0].copy()
        return np.clip(out, 0.0, 1.0, out=out)

    def upscale_luma_uint8(self, luma: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W) -> uint8 (N, H * s, W * s); the conversions run inside the compiled graph."""
        luma = np.ascontiguousarray(luma, dtype=np.uint8)
        request = self._compile(luma.shape, uint8=True)
        return request.infer({0: luma})[0].copy()

    def close(self) -> None:
        self._compiled.clear()


def _with_uint8_io(model):
    """Wrap the float model so it takes uint8 (N, H, W) and returns rounded uint8 (N, H*s, W*s)."""
    import openvino as ov
    from openvino import opset13 as ops

    luma_u8 = ops.parameter(ov.PartialShape([-1, -1, -1]), ov.Type.u8, name="luma_u8")
    as_float = ops.multiply(ops.convert(luma_u8, ov.Type.f32), ops.constant(np.float32(1 / 255)))
    nchw = ops.unsqueeze(as_float, ops.constant(np.int64(1)))
    inner_param = model.get_parameters()[0]
    # Splice: feed our converted tensor wherever the ONNX input was used.
    for target in inner_param.output(0).get_target_inputs():
        target.replace_source_output(nchw.output(0))
    result = model.get_results()[0].input_value(0)
    scaled = ops.add(ops.multiply(result, ops.constant(np.float32(255))), ops.constant(np.float32(0.5)))
    clamped = ops.clamp(scaled, 0.0, 255.0)
    # Convert rounds toward zero, so the +0.5 above makes it round to nearest.
    out = ops.convert(ops.squeeze(clamped, ops.constant(np.int64(1))), ov.Type.u8)
    return ov.Model([out], [luma_u8], "espcn_uint8")
