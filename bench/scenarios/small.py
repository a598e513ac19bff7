"""``small``: 500 KB uploads from 16 keep-alive clients, against DAV PUTs to nginx.

``small-pg`` is the same load on a pooldrop backed by a fresh PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any

from bench import postgres
from bench.api import UPLOAD, BenchApi, auth
from bench.core import Context, Outcome, median, paired_runs, ratio_outcome
from bench.servers import PooldropServer
from bench.wrk import LoadError, WrkResult, run_wrk

TARGET = ">= 0.6 x nginx req/s"
TARGET_PG = ">= 0.5 x nginx req/s"
MIN_RATIO = 0.6
MIN_RATIO_PG = 0.5
SIZE = 500 * 1000


def _sizes(ctx: Context) -> tuple[int, int]:
    """(requests, connections) for the mode."""
    return ctx.pick((2000, 16), (500, 16), (20, 4))


def _checked(r: WrkResult, quota: int, who: str) -> float:
    if r.ok_responses < quota:
        raise LoadError(f"{who}: {quota - r.ok_responses} of {quota} failed: {r.first_error}")
    return r.req_per_s


def nginx_small(ctx: Context, body: Path, i: int) -> float:
    """nginx req/s for DAV PUTs of ``body`` with the `small` load (clears the folder after)."""
    assert ctx.nginx is not None
    quota, conns = _sizes(ctx)
    r = run_wrk(
        ctx.nginx.url,
        method="PUT",
        path="/dav/{n}.bin",
        body=body,
        connections=conns,
        quota=quota,
        run_id=f"n{i}-{secrets.token_hex(3)}",
    )
    ctx.nginx.clear_dav()
    return _checked(r, quota, "nginx")


def _pooldrop_small(
    ctx: Context, api: BenchApi, srv: PooldropServer, label: str, stats: dict[str, Any]
) -> tuple[list[float], list[float]]:
    quota, conns = _sizes(ctx)
    body = ctx.random_file("small.bin", SIZE)
    pool = api.pool(label)
    headers = {**auth(pool.contributor), "Content-Type": "application/octet-stream"}

    def ours(i: int) -> float:
        # {n} is a per-request id from the script's counter, {now} the send time (a long run
        # crossing the hour still lands in an open window).
        r = run_wrk(
            srv.url,
            method="POST",
            path=f"/api/v1/pools/{pool.id}/uploads?ts={{now}}&name=s.bin&client_upload_id={{n}}",
            body=body,
            headers=headers,
            connections=conns,
            quota=quota,
            run_id=f"{label}{i}-{api.nonce}",
        )
        return _checked(r, quota, "pooldrop")

    baseline = (lambda i: nginx_small(ctx, body, i)) if ctx.nginx else None
    return paired_runs(ctx, ours, baseline, server_pid=srv.pid, stats=stats)


def run(ctx: Context) -> Outcome:
    ctx.require(UPLOAD)
    quota, conns = _sizes(ctx)
    stats: dict[str, Any] = {}
    p, n = _pooldrop_small(ctx, ctx.api, ctx.pooldrop, "small", stats)
    if n:
        ctx.shared["nginx_small_rps"] = median(n)
    return ratio_outcome(
        ctx,
        p,
        n,
        unit="req/s",
        min_ratio=MIN_RATIO,
        values={"requests": quota, "connections": conns, "bytes": SIZE, **stats},
    )


def run_pg(ctx: Context) -> Outcome:
    ctx.require(UPLOAD)
    quota, conns = _sizes(ctx)
    stats: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        srv = ctx.pg_server
        if srv is None:
            url = stack.enter_context(postgres.fresh_database())
            srv = stack.enter_context(PooldropServer(ctx.work / "pooldrop-pg", url))
        srv.wait_ready()
        api = BenchApi(srv.url)
        stack.callback(api.close)
        p, n = _pooldrop_small(ctx, api, srv, "smallpg", stats)
    return ratio_outcome(
        ctx,
        p,
        n,
        unit="req/s",
        min_ratio=MIN_RATIO_PG,
        values={"requests": quota, "connections": conns, "bytes": SIZE, **stats},
    )
