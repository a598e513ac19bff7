"""Two `pooldrop serve` processes sharing PostgreSQL, S3 and a bus (Redis, then RabbitMQ).

What one node does, the other's clients see; claims through both never collide; the scheduler
running on both changes each thing exactly once; a tus upload started on one resumes on the other.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import BUS_URLS, S3_BUCKET
from tests.support.databases import PostgresTemplates
from tests.support.s3server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, s3_url
from tests.uploads.test_memory import free_port

T = TypeVar("T")


@dataclass
class Cluster:
    urls: list[str]
    procs: list[subprocess.Popen[bytes]]


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node {url} exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"node {url} did not become ready")


def _in_thread(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# One cluster per bus for the whole module: starting nodes is the slow part.
@pytest.fixture(scope="module", params=["redis", "amqp"])
def cluster(
    request: pytest.FixtureRequest,
    pg_templates: PostgresTemplates,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    tmp_path = tmp_path_factory.mktemp("cluster")
    name, db_url = _in_thread(pg_templates.fresh())
    env = {
        **os.environ,
        "POOLDROP_DATABASE_URL": db_url,
        "POOLDROP_STORAGE_URL": s3_url(s3_endpoint, S3_BUCKET, f"c{os.getpid()}{time.time_ns()}"),
        "POOLDROP_BUS_URL": BUS_URLS[request.param],
        "POOLDROP_SECRET_KEY": "cluster-test-secret-key-of-enough-length",
        "POOLDROP_SCHEDULER_INTERVAL": "0.2",
        "POOLDROP_PASSWORD_TIME_COST": "1",
        "POOLDROP_PASSWORD_MEMORY_KIB": "1024",
        "POOLDROP_LOG_LEVEL": "warning",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }
    procs, urls = [], []
    for i in range(2):
        port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pooldrop",
                    "serve",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(tmp_path / f"node{i}"),
                ],
                env=env,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url, proc in zip(urls, procs, strict=True):
            _wait_ready(url, proc)
        yield Cluster(urls=urls, procs=procs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
        _in_thread(pg_templates.drop(name))


@dataclass
class World:
    a: httpx.AsyncClient  # admin on node A
    b: httpx.AsyncClient  # admin on node B
    pool_id: str
    contributor_secret: str
    aggregator_secret: str


@pytest.fixture
async def world(cluster: Cluster) -> AsyncIterator[World]:
    a = httpx.AsyncClient(base_url=cluster.urls[0], timeout=30)
    b = httpx.AsyncClient(base_url=cluster.urls[1], timeout=30)
    try:
        user = f"admin{time.time_ns()}"
        r = await a.post(
            "/api/v1/auth/signup", json={"username": user, "password": "admin-password"}
        )
        token = r.json()["access_token"]
        for c in (a, b):
            c.headers["Authorization"] = f"Bearer {token}"
        pool = (
            await b.post(
                "/api/v1/pools",
                json={"name": "p", "window": "1h", "lease": "2s", "max_attempts": 5},
            )
        ).json()
        contributor = (
            await a.post(
                f"/api/v1/pools/{pool['pool_id']}/keys", json={"name": "c", "role": "contributor"}
            )
        ).json()["secret"]
        aggregator = (
            await b.post(
                f"/api/v1/pools/{pool['pool_id']}/keys", json={"name": "g", "role": "aggregator"}
            )
        ).json()["secret"]
        yield World(a, b, pool["pool_id"], contributor, aggregator)
    finally:
        await a.aclose()
        await b.aclose()


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def _upload(
    c: httpx.AsyncClient, w: World, ts: datetime, body: bytes = b"data"
) -> dict[str, Any]:
    r = await c.post(
        f"/api/v1/pools/{w.pool_id}/uploads",
        params={"ts": ts.isoformat(), "name": "f.bin"},
        content=body,
        headers=_auth(w.contributor_secret),
    )
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def _events(c: httpx.AsyncClient, pool_id: str) -> list[dict[str, Any]]:
    r = await c.get(f"/api/v1/pools/{pool_id}/events", params={"after": 0, "limit": 1000})
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


async def test_result_published_on_b_reaches_sse_client_on_a(world: World) -> None:
    now = datetime.now(UTC)
    await _upload(world.a, world, now)
    received: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()

    async def listen() -> None:
        async with world.a.stream(
            "GET", f"/api/v1/pools/{world.pool_id}/events/stream", params={"after": 0}
        ) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    await received.put((time.monotonic(), event))

    listener = asyncio.create_task(listen())
    try:
        # Drain the backlog so only the result's event is timed.
        first = await asyncio.wait_for(received.get(), 10)
        assert first[1]["type"] == "upload.stored"
        agg = _auth(world.aggregator_secret)
        groups = (await world.b.get(f"/api/v1/pools/{world.pool_id}/groups")).json()["items"]
        gid = groups[0]["group_id"]
        lease = (
            await world.b.post(f"/api/v1/pools/{world.pool_id}/groups/{gid}/claim", headers=agg)
        ).json()
        while True:  # group.ready and group.claimed arrive on A too
            _, ev = await asyncio.wait_for(received.get(), 10)
            if ev["type"] == "group.claimed":
                break
        r = await world.b.put(
            f"/api/v1/pools/{world.pool_id}/groups/{gid}/result",
            params={"lease_id": lease["lease_id"], "name": "result.bin"},
            content=b"the result",
            headers=agg,
        )
        assert r.status_code == 201, r.text
        published_at = time.monotonic()
        arrived, ev = await asyncio.wait_for(received.get(), 10)
        assert ev["type"] == "result.published"
        assert arrived - published_at < 1.0, f"took {arrived - published_at:.3f}s"
        content = await world.a.get(ev["data"]["url"])
        assert content.content == b"the result"
    finally:
        listener.cancel()


async def test_claims_through_both_nodes_never_collide(world: World) -> None:
    r = await world.a.patch(f"/api/v1/pools/{world.pool_id}", json={"allowed_lateness": "1d"})
    assert r.status_code == 200
    base = datetime.now(UTC) - timedelta(hours=5)
    for i in range(6):
        await _upload(
            world.a if i % 2 else world.b, world, base + timedelta(hours=i % 3, minutes=i)
        )
    groups = (await world.a.get(f"/api/v1/pools/{world.pool_id}/groups")).json()["items"]
    for g in groups:
        r = await world.a.post(f"/api/v1/pools/{world.pool_id}/groups/{g['group_id']}/close")
        assert r.status_code == 200, r.text
    agg = _auth(world.aggregator_secret)
    clients = [
        httpx.AsyncClient(
            base_url=str((world.a if i % 2 else world.b).base_url), timeout=30, headers=agg
        )
        for i in range(12)
    ]
    try:
        answers = await asyncio.gather(
            *(c.post(f"/api/v1/pools/{world.pool_id}/groups/claim") for c in clients)
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    claimed = [r.json()["group"]["group_id"] for r in answers if r.status_code == 200]
    assert sorted(claimed) == sorted(g["group_id"] for g in groups)
    assert [r.status_code for r in answers].count(204) == 12 - len(groups)


async def test_both_schedulers_fire_each_trigger_and_expiry_once(world: World) -> None:
    # A window that closes a few seconds from now: both nodes' schedulers race for it.
    now = datetime.now(UTC)
    ts = now - timedelta(hours=1, seconds=1)
    window_end = ts.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    lateness = (now + timedelta(seconds=3) - window_end).total_seconds()
    r = await world.a.patch(
        f"/api/v1/pools/{world.pool_id}", json={"allowed_lateness": f"{lateness:.3f}s"}
    )
    assert r.status_code == 200, r.text
    await _upload(world.b, world, ts)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        types = [e["type"] for e in await _events(world.a, world.pool_id)]
        if "group.ready" in types:
            break
        await asyncio.sleep(0.2)
    # Claim it without heartbeats: the 2 s lease expires, once, whichever node notices.
    agg = _auth(world.aggregator_secret)
    r = await world.b.post(f"/api/v1/pools/{world.pool_id}/groups/claim", headers=agg)
    assert r.status_code == 200, r.text
    await asyncio.sleep(4)
    types = [e["type"] for e in await _events(world.b, world.pool_id)]
    assert types.count("group.ready") == 1, types
    assert types.count("group.lease_expired") == 1, types
    group = (await world.a.get(f"/api/v1/pools/{world.pool_id}/groups")).json()["items"][0]
    assert group["state"] == "ready" and group["attempts"] == 1


def _tus_metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


async def test_tus_started_on_a_resumes_on_b(world: World) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    half = len(data) // 2
    tus = {"Tus-Resumable": "1.0.0", **_auth(world.contributor_secret)}
    created = await world.a.post(
        "/api/v1/tus/",
        headers={
            **tus,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": _tus_metadata(
                pool_id=world.pool_id, ts=datetime.now(UTC).isoformat(), filename="big.bin"
            ),
        },
    )
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    path = httpx.URL(location).path if location.startswith("http") else location
    first = await world.a.patch(
        path,
        content=data[:half],
        headers={**tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert first.status_code == 204, first.text
    head = await world.b.head(path, headers=tus)
    assert head.status_code == 200 and int(head.headers["Upload-Offset"]) == half
    rest = await world.b.patch(
        path,
        content=data[half:],
        headers={
            **tus,
            "Upload-Offset": str(half),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert rest.status_code == 204, rest.text
    upload_id = rest.headers["Pooldrop-Upload-Id"]
    got = await world.a.get(f"/api/v1/pools/{world.pool_id}/uploads/{upload_id}/content")
    assert got.status_code == 200 and got.content == data


async def test_revoking_on_a_ends_a_key_cached_on_b_at_once(world: World) -> None:
    """Nodes cache keys and pools for a few seconds; a change through one node reaches the
    others' caches over the bus, well before the cache's TTL."""
    now = datetime.now(UTC)
    await _upload(world.b, world, now)  # B has now cached the contributor key and the pool
    key_id = next(
        k["key_id"]
        for k in (await world.a.get(f"/api/v1/pools/{world.pool_id}/keys")).json()["items"]
        if k["name"] == "c"
    )
    started = time.monotonic()
    revoked = await world.a.delete(f"/api/v1/pools/{world.pool_id}/keys/{key_id}")
    assert revoked.status_code == 204, revoked.text
    while True:
        r = await world.b.post(
            f"/api/v1/pools/{world.pool_id}/uploads",
            params={"ts": now.isoformat(), "name": "f.bin"},
            content=b"after revoke",
            headers=_auth(world.contributor_secret),
        )
        if r.status_code == 401:
            break
        assert r.status_code == 201, r.text
        assert time.monotonic() - started < 1.0, "B kept accepting a key revoked on A"
        await asyncio.sleep(0.02)
    # A pool change through B applies on A at once: A had the pool cached with a larger limit.
    fresh = (
        await world.a.post(
            f"/api/v1/pools/{world.pool_id}/keys", json={"name": "c2", "role": "contributor"}
        )
    ).json()["secret"]
    w2 = World(world.a, world.b, world.pool_id, fresh, world.aggregator_secret)
    await _upload(world.a, w2, now, b"x" * 100)
    patched = await world.b.patch(f"/api/v1/pools/{world.pool_id}", json={"max_file_size": 10})
    assert patched.status_code == 200, patched.text
    started = time.monotonic()
    while True:
        r = await world.a.post(
            f"/api/v1/pools/{world.pool_id}/uploads",
            params={"ts": now.isoformat(), "name": "f.bin"},
            content=b"x" * 100,
            headers=_auth(fresh),
        )
        if r.status_code == 413:
            break
        assert r.status_code == 201, r.text
        assert time.monotonic() - started < 1.0, "A kept the pool's old size limit"
        await asyncio.sleep(0.02)
