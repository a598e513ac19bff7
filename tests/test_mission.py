"""The whole mission, end to end, through HTTP and WebSocket only, as real clients would.

A pool with a one-minute window and 200 member keys (150 contributors, 50 listeners). 120
contributors upload into one window; 20 others were offline and send one batch each with files for
three windows. The window trigger fires; an aggregator claims the group, streams its archive,
checks every sha256 against the manifest and publishes a result. Every one of the 200 members gets
`result.published` (100 live over WebSocket or SSE, 100 catching up from cursor 0 afterwards) and
downloads identical bytes. A second aggregator that stops heartbeating has its group re-offered and
finished by another, with exactly one result per group.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from datetime import timedelta
from typing import Any

import httpx
import websockets

from tests.conftest import START
from tests.support.api import Api
from tests.support.server import LiveServer

CONTRIBUTORS, LISTENERS, ONLINE_UPLOADERS, OFFLINE_UPLOADERS = 150, 50, 120, 20


async def enrol(api: Api, token: str, names: list[str]) -> list[str]:
    limit = asyncio.Semaphore(20)

    async def one(name: str) -> str:
        async with limit:
            r = await api.anon.post("/api/v1/enroll", json={"token": token, "name": name})
            assert r.status_code == 201, r.text
            secret: str = r.json()["secret"]
            return secret

    return list(await asyncio.gather(*(one(n) for n in names)))


def batch_body(files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "mission-boundary-7f3a"
    manifest = [
        {"part": f"f{i}", "ts": ts, "name": name, "sha256": hashlib.sha256(data).hexdigest()}
        for i, (ts, name, data) in enumerate(files)
    ]
    out = io.BytesIO()
    out.write(
        f'--{boundary}\r\nContent-Disposition: form-data; name="manifest"\r\n'
        f"Content-Type: application/json\r\n\r\n{json.dumps(manifest)}\r\n".encode()
    )
    for i, (_, name, data) in enumerate(files):
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


async def listen_ws(
    url: str, secret: str, pool_id: str, got: asyncio.Queue[dict[str, Any]]
) -> None:
    ws_url = url.replace("http://", "ws://") + "/api/v1/ws"
    async with websockets.connect(
        ws_url, additional_headers={"Authorization": f"Bearer {secret}"}
    ) as ws:
        await ws.send(json.dumps({"op": "subscribe", "rid": "s", "pool_id": pool_id}))
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("op") == "event" and msg["event"]["type"] == "result.published":
                await got.put(msg["event"])
                return


async def listen_sse(
    client: httpx.AsyncClient, pool_id: str, got: asyncio.Queue[dict[str, Any]]
) -> None:
    async with client.stream("GET", f"/api/v1/pools/{pool_id}/events/stream") as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                if event["type"] == "result.published":
                    await got.put(event)
                    return


async def test_mission_end_to_end(api: Api, server: LiveServer) -> None:
    admin = await api.user()
    pool = await api.pool(admin, window="1m", allowed_lateness="5m", lease="1m", max_attempts=3)
    pid = pool["pool_id"]
    tokens = {}
    for role, uses in (("contributor", CONTRIBUTORS), ("listener", LISTENERS)):
        r = await admin.client.post(
            f"/api/v1/pools/{pid}/enrollments",
            json={"role": role, "max_uses": uses, "expires_in": "1h"},
        )
        tokens[role] = r.json()["token"]
    contributors = await enrol(
        api, tokens["contributor"], [f"app-{i}" for i in range(CONTRIBUTORS)]
    )
    listeners = await enrol(api, tokens["listener"], [f"screen-{i}" for i in range(LISTENERS)])
    members = contributors + listeners
    agg_a = await api.key(admin, pid, "aggregator", name="aggregator-a")
    agg_b = await api.key(admin, pid, "aggregator", name="aggregator-b")

    clients = {s: server.client(s) for s in members}
    try:
        # Half the members are live: WebSocket for even ones, SSE for odd ones.
        live: dict[str, asyncio.Queue[dict[str, Any]]] = {s: asyncio.Queue() for s in members[:100]}
        tasks = [
            asyncio.create_task(
                listen_ws(server.url, s, pid, q) if i % 2 == 0 else listen_sse(clients[s], pid, q)
            )
            for i, (s, q) in enumerate(live.items())
        ]

        # 120 contributors upload into window W = [12:00, 12:01).
        sent: dict[str, str] = {}  # sha256 -> name, everything that must be in W's manifest

        async def upload(i: int, secret: str) -> None:
            data = f"reading {i}".encode() * 50
            name = f"online-{i}.bin"
            r = await clients[secret].post(
                f"/api/v1/pools/{pid}/uploads",
                content=data,
                params={
                    "ts": (START + timedelta(seconds=i % 60)).isoformat(),
                    "name": name,
                    "client_upload_id": f"u{i}",
                },
            )
            assert r.status_code == 201, r.text
            sent[hashlib.sha256(data).hexdigest()] = name

        await asyncio.gather(*(upload(i, s) for i, s in enumerate(contributors[:ONLINE_UPLOADERS])))

        # 20 offline contributors come back with one batch each: files for W-2, W-1 and W.
        async def offline(j: int, secret: str) -> None:
            files = [
                (
                    (START + timedelta(minutes=m, seconds=30)).isoformat(),
                    f"offline-{j}-{m}.bin",
                    f"cached {j} {m}".encode() * 40,
                )
                for m in (-2, -1, 0)
            ]
            body, ctype = batch_body(files)
            r = await clients[secret].post(
                f"/api/v1/pools/{pid}/batches", content=body, headers={"Content-Type": ctype}
            )
            assert r.status_code == 200, r.text
            assert [x["status"] for x in r.json()["results"]] == ["stored"] * 3
            _, name, data = files[2]
            sent[hashlib.sha256(data).hexdigest()] = name

        offline_keys = contributors[ONLINE_UPLOADERS : ONLINE_UPLOADERS + OFFLINE_UPLOADERS]
        await asyncio.gather(*(offline(j, s) for j, s in enumerate(offline_keys)))

        # The window trigger fires with no request in flight: W-2, W-1 and W become ready.
        server.clock.advance(minutes=6, seconds=1)
        assert (await server.scheduler.run_once())["close_due_windows"] == 3
        groups = (await admin.client.get(f"/api/v1/pools/{pid}/groups?state=ready")).json()["items"]
        by_start = {g["window_start"]: g for g in groups}
        w = by_start["2026-03-02T12:00:00Z"]
        assert w["file_count"] == ONLINE_UPLOADERS + OFFLINE_UPLOADERS
        assert w["contributors"] == ONLINE_UPLOADERS + OFFLINE_UPLOADERS

        # Aggregator A takes W, streams its archive and checks every file against the manifest.
        lease = (
            await agg_a.client.post(f"/api/v1/pools/{pid}/groups/{w['group_id']}/claim")
        ).json()
        async with agg_a.client.stream(
            "GET",
            f"/api/v1/pools/{pid}/groups/{w['group_id']}/archive",
            params={"lease_id": lease["lease_id"]},
        ) as r:
            assert r.status_code == 200
            archive = io.BytesIO(b"".join([c async for c in r.aiter_bytes()]))
        with tarfile.open(fileobj=archive, mode="r|") as tar:
            manifest: dict[str, Any] = {}
            seen: dict[str, str] = {}
            for member in tar:
                content = tar.extractfile(member).read()  # type: ignore[union-attr]
                if member.name == "manifest.json":
                    manifest = json.loads(content)
                    continue
                seen[member.name] = hashlib.sha256(content).hexdigest()
        entries = {e["path"]: e for e in manifest["uploads"]}
        assert len(entries) == len(seen) == ONLINE_UPLOADERS + OFFLINE_UPLOADERS
        assert {p: e["sha256"] for p, e in entries.items()} == seen
        assert {e["sha256"]: e["name"] for e in entries.values()} == sent
        result_bytes = b"mean of 140 files\n" * 1000
        r = await agg_a.client.put(
            f"/api/v1/pools/{pid}/groups/{w['group_id']}/result",
            params={"lease_id": lease["lease_id"], "name": "mean.bin"},
            content=result_bytes,
        )
        assert r.status_code == 201, r.text
        result = r.json()

        # Every live member hears of it...
        got = await asyncio.wait_for(asyncio.gather(*(q.get() for q in live.values())), 30)
        assert all(e["data"]["result_id"] == result["result_id"] for e in got)
        # ...and every member who was away catches up from an old cursor.
        for secret in members[100:]:
            r = await clients[secret].get(
                f"/api/v1/pools/{pid}/events", params={"after": 0, "limit": 1000}
            )
            published = [e for e in r.json()["events"] if e["type"] == "result.published"]
            assert [e["data"]["result_id"] for e in published] == [result["result_id"]]

        # All 200 download identical bytes.
        async def fetch(secret: str) -> bytes:
            resp = await clients[secret].get(result["url"])
            assert resp.status_code == 200
            return resp.content

        bodies = await asyncio.gather(*(fetch(s) for s in members))
        assert all(b == result_bytes for b in bodies)

        # Aggregator B claims W-1 and crashes (no heartbeat): the lease runs out, the group is
        # re-offered, and A finishes it. Exactly one result per group.
        w1 = by_start["2026-03-02T11:59:00Z"]
        crashed = (
            await agg_b.client.post(f"/api/v1/pools/{pid}/groups/{w1['group_id']}/claim")
        ).json()
        server.clock.advance(minutes=1, seconds=1)
        assert (await server.scheduler.run_once())["expire_leases"] == 1
        done = []
        while True:
            r = await agg_a.client.post(f"/api/v1/pools/{pid}/groups/claim")
            if r.status_code == 204:
                break
            claim = r.json()
            gid = claim["group"]["group_id"]
            put = await agg_a.client.put(
                f"/api/v1/pools/{pid}/groups/{gid}/result",
                params={"lease_id": claim["lease_id"], "name": "r.bin"},
                content=f"result of {gid}".encode(),
            )
            assert put.status_code == 201, put.text
            done.append(gid)
        assert sorted(done) == sorted(
            [w1["group_id"], by_start["2026-03-02T11:58:00Z"]["group_id"]]
        )
        late = await agg_b.client.put(
            f"/api/v1/pools/{pid}/groups/{w1['group_id']}/result",
            params={"lease_id": crashed["lease_id"], "name": "late.bin"},
            content=b"too late",
        )
        assert late.status_code == 409 and late.json()["code"] == "lease_lost"
        results = (
            await admin.client.get(f"/api/v1/pools/{pid}/results", params={"limit": 100})
        ).json()
        per_group = [x["group_id"] for x in results["items"]]
        assert sorted(per_group) == sorted({g["group_id"] for g in groups})
        final = {
            g["group_id"]: g
            for g in (await admin.client.get(f"/api/v1/pools/{pid}/groups")).json()["items"]
        }
        assert final[w1["group_id"]]["attempts"] == 2
        assert all(final[g["group_id"]]["state"] == "done" for g in groups)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.aclose() for c in clients.values()))
