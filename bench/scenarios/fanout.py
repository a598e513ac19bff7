"""``fanout``: 10,000 idle subscribers (WebSocket and SSE mixed) and one ``result.published``.

No nginx counterpart: the figures are the p99 delivery latency and the server's resident memory
per idle connection, each against an absolute target. The subscribers live in several client
processes (Python would not hold 10,000 sockets in one process at speed); their CPU time is
reported so the client's own cost is visible.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.api import CLAIM, EVENTS_SSE, RESULT_PUT, UPLOAD, WEBSOCKET
from bench.core import Context, Mode, Outcome, median
from bench.subscribers import DELIVERY_WAIT, Plan, child_main
from bench.wrk import LoadError

TARGET = "p99 delivery < 1 s; < 20 KB per idle connection"
MAX_P99_S = 1.0
MAX_KB_PER_CONN = 20.0
SETTLE_S = 2.0
CONNECT_WAIT = 600.0


def p99(latencies: list[float], missing: int) -> float:
    """The 99th percentile, counting a subscriber that never got the event as infinitely late."""
    values = sorted(latencies) + [math.inf] * missing
    if not values:
        return math.inf
    return values[max(0, math.ceil(0.99 * len(values)) - 1)]


def _recv(pipe: Connection, expected: str, timeout: float) -> dict[str, Any]:
    if not pipe.poll(timeout):
        raise LoadError(f"a client process sent no {expected!r} within {timeout:.0f}s")
    message = pipe.recv()
    if message[0] == "error":
        raise LoadError(f"a client process failed: {message[1]}")
    if message[0] != expected:
        raise LoadError(f"a client process said {message[0]!r}, expected {expected!r}")
    body: dict[str, Any] = message[1]
    return body


def run(ctx: Context) -> Outcome:
    ctx.require(UPLOAD, CLAIM, RESULT_PUT, EVENTS_SSE, WEBSOCKET)
    total = ctx.pick(10_000, 2_000, 40)
    processes = ctx.pick(4, 2, 1)
    n_keys = ctx.pick(50, 10, 2)
    pool = ctx.api.pool("fanout", allowed_lateness="1d")
    tokens = [pool.listener] + [
        ctx.api.key(pool.admin_token, pool.id, "listener") for _ in range(n_keys - 1)
    ]
    # One group per run, each in its own (past, still accepted) window.
    now = time.time()
    groups = [
        str(ctx.api.upload(pool, b"fanout input", ts=now - 3600 * k)["group_id"])
        for k in range(ctx.runs)
    ]
    rss_before = ctx.pooldrop.rss()

    spawn = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs = []
    per = total // processes
    for i in range(processes):
        count = per if i < processes - 1 else total - per * (processes - 1)
        plan = Plan(
            host="127.0.0.1",
            port=ctx.pooldrop.port,
            pool_id=pool.id,
            tokens=tokens[i::processes] or tokens,
            websockets=count // 2,
            sse=count - count // 2,
        )
        parent, child = spawn.Pipe()
        proc = spawn.Process(target=child_main, args=(plan, child), daemon=True)
        proc.start()
        child.close()
        pipes.append(parent)
        procs.append(proc)
    try:
        started = time.monotonic()
        connected = [_recv(p, "connected", CONNECT_WAIT) for p in pipes]
        connect_s = time.monotonic() - started
        ok = sum(c["ok"] for c in connected)
        failed = sum(c["failed"] for c in connected)
        if failed:
            errors = [e for c in connected for e in c["errors"]][:3]
            raise LoadError(f"{failed} of {total} subscribers could not connect: {errors}")
        time.sleep(ctx.pick(SETTLE_S, SETTLE_S, 0.2))
        kb_per_conn = (ctx.pooldrop.rss() - rss_before) / ok / 1024
        connect_cpu = sum(c["cpu"] for c in connected)

        p99s: list[float] = []
        worst_missing = 0
        delivery_cpu = 0.0
        for group_id in groups:
            lease = ctx.api.claim(pool, group_id)
            t0 = time.monotonic()
            ctx.api.put_result(pool, group_id, lease, b"fanout result")
            for p in pipes:
                p.send(("published", group_id, t0))
            reports = [_recv(p, "delivered", DELIVERY_WAIT + 30) for p in pipes]
            latencies = [x for r in reports for x in r["latencies"]]
            missing = sum(r["missing"] for r in reports)
            worst_missing = max(worst_missing, missing)
            p99s.append(p99(latencies, missing))
            delivery_cpu = sum(r["cpu"] for r in reports)
    finally:
        for p in pipes:
            with contextlib.suppress(OSError):
                p.send(("stop",))
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        for p in pipes:
            p.close()

    p99_s = median(p99s)
    judged = None if ctx.mode is Mode.SMOKE else p99_s < MAX_P99_S and kb_per_conn < MAX_KB_PER_CONN
    shown = (
        f"> {DELIVERY_WAIT:.0f} s ({worst_missing} of {ok} never got it)"
        if math.isinf(p99_s)
        else f"{p99_s * 1000:,.0f} ms"
    )
    return Outcome(
        pooldrop=f"p99 {shown}; {kb_per_conn:,.1f} KB/conn",
        baseline="— (no nginx counterpart)",
        ratio=None,
        passed=judged,
        values={
            "subscribers": ok,
            "p99_s": p99s,
            "kb_per_idle_connection": kb_per_conn,
            "missing_worst_run": worst_missing,
            "connect_seconds": connect_s,
            "client_processes": processes,
            "client_cpu_s_connect": connect_cpu,
            "client_cpu_s_total": delivery_cpu,
        },
        note=(
            f"{ok} subscribers in {processes} client processes, connected in {connect_s:.0f} s; "
            f"client CPU {delivery_cpu:.0f} s"
        ),
    )
