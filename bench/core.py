"""What every scenario shares: the run mode, the context it runs in, and the outcome it reports."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from bench.api import BenchApi, EndpointMissing
from bench.servers import NginxServer, PooldropServer

T = TypeVar("T")


class Mode(StrEnum):
    """``full`` is the real measurement; ``quick`` a smaller one; ``smoke`` checks it all works."""

    FULL = "full"
    QUICK = "quick"
    SMOKE = "smoke"


@dataclass
class Context:
    """Everything a scenario may use. ``nginx`` is None when only pooldrop is measured."""

    mode: Mode
    work: Path
    pooldrop: PooldropServer
    api: BenchApi
    routes: set[str]
    nginx: NginxServer | None
    runs: int
    # A PostgreSQL-backed pooldrop started early (smoke mode overlaps the start-ups).
    pg_server: PooldropServer | None = None
    # Figures one scenario lends another (batch compares to nginx's `small` req/s).
    shared: dict[str, float] = field(default_factory=dict)

    def pick(self, full: T, quick: T, smoke: T) -> T:
        """The size of something for the current mode."""
        return {Mode.FULL: full, Mode.QUICK: quick, Mode.SMOKE: smoke}[self.mode]

    def require(self, *needed: str) -> None:
        """Raise ``EndpointMissing`` unless the server has every route in ``needed``."""
        missing = [r for r in needed if r not in self.routes]
        if missing:
            raise EndpointMissing(missing)

    def random_file(self, name: str, size: int) -> Path:
        """A file of ``size`` random bytes under the work folder, made once per run of the suite."""
        path = self.work / "files" / name
        if not path.exists() or path.stat().st_size != size:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as f:
                left = size
                while left:
                    n = min(left, 1 << 20)
                    f.write(os.urandom(n))
                    left -= n
        return path


@dataclass(frozen=True)
class Outcome:
    """One row of the table. ``passed`` is None when the target is not judged (smoke mode)."""

    pooldrop: str
    baseline: str
    ratio: float | None
    passed: bool | None
    values: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paired_runs(
    ctx: Context,
    pooldrop_run: Callable[[int], float],
    baseline_run: Callable[[int], float] | None,
    *,
    server_pid: int | None = None,
    stats: dict[str, Any] | None = None,
) -> tuple[list[float], list[float]]:
    """Run pooldrop then the baseline, ``ctx.runs`` times, interleaved so drift hits both alike.

    Dirty pages are flushed before every run: what the previous run left for the kernel to write
    back should not slow the next one down. With ``stats`` given, the pooldrop server's CPU use
    during each of its runs (1.0 = one core busy) is added as ``server_cpu``: well under 1.0 means
    the server mostly waited (on disk, locks or the client), not computed.
    """
    ours: list[float] = []
    theirs: list[float] = []
    pid = server_pid or ctx.pooldrop.pid
    for i in range(ctx.runs):
        os.sync()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        ours.append(pooldrop_run(i))
        if stats is not None:
            used = (cpu_seconds(pid) - cpu0) / max(time.monotonic() - t0, 1e-9)
            stats.setdefault("server_cpu", []).append(round(used, 2))
        if baseline_run is not None:
            os.sync()
            theirs.append(baseline_run(i))
    return ours, theirs


def ratio_outcome(
    ctx: Context,
    ours: list[float],
    theirs: list[float],
    *,
    unit: str,
    min_ratio: float,
    baseline_label: str = "",
    baseline_unit: str | None = None,
    values: dict[str, Any] | None = None,
    note: str = "",
) -> Outcome:
    """Medians of both sides and the median of the per-run ratios, judged against ``min_ratio``."""
    shown = f"{median(ours):,.1f} {unit}"
    if not theirs:
        return Outcome(shown, "—", None, None, {"pooldrop": ours, **(values or {})}, note)
    pairs = [a / b for a, b in zip(ours, theirs, strict=False) if b]
    ratio = median(pairs) if len(pairs) == len(theirs) else median(ours) / median(theirs)
    judged = None if ctx.mode is Mode.SMOKE else ratio >= min_ratio
    baseline = f"{median(theirs):,.1f} {baseline_unit or unit}"
    if baseline_label:
        baseline += f" ({baseline_label})"
    return Outcome(
        shown,
        baseline,
        ratio,
        judged,
        {"pooldrop": ours, "baseline": theirs, "ratios": pairs, **(values or {})},
        note,
    )
