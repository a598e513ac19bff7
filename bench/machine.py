"""What the numbers were measured on: the machine, and the versions of everything involved."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pooldrop


def _first_line(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        return "not installed"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:
        return f"unknown ({exc})"
    out = (proc.stdout or proc.stderr).strip().splitlines()
    return out[0] if out else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _filesystem(path: Path) -> str:
    """The filesystem type holding ``path`` (both servers write there)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _dev, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        pass
    return kind


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    return _first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])


def describe(work: Path) -> dict[str, Any]:
    """Machine and versions, as recorded in the results file and BENCHMARKS.md."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(_memory_gib(), 1),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "filesystem": _filesystem(work),
        "python": platform.python_version(),
        "pooldrop": f"{pooldrop.__version__} ({_git_commit()})",
        "nginx": _first_line([nginx, "-v"]).removeprefix("nginx version: "),
        "wrk": _first_line(["wrk", "-v"]).split(" [")[0],
        "tar": _first_line(["tar", "--version"]),
        # Other work on the machine skews every figure; the load when the run began says how much.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
