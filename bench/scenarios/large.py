"""``large``: one 100 MiB upload, sha256 verified and durable, against a DAV PUT to nginx."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from bench.api import UPLOAD, auth
from bench.core import Context, Outcome, paired_runs, ratio_outcome
from bench.wrk import LoadError, run_wrk

TARGET = ">= 0.35 x nginx MB/s"
MIN_RATIO = 0.35
MIB = 1024 * 1024


def _sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def run(ctx: Context) -> Outcome:
    ctx.require(UPLOAD)
    size = ctx.pick(100 * MIB, 100 * MIB, 4 * MIB)
    body = ctx.random_file(f"large-{size}.bin", size)
    digest = _sha256(body)
    pool = ctx.api.pool("large", max_file_size=2 * size)
    headers = {
        **auth(pool.contributor),
        "Content-Type": "application/octet-stream",
        "Content-Digest": f"sha-256=:{base64.b64encode(digest).decode()}:",
    }

    def ours(i: int) -> float:
        # ts and id are filled in here, so wrk sends one prebuilt request and times only that.
        path = (
            f"/api/v1/pools/{pool.id}/uploads?ts={int(time.time())}&name=large.bin"
            f"&client_upload_id=large-{ctx.api.nonce}-{i}"
        )
        r = run_wrk(ctx.pooldrop.url, method="POST", path=path, body=body, headers=headers, quota=1)
        if r.ok_responses != 1:
            raise LoadError(f"upload refused: {r.first_error}")
        upload = json.loads(r.last_body)
        if upload.get("sha256") != digest.hex() or upload.get("size") != size:
            raise LoadError(f"stored upload does not match what was sent: {r.last_body[:300]}")
        return size / r.seconds / 1e6

    def theirs(i: int) -> float:
        assert ctx.nginx is not None
        r = run_wrk(ctx.nginx.url, method="PUT", path=f"/dav/large-{i}.bin", body=body, quota=1)
        if r.ok_responses != 1:
            raise LoadError(f"nginx PUT failed: {r.first_error}")
        ctx.nginx.clear_dav()
        return size / r.seconds / 1e6

    stats: dict[str, Any] = {}
    p, n = paired_runs(ctx, ours, theirs if ctx.nginx else None, stats=stats)
    return ratio_outcome(
        ctx, p, n, unit="MB/s", min_ratio=MIN_RATIO, values={"bytes": size, **stats}
    )
