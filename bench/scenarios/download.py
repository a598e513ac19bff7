"""``download``: 1,000 concurrent clients fetch a 20 MB result, against nginx static + sendfile."""

from __future__ import annotations

import hashlib
import shutil
from typing import Any

import httpx

from bench.api import CLAIM, RESULT_CONTENT, RESULT_PUT, UPLOAD, auth
from bench.core import Context, Outcome, paired_runs, ratio_outcome
from bench.wrk import LoadError, WrkResult, run_wrk

TARGET = ">= 0.5 x nginx static MB/s"
MIN_RATIO = 0.5
SIZE = 20 * 1000 * 1000


def _mb_per_s(r: WrkResult, who: str) -> float:
    bad = {k: v for k, v in r.errors.items() if v}
    if bad:
        raise LoadError(f"{who}: errors during the download run: {bad}")
    return r.mb_per_s


def run(ctx: Context) -> Outcome:
    ctx.require(UPLOAD, CLAIM, RESULT_PUT, RESULT_CONTENT)
    size = ctx.pick(SIZE, SIZE, 1_000_000)
    clients = ctx.pick(1000, 1000, 20)
    seconds = ctx.pick(15.0, 5.0, 1.0)
    threads = 1 if ctx.mode == "smoke" else 2
    data = ctx.random_file(f"result-{size}.bin", size).read_bytes()
    pool = ctx.api.pool("download", max_file_size=2 * size)
    group_id = str(ctx.api.upload(pool, b"input of the group")["group_id"])
    lease = ctx.api.claim(pool, group_id)
    result = ctx.api.put_result(pool, group_id, lease, data)
    path = f"/api/v1/pools/{pool.id}/results/{result['result_id']}/content"
    # One plain fetch first: the timed runs only count bytes, so check them once here.
    with httpx.Client(base_url=ctx.pooldrop.url, headers=auth(pool.listener), timeout=60) as c:
        got = c.get(path)
    if (
        got.status_code != 200
        or hashlib.sha256(got.content).digest() != hashlib.sha256(data).digest()
    ):
        raise LoadError(f"result content does not match ({got.status_code}): {got.text[:200]}")
    if ctx.nginx is not None:
        shutil.copyfile(ctx.work / "files" / f"result-{size}.bin", ctx.nginx.static_dir / "r.bin")

    def ours(i: int) -> float:
        r = run_wrk(
            ctx.pooldrop.url,
            path=path,
            headers=auth(pool.listener),
            connections=clients,
            threads=threads,
            duration=seconds,
            timeout=60,
        )
        return _mb_per_s(r, "pooldrop")

    def theirs(i: int) -> float:
        assert ctx.nginx is not None
        r = run_wrk(
            ctx.nginx.url,
            path="/static/r.bin",
            connections=clients,
            threads=threads,
            duration=seconds,
            timeout=60,
        )
        return _mb_per_s(r, "nginx")

    stats: dict[str, Any] = {}
    p, n = paired_runs(ctx, ours, theirs if ctx.nginx else None, stats=stats)
    return ratio_outcome(
        ctx,
        p,
        n,
        unit="MB/s",
        min_ratio=MIN_RATIO,
        values={"bytes": size, "clients": clients, "seconds": seconds, **stats},
    )
