"""What this CPU is and what it computes natively, from /proc/cpuinfo: the identity every CPU
figure is recorded with (benchmarks, the precision and model caches) and the int8 arithmetic
that decides how much a network loses to int8. No heavy imports: bench, the model chooser,
the backends and the benchmarks all read it."""
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
