"""``batch``: one multipart batch of 200 x 200 KB files, in files/s.

Compared with nginx's req/s in `small` (DAV PUTs of 500 KB), as the target is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from bench.api import BATCH, auth
from bench.core import Context, Outcome, median, paired_runs, ratio_outcome
from bench.scenarios.small import SIZE as SMALL_SIZE
from bench.scenarios.small import nginx_small
from bench.wrk import LoadError, run_wrk

TARGET = ">= 0.5 x nginx req/s of `small`, in files/s"
MIN_RATIO = 0.5
FILE_SIZE = 200 * 1000


def write_batch(path: Path, files: list[bytes], run_tag: str, ts: int) -> str:
    """Write a batch request body to ``path``; returns its multipart boundary."""
    boundary = f"bench{secrets.token_hex(12)}"
    manifest = [
        {
            "part": f"f{i}",
            "ts": ts,
            "name": f"b{i}.bin",
            "client_upload_id": f"{run_tag}-{i}",
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for i, data in enumerate(files)
    ]
    with path.open("wb") as f:
        f.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="manifest"\r\n'
            f"Content-Type: application/json\r\n\r\n".encode()
        )
        f.write(json.dumps(manifest).encode() + b"\r\n")
        for i, data in enumerate(files):
            f.write(
                f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"; '
                f'filename="b{i}.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            )
            f.write(data + b"\r\n")
        f.write(f"--{boundary}--\r\n".encode())
    return boundary


def run(ctx: Context) -> Outcome:
    ctx.require(BATCH)
    count = ctx.pick(200, 200, 10)
    files = [os.urandom(FILE_SIZE) for _ in range(count)]
    pool = ctx.api.pool("batch")
    body = ctx.work / "files" / "batch.multipart"
    body.parent.mkdir(parents=True, exist_ok=True)

    def ours(i: int) -> float:
        boundary = write_batch(body, files, f"batch{i}-{ctx.api.nonce}", int(time.time()))
        headers = {
            **auth(pool.contributor),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        }
        r = run_wrk(
            ctx.pooldrop.url,
            method="POST",
            path=f"/api/v1/pools/{pool.id}/batches",
            body=body,
            headers=headers,
            quota=1,
        )
        if r.ok_responses != 1:
            raise LoadError(f"batch refused: {r.first_error}")
        results = json.loads(r.last_body)["results"]
        stored = sum(1 for x in results if x.get("status") == "stored")
        if stored != count:
            bad = next((x for x in results if x.get("status") != "stored"), None)
            raise LoadError(f"{count - stored} of {count} files not stored, e.g. {bad}")
        return count / r.seconds

    baseline: list[float] = []
    if ctx.nginx is not None and "nginx_small_rps" not in ctx.shared:
        small_body = ctx.random_file("small.bin", SMALL_SIZE)
        baseline = [nginx_small(ctx, small_body, i) for i in range(ctx.runs)]
        ctx.shared["nginx_small_rps"] = median(baseline)
    stats: dict[str, Any] = {}
    p, _ = paired_runs(ctx, ours, None, stats=stats)
    theirs = [ctx.shared["nginx_small_rps"]] * len(p) if ctx.nginx is not None else []
    return ratio_outcome(
        ctx,
        p,
        theirs,
        unit="files/s",
        min_ratio=MIN_RATIO,
        baseline_label="nginx `small`",
        baseline_unit="req/s",
        values={"files": count, "file_bytes": FILE_SIZE, "nginx_small_runs": baseline, **stats},
    )
