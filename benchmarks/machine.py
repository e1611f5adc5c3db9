"""What machine a benchmark ran on: CPU model, cores, memory and library versions, so numbers from
two runs can be compared honestly; plus the memory probes (peak RSS of this process and of a server)."""

from __future__ import annotations

import os
import platform
import resource
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

LIBRARIES = ("numpy", "torch", "faiss-cpu", "implicit", "polars", "fastapi", "uvicorn", "mlflow", "matplotlib")


def describe() -> dict:
    """CPU model (/proc/cpuinfo), cores, memory (/proc/meminfo), OS, Python and library versions."""
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(_meminfo_kb("MemTotal") / 1024**2, 1) if _meminfo_kb("MemTotal") else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "versions": {name: _version(name) for name in LIBRARIES},
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meminfo_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def self_peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (read from /proc; empty when the process is gone)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, stack = [], [pid]
    while stack:
        current = stack.pop()
        if Path(f"/proc/{current}").exists():
            out.append(current)
        stack.extend(children.get(current, []))
    return out


def tree_peak_rss_mb(pid: int) -> dict:
    """Peak RSS (VmHWM) of a server process and each of its workers, and their sum, in MiB."""
    per_process = {p: _status_kb(p, "VmHWM") / 1024 for p in process_tree(pid)}
    return {
        "total_mb": round(sum(per_process.values()), 1),
        "largest_process_mb": round(max(per_process.values(), default=0.0), 1),
        "processes": len(per_process),
    }
