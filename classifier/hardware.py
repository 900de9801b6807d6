"""What this host can compute with, found without importing TensorFlow or touching CUDA.

Cheap and fork-safe (it reads /proc and /dev), so the gunicorn master and the training CLI
may call it; the processor changes between hosts, so nothing here is assumed.
"""

from __future__ import annotations

import os
import platform
import re
from functools import cache
from pathlib import Path

BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@cache
def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_flags() -> frozenset[str]:
    return frozenset(cpuinfo().get("flags", "").split())


def native_bf16(flags: frozenset[str] | set[str] | None = None) -> bool:
    """AMX or AVX-512 BF16: bfloat16 computed natively, not emulated (slower than float32)."""
    return bool((cpu_flags() if flags is None else flags) & BF16_FLAGS)


def cores() -> int:
    """CPU cores this process may run on (its affinity, not the whole machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu_count() -> int:
    """NVIDIA GPUs this process may use, counted from their device files (no CUDA init)."""
    try:
        installed = sum(1 for p in Path("/dev").iterdir() if re.fullmatch(r"nvidia\d+", p.name))
    except OSError:
        return 0
    return visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), installed)


def visible_gpus(visible: str | None, installed: int) -> int:
    """How many of `installed` GPUs CUDA_VISIBLE_DEVICES lets CUDA see. CUDA reads the list
    up to its first entry that names no device (so "-1,0" and "" hide every one); an index
    is checked against the count, a UUID (GPU-..., MIG-...) cannot be without NVML."""
    if visible is None:
        return installed
    seen: set[str] = set()
    for entry in (part.strip() for part in visible.split(",")):
        if entry.isascii() and entry.isdigit() and int(entry) < installed:
            entry = str(int(entry))
        elif not entry.startswith(("GPU-", "MIG-")):
            break
        if entry in seen:
            break
        seen.add(entry)
    return min(len(seen), installed)


def describe() -> dict[str, object]:
    """For benchmark records: which processor, and what it computes natively."""
    flags = cpu_flags()
    return {
        "cpu": cpuinfo().get("model name", platform.processor() or platform.machine()),
        "cores": os.cpu_count(),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "gpus": gpu_count(),
    }
