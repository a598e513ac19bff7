"""Real concurrency: many aggregators and several scheduler nodes racing on the same rows."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pooldrop.services import claims
from tests.conftest import START
from tests.groups.conftest import Work
from tests.support.api import Api
from tests.support.server import LiveServer

GROUPS = 10
AGGREGATORS = 20


async def ready_groups(work: Work, count: int) -> list[str]:
    ids = []
    for i in range(count):
        gid = (await work.upload(b"x", START - timedelta(minutes=i)))["group_id"]
        await work.close(gid)
        ids.append(gid)
    return ids


async def test_twenty_aggregators_claim_ten_groups_each_once(
    api: Api, work: Work, server: LiveServer
) -> None:
    ids = await ready_groups(work, GROUPS)
    # Each key is its own principal with its own HTTP client (its own connection).
    aggregators = [
        await api.key(work.admin, work.pool_id, "aggregator", name=f"agg{i}")
        for i in range(AGGREGATORS)
    ]
    answers = await asyncio.gather(*(work.claim_next(who=a) for a in aggregators))

    won = [(a, r.json()) for a, r in zip(aggregators, answers, strict=True) if r.status_code == 200]
    assert sorted(r.status_code for r in answers) == [200] * GROUPS + [204] * GROUPS
    assert sorted(body["group"]["group_id"] for _, body in won) == sorted(ids)
    assert len({body["lease_id"] for _, body in won}) == GROUPS
    for agg, body in won:
        g = await work.group(body["group"]["group_id"])
        assert (g.state, g.attempts, g.lease_holder) == ("claimed", 1, agg.id)
        assert g.lease_id == body["lease_id"]
    claimed = [d["group_id"] for t, d in await work.events() if t == "group.claimed"]
    assert sorted(claimed) == sorted(ids)


async def test_waiting_aggregators_share_groups_that_become_ready(
    api: Api, work: Work, server: LiveServer
) -> None:
    ids = [(await work.upload(b"x", START - timedelta(minutes=i)))["group_id"] for i in range(3)]
    aggregators = [
        await api.key(work.admin, work.pool_id, "aggregator", name=f"w{i}") for i in range(6)
    ]
    waiting = [asyncio.create_task(work.claim_next(who=a, wait=3)) for a in aggregators]
    await asyncio.sleep(0.3)
    for gid in ids:
        await work.close(gid)
    answers = await asyncio.gather(*waiting)
    got = [r.json()["group"]["group_id"] for r in answers if r.status_code == 200]
    assert sorted(got) == sorted(ids)
    assert sorted(r.status_code for r in answers) == [200] * 3 + [204] * 3


async def test_two_scheduler_nodes_expire_each_lease_once(
    api: Api, work: Work, server: LiveServer
) -> None:
    ids = await ready_groups(work, 5)
    for _ in ids:
        assert (await work.claim_next()).status_code == 200
    server.clock.advance(minutes=5)
    rt = server.runtime
    counts = await asyncio.gather(claims.expire_leases(rt), claims.expire_leases(rt))
    assert sum(counts) == 5
    types = await work.event_types()
    assert types.count("group.lease_expired") == 5
    for gid in ids:
        g = await work.group(gid)
        assert (g.state, g.attempts, g.lease_id) == ("ready", 1, None)
