"""The aggregator runner against a live server: claim, unpack, compute, publish, release."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from pooldrop.client import (
    Aggregator,
    Client,
    CommandHandler,
    Job,
    JobFailed,
    LeaseLost,
)
from tests.client.support import in_thread
from tests.conftest import START
from tests.support.api import Api
from tests.support.server import LiveServer

TS = START + timedelta(seconds=5)


async def ready_group(
    api: Api, server: LiveServer, arrays: list[list[float]]
) -> tuple[str, str, str]:
    """A pool with one ready group holding ``arrays`` as JSON files; (pool, aggregator key,
    admin token)."""
    admin = await api.user()
    pool = (await api.pool(admin, window="1m", allowed_lateness="1h", lease="30s"))["pool_id"]
    agg = await api.key(admin, pool, "aggregator", name="agg")
    for i, values in enumerate(arrays):
        app = await api.key(admin, pool, "contributor", name=f"app{i}")
        r = await app.client.post(
            f"/api/v1/pools/{pool}/uploads",
            params={"ts": (TS + timedelta(seconds=i)).isoformat(), "name": f"a{i}.json"},
            content=json.dumps(values).encode(),
        )
        assert r.status_code == 201, r.text
    groups = (await admin.client.get(f"/api/v1/pools/{pool}/groups")).json()["items"]
    assert len(groups) == 1
    r = await admin.client.post(f"/api/v1/pools/{pool}/groups/{groups[0]['group_id']}/close")
    assert r.status_code == 200 and r.json()["state"] == "ready"
    return pool, agg.token, admin.token


def mean(job: Job) -> None:
    arrays = [json.loads(p.read_text()) for p in job.inputs]
    job.output.write_text(json.dumps([sum(col) / len(col) for col in zip(*arrays, strict=True)]))


async def test_python_handler_publishes_the_mean(
    api: Api, server: LiveServer, tmp_path: Path
) -> None:
    pool, key, _ = await ready_group(api, server, [[1, 2], [3, 4], [5, 12]])

    def scenario() -> None:
        with Client(server.url, api_key=key) as c:
            seen: list[Job] = []

            def handler(job: Job) -> None:
                seen.append(job)
                assert [u["name"] for u in job.manifest["uploads"]] == [
                    "a0.json",
                    "a1.json",
                    "a2.json",
                ]
                assert job.manifest_path.is_file() and job.input_dir in job.inputs[0].parents
                mean(job)

            agg = Aggregator(c, pool, handler, result_name="mean.json", wait=0)
            result = agg.run_once()
            assert result is not None and result.name == "mean.json"
            assert not seen[0].workdir.exists()  # the temporary files are gone
            assert c.get_group(pool, result.group_id).state == "done"
            out = c.download_result(result, tmp_path / "mean.json")
            assert json.loads(out.read_text()) == [3.0, 6.0]
            assert c.latest_result(pool).result_id == result.result_id
            assert agg.run_once(wait=0) is None  # nothing left

    await in_thread(scenario)


async def test_command_handler_and_failure_releases(api: Api, server: LiveServer) -> None:
    pool, key, _ = await ready_group(api, server, [[1], [2]])

    def scenario() -> None:
        with Client(server.url, api_key=key) as c:
            failing = Aggregator(c, pool, CommandHandler("exit 3"), wait=0)
            with pytest.raises(JobFailed, match="status 3"):
                failing.run_once()
            group = c.list_groups(pool).items[0]
            assert group.state == "ready" and group.attempts == 1  # released, retried later
            cat = CommandHandler("cat {inputs} > {output} && echo ' {group_id}' >> {output}")
            result = Aggregator(c, pool, cat, wait=0, result_name="cat.txt").run_once()
            assert result is not None
            body = c.http.get(
                f"/api/v1/pools/{pool}/results/{result.result_id}/content",
                headers=c.auth_headers,
            ).text
            assert body == f"[1][2] {group.group_id}\n"

    await in_thread(scenario)


async def test_lost_lease_uploads_nothing(api: Api, server: LiveServer) -> None:
    pool, key, _ = await ready_group(api, server, [[1]])
    started = threading.Event()

    def handler(job: Job) -> None:
        started.set()
        assert job.lease_lost.wait(20), "the heartbeat never noticed the lost lease"
        job.output.write_text("too late")

    def scenario() -> None:
        with Client(server.url, api_key=key) as c:
            agg = Aggregator(c, pool, handler, wait=0, heartbeat_every=0.05)
            with pytest.raises(LeaseLost):
                agg.run_once()
            assert c.list_results(pool).items == []

    task = asyncio.create_task(in_thread(scenario))
    assert await asyncio.to_thread(started.wait, 20)
    server.clock.advance(seconds=31)  # past the 30 s lease, with no heartbeat able to save it
    await task
