"""The machine's facts, in one place: what the CPU is and computes natively (from /proc/cpuinfo: the
identity every CPU figure is recorded with, in benchmarks and the precision and model caches, and
the int8 arithmetic that decides how much a network loses to int8), the cores this process may use
and how long its threads waited for them, the memory available and the CUDA GPUs torch sees. No
heavy imports (torch only when GPUs are asked about): bench, the model chooser, the backends, the
segment driver and the benchmarks all read it."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpuinfo() -> dict[str, str]:
    """The first core's "model name", "cpu family", "model", "stepping" and "flags" from
    /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model", "stepping", "flags") and key not in fields:
                fields[key] = value.strip()
    except OSError:
        pass
    return fields


def cpu_model_name(fields: dict[str, str] | None = None) -> str:
    fields = cpuinfo() if fields is None else fields
    return fields.get("model name", platform.processor() or platform.machine())


def cpu_identity() -> str:
    """Model name, family/model/stepping and the flags that decide the fastest precision, plus the core count."""
    fields = cpuinfo()
    flags = set(fields.get("flags", "").split())
    wanted = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")
    return " ".join([
        cpu_model_name(fields),
        f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')} stepping {fields.get('stepping', '?')}",
        f"{os.cpu_count()} cores",
        "+".join(flag for flag in wanted if flag in flags) or "no-simd-flags",
    ])


def int8_arithmetic(fields: dict[str, str] | None = None) -> str:
    """"vnni" where the CPU multiplies int8 with VNNI or AMX (exact int32 sums), else "no-vnni"
    (u8 x s8 pairs summed in saturating int16): the two lose different amounts to int8, so
    ``backends.int8.recorded_loss_db`` keeps a figure for each."""
    flags = set((cpuinfo() if fields is None else fields).get("flags", "").split())
    return "vnni" if flags & {"avx512_vnni", "avx_vnni", "amx_int8"} else "no-vnni"


def available_cpus() -> int:
    """The cores this process may run on (its affinity: a container or taskset may give fewer
    than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def scheduler_ns() -> tuple[int, int] | None:
    """(nanoseconds on a core, nanoseconds runnable but waiting for one), summed over this
    process's threads so far, from /proc/self/task/*/schedstat; None where the kernel does not
    keep them (not Linux, schedstats off). The second is what other programs took: a thread
    that sleeps or waits on a lock adds to neither."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    on_cpu = waiting = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat") as stat:
                fields = stat.read().split()
            on_cpu, waiting = on_cpu + int(fields[0]), waiting + int(fields[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return on_cpu, waiting


#: Share of a timing's runnable time its threads may spend waiting for a core before the timing
#: counts as made on a busy machine, one not to cache (``--model auto``'s calibration,
#: ``--precision auto``). Measured on the 2-core AMD EPYC (Zen 4), realtime-compressed-plus on
#: 640x360: 0.003 to 0.007 on a quiet machine (OpenVINO and ONNX Runtime, every core), 0.52 to
#: 0.67 beside two training runs.
BUSY_WAITING_SHARE = 0.15


def waiting_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Of the time this process's threads were runnable between two ``scheduler_ns`` readings,
    the share they waited for a core (None where the kernel keeps no counts, or the threads were
    runnable for under 20 ms: too little to judge by)."""
    if before is None or after is None:
        return None
    on_cpu, waiting = (max(0, b - a) for a, b in zip(before, after))  # threads that ended lose their counts
    return waiting / (on_cpu + waiting) if on_cpu + waiting >= 20_000_000 else None


def is_busy(share: float | None) -> bool:
    """Whether a ``waiting_share`` says other programs kept the cores busy (over
    ``BUSY_WAITING_SHARE``); an unknown share (None) does not."""
    return share is not None and share > BUSY_WAITING_SHARE


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where there is none: not Linux)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gpu_count() -> int:
    """CUDA GPUs torch sees (CUDA_VISIBLE_DEVICES applied); 0 without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_info(device: str) -> dict:
    """Name, compute capability and memory of the CUDA ``device`` ("cuda" or "cuda:N")."""
    import torch

    props = torch.cuda.get_device_properties(torch.device(device).index or 0)
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1)}

