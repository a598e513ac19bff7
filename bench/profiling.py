"""``--profile DIR``: sample the pooldrop server with py-spy during a scenario, then summarise.

The summary lists where the server's active samples went: by function (self and inclusive) and by
package, in percent of all samples, which is what docs/BENCHMARKS.md quotes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _package(path: str) -> str:
    """``starlette/routing.py`` -> ``starlette``; ``pooldrop/api/x.py`` -> ``pooldrop.api``.

    py-spy names files relative to their ``sys.path`` entry; native frames have no ``.py``.
    """
    parts = path.split("/")
    if parts[0] == "pooldrop" and len(parts) > 2:
        return f"pooldrop.{parts[1]}"
    if not path.endswith(".py"):
        return f"native:{parts[-1]}"
    return parts[0].removesuffix(".py")


def _name(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip(), "?"
    return f"{m['func']} ({_package(m['file'])})", _package(m["file"])


# Leaf frames that mean "this thread is not running": what it waits on names the state.
_WAITS = {
    "epoll_pwait": "idle: event loop waiting for sockets",
    "epoll_wait": "idle: event loop waiting for sockets",
    "clock_nanosleep": "sleeping (e.g. SQLite busy handler)",
    "nanosleep": "sleeping (e.g. SQLite busy handler)",
    "pthread_cond_wait": "waiting on a lock / queue",
    "pthread_cond_timedwait": "waiting on a lock / queue",
    "sem_wait": "waiting on a lock / queue",
    "sem_timedwait": "waiting on a lock / queue",
    "sem_clockwait": "waiting on a lock / queue",
    "PyThread_acquire_lock_timed": "waiting on a lock / queue",
    "take_gil": "waiting for the GIL",
    "fsync": "blocked in fsync",
    "fdatasync": "blocked in fsync",
}


def _state(frames: list[str]) -> str:
    """What a sampled thread was doing: running, or which kind of wait (from native frames)."""
    for frame in reversed(frames[-4:]):
        func = frame.split(" (", 1)[0]
        if func in _WAITS:
            return _WAITS[func]
    return "running"


def _thread_kind(root: str) -> str:
    if "MainThread" in root:
        return "main thread (event loop)"
    if "_connection_worker_thread" in root:
        return "aiosqlite connection threads"
    if any(k in root for k in ("asyncio_", "uvloop_", "ThreadPoolExecutor", "AnyIO worker")):
        return "executor threads (to_thread)"
    return "other threads"


def summarise(collapsed: Path, top: int = 25) -> str:
    """A text report of a py-spy ``--format raw`` file (best with ``--threads``).

    Waiting samples (recognised from native leaf frames) are counted apart; the function tables
    cover running samples only, so their percentages are shares of the work done.
    """
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    states: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = running = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw = [f for f in stack.split(";") if f]
        if not raw:
            continue
        total += count
        root = raw[0] if raw[0].startswith("thread ") else "MainThread"
        state = _state(raw)
        states[state] += count
        threads[f"{_thread_kind(root)}: {state}"] += count
        if state != "running":
            continue
        running += count
        frames = [_name(f) for f in raw if not f.startswith("thread ")]
        self_fn[frames[-1][0]] += count
        self_pkg[frames[-1][1]] += count
        for fn in {f[0] for f in frames}:
            incl_fn[fn] += count
    if not total:
        return "no samples\n"

    def block(title: str, counter: Counter[str], base: int) -> list[str]:
        rows = [f"{title} ({base} samples)"]
        rows += [f"  {100 * n / base:5.1f}%  {k}" for k, n in counter.most_common(top)]
        return rows

    ours = Counter({k: v for k, v in incl_fn.items() if "(pooldrop" in k})
    lines = [
        *block("thread states, all samples", states, total),
        "",
        *block("by thread kind and state, all samples", threads, total),
        "",
        *block("running: self time by package", self_pkg, max(running, 1)),
        "",
        *block("running: self time by function", self_fn, max(running, 1)),
        "",
        *block("running: inclusive time by pooldrop function", ours, max(running, 1)),
    ]
    return "\n".join(lines) + "\n"


class Profiler:
    """py-spy attached to a running process until the ``with`` block ends."""

    def __init__(self, out_dir: Path, name: str, pid: int, native: bool = False) -> None:
        binary = shutil.which("py-spy")
        if binary is None:
            raise RuntimeError("--profile needs py-spy: pip install py-spy")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.raw = out_dir / f"{name}.txt"
        self.summary = out_dir / f"{name}-summary.txt"
        self.proc = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                # --gil: only the thread holding the GIL, what one Python process spends its core
                # on. --native adds C frames and thread states but slows the server a lot.
                *(["--threads", "--native"] if native else ["--gil"]),
                "--format",
                "raw",
                "--output",
                str(self.raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def finish(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.raw.exists():
            self.summary.write_text(summarise(self.raw))

    @staticmethod
    @contextlib.contextmanager
    def maybe(out_dir: Path | None, name: str, pid: int, native: bool = False) -> Iterator[None]:
        if out_dir is None:
            yield
            return
        profiler = Profiler(out_dir, name, pid, native)
        try:
            yield
        finally:
            profiler.finish()
