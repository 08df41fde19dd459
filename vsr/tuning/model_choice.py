"""``--model auto`` / ``--target-fps``: the best model of the ladder that keeps up.

Each clean-input model (``vsr models``) is timed on a luma plane of the input's size with the
run's backend, device and threads: a few untimed calls, then calls for about half a second.
The ladder is climbed from the cheapest rung (multiply-adds per pixel) and stops at the first
that is too slow (a costlier rung cannot be faster; near ties are still timed), so calibrating is
quick and a model that cannot keep up is timed at most once. ``degradation`` picks the ladder:
the clean-input models, or those trained for compressed video. Results are cached per machine, backend, device, size,
scale and model, the model named by its weights' checksum and its recorded int8 loss (which
``--precision auto`` consults), so new weights or records are timed afresh
(``$VSR_CACHE_DIR/calibration.json``): later runs decide without timing.

The engine is only part of a run: decode, chroma and encode share the machine. A model is
chosen only if the engine alone is ``HEADROOM`` times faster than the target.

A timing made while other programs kept the cores busy is used for this run (which shares the
machine with them too) but not cached: cached, it would hold every later run, on a quiet machine,
to what a busy one could do. Busy means the engine's threads spent over ``hardware.BUSY_WAITING_SHARE`` of
their runnable time waiting for a core (the kernel's scheduler counts, ``hardware.waiting_share``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InputError
from ..hardware import is_busy, scheduler_ns, waiting_share
from ..models.clip_context import timing_context
from ..models.registry import get_model, shipped_models

#: Engine-only fps over the target fps a model needs: on the 2-core AMD EPYC the engine alone
#: ran at 25 fps where the whole `vsr run` ran at 23 fps, and at 4K on an H100 decode and
#: encode cost more than the network; 1.3 leaves room for both.
HEADROOM = 1.3
#: Timing per model: warm up for WARMUP_SECONDS (at least WARMUP_CALLS calls), then the best of
#: TIMED_WINDOWS windows of CALIBRATION_SECONDS (each at least two calls). Why the best, after a real
#: warm-up: a model timed first in a process ran slow for its first half-second (the x3 context rung:
#: 39.1 and 41.6 fps first, 43-48 after, on two Zen 4 cores), which moved it under the 39.2 a
#: 30 fps clip needs; the fastest window is what the engine can do, the slower ones what else ran.
CALIBRATION_SECONDS = 0.25
#: Part of each cached timing's key, raised when the way models are timed changes: a timing made
#: the old way (before 2: one window after two calls, no re-timing of near ties) is made again.
TIMING_VERSION = 2
TIMED_WINDOWS = 3
WARMUP_SECONDS = 0.3
WARMUP_CALLS = 2


@dataclass(frozen=True)
class Choice:
    """The chosen model, the fps each timed model reached (engine only), and why, in one line."""

    model: str
    engine_fps: dict[str, float]
    reason: str


@dataclass(frozen=True)
class EngineTiming:
    """One model's engine-only frames per second, and the share of its threads' runnable time
    spent waiting for a core that another program held (None where that is not known: a GPU,
    a kernel without scheduler counts)."""

    fps: float
    waiting_share: float | None = None

    @property
    def busy(self) -> bool:
        """Whether other programs slowed this timing enough that it must not be cached."""
        return is_busy(self.waiting_share)


def machine_name(device: str) -> str:
    """What the calibration is valid on: the GPU's name for CUDA, else the CPU (model, cores and
    the instruction sets that decide speed, as ``--precision auto`` keys its cache)."""
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(torch.device(device))}"
    from ..hardware import cpu_identity

    return cpu_identity()


def model_fingerprint(name: str, scale: int) -> str:
    """NAME@CHECKSUM of the shipped ONNX (``+int8LOSS`` where its int8 loss is recorded): what the
    timing of a model depends on besides the machine and the run's options."""
    from ..backends.int8 import onnx_digest, recorded_loss_db
    from ..models.weights import shipped_weights

    onnx = shipped_weights(scale, "onnx", name)
    loss_db = recorded_loss_db(onnx)
    # A network with a global context is timed as a run runs it: its context folded in.
    folded = "+fold" if get_model(name).global_context(scale) else ""
    return f"{name}@{onnx_digest(onnx)[:12]}{folded}" + (f"+int8{loss_db}" if loss_db is not None else "")


def _cache_path() -> Path:
    from ..cache import cache_dir

    return cache_dir("calibration.json")


def _read_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: calibrate again


def _write_cache(cache: dict) -> None:
    from ..cache import write_atomic

    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cache, indent=1, sort_keys=True).encode())
    except OSError:
        pass  # a read-only home only costs a calibration next time


def measure_engine_fps(spec, width_px: int, height_px: int) -> EngineTiming:
    """Frames per second of ``spec``'s engine alone on (batch, 1, height, width) luma planes, and
    (on a CPU) how much of the time its threads were kept waiting for a core."""
    import numpy as np

    from ..backends import create_backend

    backend = create_backend(spec)
    try:
        rng = np.random.default_rng(0)
        luma = rng.random((spec.batch_size, 1, height_px, width_px), dtype=np.float32)
        calls, started = 0, time.perf_counter()
        while calls < WARMUP_CALLS or time.perf_counter() - started < WARMUP_SECONDS:
            backend.upscale_luma(luma)
            calls += 1
        on_gpu = spec.device.startswith("cuda")
        before = None if on_gpu else scheduler_ns()
        best_fps = 0.0
        for _ in range(TIMED_WINDOWS):
            calls, started = 0, time.perf_counter()
            while calls < 2 or time.perf_counter() - started < CALIBRATION_SECONDS:
                backend.upscale_luma(luma)
                calls += 1
            best_fps = max(best_fps, calls * spec.batch_size / (time.perf_counter() - started))
        return EngineTiming(best_fps, waiting_share(before, None if before is None else scheduler_ns()))
    finally:
        backend.close()


#: Codecs that store the picture exactly: their input is as clean as the source was.
LOSSLESS_CODECS = frozenset({
    "ffv1", "huffyuv", "ffvhuff", "utvideo", "rawvideo", "png", "apng", "qtrle", "magicyuv", "lagarith", "zlib",
    "zmbv", "v210", "v210x", "v308", "v408", "v410", "r210", "r10k", "y41p", "yuv4", "ayuv", "012v", "bmp", "tiff",
    "gif", "targa", "sgi", "pam", "ppm", "pgm", "pgmyuv", "qoi", "fits", "cllc", "sheervideo", "prores_raw",
})
#: A lossy stream at or above this many bits per pixel carries no visible codec artefacts (x264 reaches
#: it near CRF 10 on camera video; streaming and downloads sit at 0.02-0.3): treated as clean.
CLEAN_BITS_PER_PIXEL = 1.0
#: What ``--degradation`` takes, and the ladder (``ModelInfo.degradation``) each one selects.
DEGRADATION_CHOICES = {"clean": "bicubic", "compressed": "compressed"}


def input_degradation(codec_name: str | None, bits_per_pixel: float | None) -> tuple[str, str]:
    """(the ladder for this input, "bicubic" or "compressed", and why in a few words), from its
    codec and, for lossy codecs, its bits per pixel. Unknown codecs count as lossy: most video is."""
    codec = (codec_name or "unknown").lower()
    if codec in LOSSLESS_CODECS:
        return "bicubic", f"{codec} is lossless"
    if bits_per_pixel is not None and bits_per_pixel >= CLEAN_BITS_PER_PIXEL:
        return "bicubic", f"{codec} at {bits_per_pixel:.2g} bits per pixel, near lossless"
    rate = f" at {bits_per_pixel:.2g} bits per pixel" if bits_per_pixel is not None else ""
    return "compressed", f"{codec}{rate} is lossy"


#: Rungs whose cost (multiply-adds per pixel) is within this factor of a rung too slow are still
#: timed: for near ties (ESPCN and realtime) only the measurement says which is faster here.
NEAR_TIE = 1.5


def fps_text(fps: float) -> str:
    """A frame rate as people write it: 25, 29.97, 23.98 (a container's 25.0146 is 25.01)."""
    return f"{round(fps, 2):g}"


#: How many more times each of two near-tie rungs is timed, alternately, when the better one
#: measured too slow and the other held (``_retime_near_ties``).
RETIMES = 2


def _retime_near_ties(ladder, fps, busy, needed_fps, spec, width_px, height_px, measure, cache, keys,
                      cache_before) -> None:
    """Where a better rung measured too slow and a near tie of its cost (within ``NEAR_TIE``) held,
    time both again, alternately, and keep each one's fastest. Why: on two Zen 4 cores the x3 context
    rung's engine measured 30-48 fps from one process to the next (the other VMs on the host, not
    this one's programs: no core was waited for), around the 39.2 a 30 fps clip needs, while its near
    tie measured alike; alternating puts both under the same conditions, and the fastest timing is
    what each engine can do. Updates ``fps`` and the cache in place."""
    timed = [m for m in ladder if m.name in fps]
    for better in timed:
        if fps[better.name] >= needed_fps or better.name in busy or keys[better.name] in cache_before:
            continue  # a cached timing was settled by an earlier run
        cost = better.macs_per_lr_px(spec.scale)
        ties = [m for m in timed if m.rank < better.rank and fps[m.name] >= needed_fps and m.name not in busy
                and max(cost, m.macs_per_lr_px(spec.scale)) <= min(cost, m.macs_per_lr_px(spec.scale)) * NEAR_TIE]
        if not ties:
            continue
        pair = [better, ties[0]]
        for _ in range(RETIMES):
            for info in pair:
                timing = measure(replace(spec, model=info.name, context=timing_context(info, spec.scale)),
                                 width_px, height_px)
                if not timing.busy:
                    fps[info.name] = max(fps[info.name], round(timing.fps, 2))
        for info in pair:
            cache[keys[info.name]] = fps[info.name]
        _write_cache(cache)
        return


def choose_model(spec, width_px: int, height_px: int, target_fps: float, *, degradation: str = "bicubic",
                 measure=measure_engine_fps) -> Choice:
    """The best model (highest ``rank``) trained for ``degradation`` whose engine holds
    ``target_fps`` x ``HEADROOM`` on ``spec`` (its ``model`` is ignored) for frames of
    ``width_px`` x ``height_px``; when none does, the fastest.

    Rungs are timed from the cheapest (multiply-adds per pixel) up, and timing stops at the
    first that is too slow, but for rungs within ``NEAR_TIE`` of its cost: a costlier one
    cannot be faster, a near tie can."""
    if not target_fps > 0:
        raise InputError(f"--target-fps must be above 0, got {target_fps:g}")
    ladder = sorted((m for m in shipped_models() if m.degradation == degradation and spec.scale in m.scales),
                    key=lambda m: (m.macs_per_lr_px(spec.scale), m.rank))
    if not ladder:
        raise InputError(f"no shipped model for {degradation} input upscales x{spec.scale}")
    needed_fps = target_fps * HEADROOM
    cache = _read_cache()
    cached = set(cache)  # the keys timed by earlier runs
    machine = machine_name(spec.device)
    fps: dict[str, float] = {}
    busy: dict[str, float] = {}  # models timed on a busy machine: their waiting shares
    keys: dict[str, str] = {}  # each timed model's cache key
    too_slow_cost = None
    for info in ladder:
        cost = info.macs_per_lr_px(spec.scale)
        if too_slow_cost is not None and cost > too_slow_cost * NEAR_TIE:
            break
        key = "|".join(map(str, (machine, spec.backend, spec.precision, spec.device, spec.num_threads,
                                 spec.batch_size, f"{width_px}x{height_px}", f"x{spec.scale}",
                                 model_fingerprint(info.name, spec.scale), f"t{TIMING_VERSION}")))
        keys[info.name] = key
        if key in cache:
            fps[info.name] = cache[key]
        else:
            timing = measure(replace(spec, model=info.name, context=timing_context(info, spec.scale)),
                             width_px, height_px)
            fps[info.name] = round(timing.fps, 2)
            if timing.busy:
                busy[info.name] = timing.waiting_share
            else:
                cache[key] = fps[info.name]
                _write_cache(cache)
        if fps[info.name] < needed_fps and too_slow_cost is None:
            too_slow_cost = cost
    _retime_near_ties(ladder, fps, busy, needed_fps, spec, width_px, height_px, measure, cache, keys, cached)
    holding = [m for m in ladder if m.name in fps and fps[m.name] >= needed_fps]
    timed = ", ".join(f"{name} {value:.3g}" for name, value in fps.items())
    size = f"{width_px}x{height_px} x{spec.scale} on {spec.backend} ({spec.device})"
    kind = "" if degradation == "bicubic" else f"{degradation}-input "
    if not holding:
        chosen = max(fps, key=fps.get)
        reason = (f"model {chosen}: even the fastest {kind}model cannot hold {fps_text(target_fps)} fps at {size} "
                  f"(engine fps: {timed}; needs {needed_fps:.3g} with room for decode and encode)")
    else:
        chosen = max(holding, key=lambda m: m.rank).name
        better = [m.name for m in ladder if m.rank > get_model(chosen).rank and m.name in fps]
        reason = (f"model {chosen}: the best {kind}model that holds {fps_text(target_fps)} fps at {size} "
                  f"(engine fps: {timed}; needs {needed_fps:.3g} with room for decode and encode"
                  + (f"; {better[0]} is too slow" if better else "") + ")")
    if busy:
        waited = ", ".join(f"{name} {share:.0%}" for name, share in busy.items())
        reason += (f"; other programs kept the CPU busy while {' and '.join(busy)} "
                   f"{'was' if len(busy) == 1 else 'were'} timed (waiting for a core: {waited}): "
                   "not cached, timed again next run")
    return Choice(model=chosen, engine_fps=fps, reason=reason)


def choose_for_input(spec, width_px: int, height_px: int, target_fps: float, *, degradation_option: str,
                     codec_name: str | None, bits_per_pixel: float | None) -> tuple[str, str]:
    """``--model auto`` for one input, the one place ``vsr run`` and ``vsr live`` resolve it:
    (the model, the line that says which and why). ``degradation_option`` is ``--degradation``:
    "auto" judges the input by its codec and bits per pixel (``input_degradation``), "clean" and
    "compressed" name the ladder outright."""
    if degradation_option == "auto":
        degradation, why = input_degradation(codec_name, bits_per_pixel)
        why = f"{why}: models for {'clean' if degradation == 'bicubic' else 'compressed'} input"
    else:
        degradation, why = DEGRADATION_CHOICES[degradation_option], f"--degradation {degradation_option}"
    choice = choose_model(spec, width_px, height_px, target_fps, degradation=degradation)
    return choice.model, f"{choice.reason}; {why}"
