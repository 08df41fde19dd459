"""``--precision auto`` for OpenVINO: time each precision this CPU can run once, keep the fastest.

Which precision wins depends on the CPU, not on a rule we can write down: bf16 is 2.7x fp32 on
AMX Xeons but 1.8x on AVX-512 BF16 without AMX, and int8 (VNNI) beats bf16 there but not on AMX.
So auto measures fp32, bf16 (only where native) and int8 (only where NNCF is installed and the
network's int8 was recorded within 0.05 dB of fp32 on Set5: every shipped network, some with
convolutions kept float by accuracy control) on a small luma plane, about a second, and caches the
choice per CPU model, network and tool versions under ``$VSR_CACHE_DIR/precision/``. The first run logs what it measured
(``verbosity.NOTES``; the CLI shows it). A measurement made while other programs kept the cores
busy (``hardware.BUSY_WAITING_SHARE``) serves that run only: it is not cached.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..cache import cache_dir, text_digest
from ..hardware import cpu_identity, int8_arithmetic, is_busy, scheduler_ns, waiting_share
from ..verbosity import NOTES

#: The plane auto times: a quarter of 640x360, big enough that per-call overhead does not decide.
PROBE_SHAPE = (1, 180, 320)
PROBE_CALLS = 5


def candidates(onnx_path: Path) -> list[str]:
    """fp32; bf16 where native; int8 where NNCF is installed and this network's int8 was recorded
    within ``int8.MAX_LOSS_DB`` on Set5 with this CPU's int8 arithmetic (a faster but visibly
    worse precision is never automatic, nor one never measured on this kind of CPU)."""
    from .int8 import MAX_LOSS_DB, nncf_version, recorded_loss_db
    from .openvino import native_bf16

    names = ["fp32"]
    if native_bf16():
        names.append("bf16")
    loss_db = recorded_loss_db(onnx_path)
    if loss_db is not None and loss_db <= MAX_LOSS_DB and nncf_version() is not None:
        names.append("int8")
    return names


def int8_left_out(loss_db: float | None, *, measured_on_vnni_only: bool = False) -> str | None:
    """Why int8 is not among ``candidates`` for a network whose recorded int8 loss is ``loss_db``
    (``int8.recorded_loss_db``), for a user who wants speed more than the last 0.1 dB (the lever
    that makes ESPCN real time on CPUs without AMX), or None where it is a candidate or was never
    measured for this network."""
    from .int8 import MAX_LOSS_DB, nncf_version

    if loss_db is None:
        if measured_on_vnni_only:
            return ("int8 left out: its loss was measured only on CPUs with VNNI or AMX, and this one sums "
                    "int8 products in 16 bits, which loses more (--precision int8 runs it anyway)")
        return None
    if loss_db > MAX_LOSS_DB:
        return (f"int8 left out: it loses {loss_db:.2f} dB on Set5 with this network, over the "
                f"{MAX_LOSS_DB} dB bound (--precision int8 runs it anyway)")
    if nncf_version() is None:
        return "int8 left out: NNCF is not installed (pip install 'vsr[int8]')"
    return None


def _cache_path(onnx_path: Path) -> tuple[Path, dict]:
    import openvino as ov

    from .int8 import fold_source, nncf_version, onnx_digest, recorded_loss_db

    key = {"cpu": cpu_identity(), "onnx_sha256": onnx_digest(onnx_path),
           "openvino": ov.__version__.split("-")[0], "nncf": nncf_version(),
           "int8_loss_db": recorded_loss_db(onnx_path)}
    stem = onnx_path.stem
    source = fold_source(onnx_path)
    if source is not None:
        # A clip's context folded in changes weights, not the cost: every fold of one network
        # shares one decision, so a new clip is not timed again (the unfolded network is not one).
        key.update(onnx_sha256=source, folded=True)
        stem = stem.split("_fold")[0] + "_folded"
    digest = text_digest(json.dumps(key, sort_keys=True), 16)
    root = cache_dir("precision")
    return root / f"{stem}_{digest}.json", key


def probe_plane(height: int = PROBE_SHAPE[1], width: int = PROBE_SHAPE[2]) -> np.ndarray:
    """A uint8 (1, H, W) luma plane to time engines on: a smooth ramp with texture (content hardly
    matters to the speed, but it must not be constant)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return ((xx * 255 // width + 40 * np.sin(yy / 3.0)) % 256).astype(np.uint8)[None]


def time_plane_ms(onnx_path: Path, scale: int, options, luma: np.ndarray, calls: int = PROBE_CALLS) -> float:
    """Milliseconds per call of OpenVINO (``options``: ``OpenVinoOptions``) on the uint8 plane
    ``luma``: the best of ``calls`` after one call that compiles."""
    from .openvino import OpenVinoBackend

    backend = OpenVinoBackend(scale, onnx_path, options)
    try:
        backend.upscale_luma_uint8(luma)
        best = float("inf")
        for _ in range(calls):
            started = time.perf_counter()
            backend.upscale_luma_uint8(luma)
            best = min(best, time.perf_counter() - started)
    finally:
        backend.close()
    return round(best * 1000, 2)


def measure(onnx_path: Path, scale: int, calibration: Path | None, names: list[str]) -> dict[str, float]:
    """Milliseconds per ``PROBE_SHAPE`` uint8 plane for each precision (best of ``PROBE_CALLS``)."""
    from .openvino import OpenVinoOptions

    luma = probe_plane()
    return {name: time_plane_ms(onnx_path, scale, OpenVinoOptions(precision=name, calibration=calibration), luma)
            for name in names}


def choose_precision(onnx_path: Path, scale: int, calibration: Path | None = None) -> tuple[str, str]:
    """(the fastest precision here for ``onnx_path``, a one-line note saying why)."""
    from ..cache import build_lock, write_atomic

    onnx_path = Path(onnx_path)
    path, key = _cache_path(onnx_path)
    record, waited = None, None
    if not path.is_file():
        with build_lock(path):
            if not path.is_file():
                before = scheduler_ns()
                timings = measure(onnx_path, scale, calibration, candidates(onnx_path))
                waited = waiting_share(before, scheduler_ns())
                record = {**key, "ms_per_plane": timings, "plane": f"{PROBE_SHAPE[2]}x{PROBE_SHAPE[1]}",
                          "choice": min(timings, key=timings.get)}
                if not is_busy(waited):
                    write_atomic(path, (json.dumps(record, indent=2) + "\n").encode())
                # else: timed while other programs held the cores, which shifts each precision's
                # time by how busy the machine was at that moment: good for this run, not for the next.
    measured_now = record is not None
    record = record or json.loads(path.read_text())
    timings = record["ms_per_plane"]
    choice = record["choice"]
    times = ", ".join(f"{name} {ms:g} ms" for name, ms in sorted(timings.items(), key=lambda item: item[1]))
    where = (f"cached in {path}" if not is_busy(waited) else
             f"while other programs kept the CPU busy (waiting for a core {waited:.0%} of the time): not cached")
    note = (f"precision auto: {choice}, the fastest here ({times} per {record['plane']} plane; "
            f"{'measured now' if measured_now else 'measured before'} on {key['cpu'].split(' family')[0]}, {where})")
    from .int8 import recorded_loss_db

    # The record the cache key already read; where it is missing only for this kind of CPU, say so.
    elsewhere = (key["int8_loss_db"] is None and int8_arithmetic() == "no-vnni"
                 and recorded_loss_db(onnx_path, arithmetic="vnni") is not None)
    left_out = int8_left_out(key["int8_loss_db"], measured_on_vnni_only=elsewhere)
    if left_out:
        note += f"; {left_out}"
    if measured_now:
        NOTES.info(note)  # the CLI shows it as a note: line; the library prints nothing
    return choice, note


def resolve_precision(spec):
    """``spec`` (an ``EngineSpec`` naming its backend) with a precision that backend runs:
    ``auto`` timed here for OpenVINO (``choose_precision``), above the backend, so the backend is
    built from a concrete value; a precision the backend lacks refused in one line. Backends with
    one precision keep ``auto``, which means their own default (fp16 on CUDA, fp32 on the CPU)."""
    import dataclasses

    from .files import onnx_for
    from .base import BackendUnavailable
    from .registry import entry

    precisions = entry(spec.backend).precisions
    if spec.precision not in ("auto", *precisions):
        # Only OpenVINO has bf16 kernels worth having off AMX and an int8 path (NNCF) in vsr.
        raise BackendUnavailable(f"--precision {spec.precision} runs on the openvino backend only; {spec.backend} "
                                 "runs fp32 (use --precision fp32 or auto)")
    if spec.precision != "auto" or len(precisions) == 1:
        return spec
    from .openvino import require_openvino

    require_openvino(spec.device)
    calibration = getattr(spec.backend_options, "calibration", None)
    onnx = onnx_for(spec.scale, spec.weights, spec.model, spec.context)
    precision, _ = choose_precision(onnx, spec.scale, calibration)
    return dataclasses.replace(spec, precision=precision)
