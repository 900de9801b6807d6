"""What this host can compute with, found without importing TensorFlow or touching CUDA.

Cheap and fork-safe (it reads /proc and /dev), so the gunicorn master and the training CLI
may call it; the processor changes between hosts, so nothing here is assumed.
"""

from __future__ import annotations

import math
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
    """CPU cores this process may use: its affinity (not the whole machine's count), held to
    its cgroup's CPU quota, rounded up (a container's `--cpus`, a pod's CPU limit)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(allowed, math.ceil(quota))) if quota else allowed


def cgroup_cpu_quota(
    root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPUs a cgroup quota gives this process: the smallest quota on its cgroup's path
    (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` over `cpu.cfs_period_us`); None without one."""
    try:  # a cgroup's name may hold any bytes: kept as the file system's own names are
        lines = membership.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if controllers == "":  # v2: one hierarchy, mounted at `root`
            quotas += _quotas(root, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            mount = next(
                (root / m for m in (controllers, "cpu,cpuacct", "cpu") if _is_dir(root / m)), None
            )
            if mount is not None:
                quotas += _quotas(mount, path, _v1_quota)
    return min(quotas, default=None)


def _quotas(mount: Path, path: str, read) -> list[float]:
    """Quotas from the process's cgroup folder up to the mount; in a container the path
    named is the host's, and the mount is the container's own cgroup."""
    folder = mount / path.strip("/")
    if not _is_dir(folder):
        folder = mount
    found = []
    while True:
        quota = read(folder)
        if quota:
            found.append(quota)
        if folder == mount or mount not in folder.parents:
            return found
        folder = folder.parent


def _is_dir(path: Path) -> bool:
    """Path.is_dir, False where the path cannot be looked at: before Python 3.14 a folder
    that may not be searched (EACCES) raises PermissionError, which would stop the start."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return int(quota) / int(period) if quota != "max" and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


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
        "usable_cores": cores(),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "gpus": gpu_count(),
    }
