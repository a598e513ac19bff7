"""GET .../groups (state filter, cursor pages) and GET .../groups/{id} with its manifest."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import START
from tests.groups.conftest import Work


async def test_list_groups_by_state_newest_first(work: Work) -> None:
    ids = [(await work.upload(b"x", START - timedelta(minutes=m)))["group_id"] for m in range(5)]
    await work.close(ids[1])
    await work.close(ids[3])
    await work.claim(ids[3])

    listed = (await work.contributor.client.get(work.url("/groups"))).json()
    assert [g["group_id"] for g in listed["items"]] == ids and listed["next_cursor"] is None
    first = listed["items"][0]
    assert set(first) >= {
        "group_id",
        "pool_id",
        "window_start",
        "window_end",
        "state",
        "file_count",
        "bytes",
        "contributors",
        "attempts",
        "lease_expires_at",
        "result_id",
    }
    assert (first["file_count"], first["bytes"], first["contributors"]) == (1, 1, 1)

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await work.contributor.client.get(work.url("/groups"), params=params)).json()
        seen += [g["group_id"] for g in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

    def state(s: str) -> dict[str, str]:
        return {"state": s}

    ready = (await work.contributor.client.get(work.url("/groups"), params=state("ready"))).json()
    assert [g["group_id"] for g in ready["items"]] == [ids[1]]
    claimed = await work.contributor.client.get(work.url("/groups"), params=state("claimed"))
    assert [g["group_id"] for g in claimed.json()["items"]] == [ids[3]]
    bad = await work.contributor.client.get(work.url("/groups"), params=state("nope"))
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    bad = await work.contributor.client.get(work.url("/groups"), params={"cursor": "garbage"})
    assert bad.status_code == 422


async def test_group_manifest_follows_upload_visibility(work: Work) -> None:
    other = await work.api.key(work.admin, work.pool_id, "contributor", name="other")
    listener = await work.api.key(work.admin, work.pool_id, "listener", name="screen")
    mine = await work.upload(b"mine", START + timedelta(seconds=2))
    theirs = await work.upload(b"theirs", START + timedelta(seconds=1), who=other)
    gid = mine["group_id"]

    def manifest_ids(body: dict[str, object]) -> list[object]:
        return [u["upload_id"] for u in body["manifest"]]  # type: ignore[attr-defined]

    for who in (work.admin, work.aggregator):
        r = await who.client.get(work.url(f"/groups/{gid}"))
        assert r.status_code == 200
        body = r.json()
        assert body["group_id"] == gid and body["file_count"] == 2
        # Ordered by event time.
        assert manifest_ids(body) == [theirs["upload_id"], mine["upload_id"]]
        assert body["manifest"][1] == mine
    r = await work.contributor.client.get(work.url(f"/groups/{gid}"))
    assert manifest_ids(r.json()) == [mine["upload_id"]] and r.json()["file_count"] == 2
    r = await listener.client.get(work.url(f"/groups/{gid}"))
    assert r.status_code == 200 and manifest_ids(r.json()) == []
    missing = await work.admin.client.get(work.url("/groups/nope"))
    assert missing.status_code == 404
