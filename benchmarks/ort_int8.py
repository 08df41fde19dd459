"""Lever check: does int8 (VNNI) quantisation make ONNX Runtime faster for ESPCN x3 on this CPU?

    python benchmarks/ort_int8.py

Static QDQ and QOperator quantisation (per-channel s8 weights, u8 activations, calibrated on
8 frames of the 360p clip) against the fp32 model, at 1 and 2 threads. Prints ms per 640x360
luma plane. Our run (2026-11-22, trainings running in the background, so compare the rows
with each other only): fp32 101 / 58 ms, QDQ 137 / 176 ms, QOperator 135 / 84 ms (1 / 2
threads): int8 was slower, so vsr does not use it; OpenVINO bf16 (about 18 ms) is the fast path.
"""
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from vsr.models.weights import shipped_weights

DATA = Path(os.environ.get("VSR_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def calibration_frames(count: int = 8) -> list[np.ndarray]:
    frames = []
    with av.open(str(DATA / "video" / "car_traffic_640x360.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 60 == 0:
                frames.append(frame.to_ndarray(format="gray")[None, None].astype(np.float32) / 255)
            if len(frames) == count:
                break
    return frames


class Reader(CalibrationDataReader):
    def __init__(self, frames):
        self._frames = iter(frames)

    def get_next(self):
        x = next(self._frames, None)
        return None if x is None else {"luma": x}


def time_ms(path: str, x: np.ndarray, threads: int, repeats: int = 10) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, {"luma": x})
    started = time.perf_counter()
    for _ in range(repeats):
        session.run(None, {"luma": x})
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    frames = calibration_frames()
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(str(shipped_weights(3, "onnx")), pre)
        models = {"fp32": str(shipped_weights(3, "onnx"))}
        for name, fmt in (("int8 QDQ", QuantFormat.QDQ), ("int8 QOperator", QuantFormat.QOperator)):
            models[name] = os.path.join(tmp, name.replace(" ", "_") + ".onnx")
            quantize_static(pre, models[name], Reader(frames), quant_format=fmt, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        for name, path in models.items():
            print(name, " / ".join(f"{time_ms(path, frames[0], t):.1f} ms ({t} thr)" for t in (1, 2)), flush=True)


if __name__ == "__main__":
    main()
