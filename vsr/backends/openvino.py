"""OpenVINO backend: the fastest CPU path we measured, in bf16 on AMX CPUs and int8 elsewhere.

On a 2-core Xeon (AMX), ESPCN x3 on a 640x360 luma plane took 21 ms in bf16 against 56 ms in
fp32 (ONNX Runtime: 58 ms). On a 2-core AMD EPYC (AVX-512 BF16/VNNI, no AMX) bf16 took 38 ms,
fp32 63-68 ms and int8 (NNCF, ``int8.py``) 22-25 ms; see benchmarks/results/. bf16 keeps fp32's
range and accumulates in fp32, so the output moves by about one grey level at most. int8's Set5
cost is measured per network and scale (benchmarks/int8_quality.py, recorded in
``int8_accuracy.json``): every shipped network within 0.05 dB, some by keeping convolutions float
(accuracy control, ``int8.shipped_recipe``); ``auto`` runs int8 only within 0.05 dB.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import PRECISIONS, BackendBase, BackendUnavailable, as_batch

#: OpenVINO's own spelling, accepted for scripts written before fp32 was the name.
_ALIASES = {"f32": "fp32"}


@dataclass(frozen=True)
class OpenVinoOptions:
    """``precision``: fp32, bf16 (where the CPU has it natively) or int8. 'auto' is decided
    above the backend, by ``create_backend`` (``precision.choose_precision`` times the
    candidates, building this backend once for each): a backend runs what it is given.
    ``num_threads`` 0 lets OpenVINO use every core; give fewer to leave room for decoding
    and encoding. ``calibration``: an .npz of LR luma patches for int8 instead of the
    shipped ones (``int8.calibration_patches``)."""

    precision: str = "fp32"
    num_threads: int = 0
    device: str = "cpu"
    calibration: Path | None = None
    #: ``int8.Int8Recipe`` to quantise with (None: ``int8.shipped_recipe``); for the int8 benchmarks.
    int8_recipe: object = None


class OpenVinoBackend(BackendBase):
    name = "openvino"

    @classmethod
    def _from_spec(cls, spec) -> "OpenVinoBackend":
        from .files import onnx_for

        options = spec.options_for(OpenVinoOptions, device=spec.device, num_threads=spec.num_threads,
                                   precision=spec.precision)
        return cls(spec.scale, onnx_for(spec.scale, spec.weights, spec.model, spec.context), options)

    def __init__(self, scale: int, onnx_path: os.PathLike | str, options: OpenVinoOptions = OpenVinoOptions()) -> None:
        ov = require_openvino(options.device)
        precision = _ALIASES.get(options.precision, options.precision)
        if precision not in PRECISIONS or precision == "auto":
            choices = ", ".join(p for p in PRECISIONS if p != "auto")
            raise BackendUnavailable(f"unknown precision {options.precision!r} for OpenVinoBackend: choose one of "
                                     f"{choices} (create_backend resolves auto)")
        self._ov = ov
        self._core = ov.Core()
        self.scale = scale
        self.device = "cpu"
        self._options = options
        self._onnx_path = Path(onnx_path)
        self._compiled: dict = {}
        if precision == "bf16" and not native_bf16(self._core):
            raise BackendUnavailable("this CPU has no native bf16 (AMX or AVX-512 BF16): use --precision fp32 or int8")
        self.precision = precision
        #: The precision as ``describe`` says it (int8: how many convolutions accuracy control keeps float).
        self.precision_label = precision
        #: The model file compiled: the ONNX, or for int8 its quantised IR (made once, cached).
        self.model_path = self._onnx_path
        #: What OpenVINO computes the float layers in (for int8: the ones the recipe keeps float).
        self._float_hint = "bf16" if precision == "bf16" else "f32"
        if precision == "int8":
            from .int8 import cached_int8_model, shipped_recipe

            recipe = options.int8_recipe or shipped_recipe(self._onnx_path)
            self.model_path, _ = cached_int8_model(self._onnx_path, scale, calibration_path=options.calibration,
                                                   recipe=recipe)
            if recipe.float_convs:
                # Said where the backend is described: --precision int8 on espcn7 runs almost all float.
                from .int8 import _learned_convs, int8_source

                convs = len(_learned_convs(self._core.read_model(str(int8_source(self._onnx_path)))))
                self.precision_label = f"int8, {len(recipe.float_convs)} of {convs} convolutions float"
            if recipe.float_precision == "bf16" and native_bf16(self._core):
                self._float_hint = "bf16"

    def _compile(self, shape: tuple[int, ...], uint8: bool):
        """One compiled model per input shape: static shapes let OpenVINO pick its fastest kernels."""
        key = (shape, uint8)
        if key not in self._compiled:
            ov = self._ov
            model = self._core.read_model(str(self.model_path))
            if uint8:
                model = _with_uint8_io(model)
                model.reshape({model.inputs[0]: ov.PartialShape([shape[0], shape[1], shape[2]])})
            else:
                model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
            # int8 layers run int8 whatever the hint; the hint sets what is left in float.
            config = {"INFERENCE_PRECISION_HINT": self._float_hint, "PERFORMANCE_HINT": "LATENCY"}
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


def require_openvino(device: str):
    """The openvino module, or the one line saying why this backend cannot run here (not
    installed, a device other than the CPU): checked before ``auto`` times anything with it too."""
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailable("openvino is not installed (pip install openvino)") from None
    if device != "cpu":
        raise BackendUnavailable("the openvino backend runs on the CPU only (--device cpu)")
    return ov


def native_bf16(core=None) -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX-512 BF16); elsewhere OpenVINO emulates it, slower than fp32."""
    if core is None:
        import openvino as ov

        core = ov.Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


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
