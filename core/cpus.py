"""How many CPUs this process may use: the container's CPU quota (cgroup v2 ``cpu.max``, v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) and the affinity mask, whichever is smaller.

ONNX Runtime sizes its intra-op pool to the host's physical cores: under a 2-CPU quota on a 64-core node
that is 64 threads throttled by the quota. Neither ONNX Runtime nor Triton reads the quota; we do.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CpuCount:
    """Threads to use and why: ``setting`` (the user's), ``quota`` (the cgroup's CPU quota), ``affinity``
    (the affinity mask allows fewer CPUs than the host has), or ``default`` (0: the runtime's own choice)."""

    count: int
    source: str
    detail: str

    def describe(self) -> str:
        return f"{self.count or 'default'} ({self.detail})"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_paths(proc_cgroup: Path) -> dict[str, str]:
    """controller -> this process's cgroup path ("" for v2's unified hierarchy)."""
    paths: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    return paths


def _candidates(root: Path, own: str) -> list[Path]:
    """The process's own cgroup folder first (a host view), then the root (a container's namespace)."""
    own_dir = root / own.lstrip("/") if own and own != "/" else None
    return [d for d in (own_dir, root) if d is not None]


def quota_cpus(root: Path = CGROUP, proc_cgroup: Path = PROC_CGROUP) -> tuple[float, str] | None:
    """The CPU quota as a (fractional) number of CPUs and the file it came from; None when there is none."""
    own = _own_paths(proc_cgroup)
    for folder in _candidates(root, own.get("", "")):  # cgroup v2: "max 100000" or "150000 100000"
        text = _read(folder / "cpu.max")
        if text is not None:
            quota, _, period = text.partition(" ")
            if quota == "max" or not period:
                return None
            try:
                return int(quota) / int(period), f"cgroup v2 {folder / 'cpu.max'}: {text}"
            except (ValueError, ZeroDivisionError):
                return None
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):  # cgroup v1
        base = root / controller
        for folder in _candidates(base, own.get("cpu", "")):
            quota_text, period_text = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            if quota_text is None or period_text is None:
                continue
            try:
                quota, period = int(quota_text), int(period_text)
            except ValueError:
                return None
            if quota <= 0 or period <= 0:  # -1: no quota
                return None
            return quota / period, f"cgroup v1 {folder}: cfs_quota_us {quota} / cfs_period_us {period}"
    return None


def available_cpus(setting: int = 0, root: Path = CGROUP, proc_cgroup: Path = PROC_CGROUP) -> CpuCount:
    """``setting`` when the user gave one (> 0); else the smaller of the CPU quota (rounded down, at least
    one) and the affinity mask; 0 (the runtime's default) when neither limits the process below the host."""
    if setting > 0:
        return CpuCount(setting, "setting", "--threads")
    host = os.cpu_count() or 1
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else host
    quota = quota_cpus(root, proc_cgroup)
    if quota is not None and max(1, math.floor(quota[0])) < affinity:
        return CpuCount(max(1, math.floor(quota[0])), "quota", f"CPU quota {quota[0]:g}, {quota[1]}")
    if affinity < host:
        return CpuCount(affinity, "affinity", f"{affinity} of the host's {host} CPUs in the affinity mask")
    return CpuCount(0, "default", f"the runtime's default: no CPU quota, all {host} CPUs")
