"""Run ``wrk`` with the shared Lua script and read back what it measured."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import NGINX_INSTALL_HINT

LUA_SCRIPT = Path(__file__).parent / "lua" / "load.lua"


class LoadError(RuntimeError):
    """wrk failed, or the server answered with errors."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. ``seconds`` is first request to last counted response when a quota was set."""

    requests: int
    bytes: int
    seconds: float
    statuses: dict[int, int]
    errors: dict[str, int]
    latency_p50_ms: float
    latency_p99_ms: float
    first_error: str
    last_body: str
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok_responses(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise LoadError(f"wrk is not installed; install it with: {NGINX_INSTALL_HINT}")
    return found


def run_wrk(
    url: str,
    *,
    method: str = "GET",
    path: str = "/",
    body: Path | None = None,
    headers: dict[str, str] | None = None,
    connections: int = 1,
    threads: int = 1,
    quota: int = 0,
    duration: float = 900.0,
    timeout: float = 120.0,
    unique: bool = False,
    run_id: str = "r",
) -> WrkResult:
    """Run wrk against ``url``.

    With ``quota`` > 0 (one thread only) the run ends after that many responses, or fails after
    ``duration`` seconds (a generous cap: a slow server should be measured, not cut off). With
    ``quota`` = 0 it runs for ``duration`` seconds and counts bytes.
    """
    if quota and threads != 1:
        raise ValueError("a quota needs threads=1 (each wrk thread counts on its own)")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        out = Path(tmp) / "result.json"
        args = [
            f"method={method}",
            f"path={path}",
            f"body={body or ''}",
            f"quota={quota}",
            f"unique={int(unique)}",
            f"run={run_id}",
            f"out={out}",
        ]
        args += [f"header={k}: {v}" for k, v in (headers or {}).items()]
        argv = [
            wrk_binary(),
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"--timeout={max(1, round(timeout))}s",
            "-s",
            str(LUA_SCRIPT),
            url,
            "--",
            *args,
        ]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + timeout + 60, check=False
        )
        if proc.returncode != 0 or not out.exists():
            raise LoadError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        doc = json.loads(out.read_text())
    elapsed_ns = float(doc["elapsed_ns"])
    if quota:
        if doc["responses"] < quota:
            raise LoadError(
                f"only {doc['responses']} of {quota} responses within {duration:.0f}s "
                f"(errors {doc['errors']}, first error: {doc['first_error'][:300]})"
            )
        seconds, count = elapsed_ns / 1e9, quota
    else:
        seconds, count = doc["duration_us"] / 1e6, doc["requests"]
    return WrkResult(
        requests=count,
        bytes=int(doc["bytes"]),
        seconds=seconds,
        statuses={int(k): int(v) for k, v in doc["statuses"].items()},
        errors={k: int(v) for k, v in doc["errors"].items()},
        latency_p50_ms=doc["latency_p50_us"] / 1000,
        latency_p99_ms=doc["latency_p99_us"] / 1000,
        first_error=doc["first_error"],
        last_body=doc["last_body"],
    )
