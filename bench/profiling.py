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
    """``site-packages/starlette/routing.py`` -> ``starlette``; the stdlib by module name."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/src/pooldrop/" in path:
        return "pooldrop." + path.split("/src/pooldrop/", 1)[1].split("/", 1)[0].removesuffix(".py")
    return "stdlib:" + path.rsplit("/", 1)[-1].removesuffix(".py")


def _name(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip(), "?"
    return f"{m['func']} ({_package(m['file'])})", _package(m["file"])


def summarise(collapsed: Path, top: int = 25) -> str:
    """A text report of a py-spy ``--format raw`` file."""
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        self_fn[frames[-1][0]] += count
        self_pkg[frames[-1][1]] += count
        for fn in {f[0] for f in frames}:
            incl_fn[fn] += count
    if not total:
        return "no samples\n"

    def block(title: str, counter: Counter[str]) -> list[str]:
        rows = [f"{title} ({total} samples)"]
        rows += [f"  {100 * n / total:5.1f}%  {k}" for k, n in counter.most_common(top)]
        return rows

    lines = [
        *block("self time by package", self_pkg),
        "",
        *block("self time by function", self_fn),
        "",
        *block("inclusive time by function", incl_fn),
    ]
    return "\n".join(lines) + "\n"


class Profiler:
    """py-spy attached to a running process until the ``with`` block ends."""

    def __init__(self, out_dir: Path, name: str, pid: int) -> None:
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
                "250",
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
    def maybe(out_dir: Path | None, name: str, pid: int) -> Iterator[None]:
        if out_dir is None:
            yield
            return
        profiler = Profiler(out_dir, name, pid)
        try:
            yield
        finally:
            profiler.finish()
