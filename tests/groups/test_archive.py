"""GET .../groups/{id}/archive: a streamed tar with manifest.json first; the manifest is frozen."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

from pooldrop.domain.roles import PoolRole
from pooldrop.services import archive
from pooldrop.services.principals import Principal
from tests.conftest import START
from tests.groups.conftest import Work, make_work
from tests.support.api import Api
from tests.support.server import LiveServer

LONG_NAME = "ü" * 100 + ".bin"  # 204 bytes of UTF-8: needs a pax header


async def download(work: Work, group_id: str, lease_id: str, to: Path) -> tuple[int, int]:
    """Stream the archive to a file; returns (Content-Length, bytes received)."""
    async with work.aggregator.client.stream(
        "GET", work.url(f"/groups/{group_id}/archive"), params={"lease_id": lease_id}
    ) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"] == "application/x-tar"
        assert r.headers["content-disposition"].startswith('attachment; filename="group-')
        received = 0
        with to.open("wb") as f:
            async for chunk in r.aiter_raw():
                received += len(chunk)
                f.write(chunk)
        return int(r.headers["content-length"]), received


def read_tar(path: Path) -> tuple[dict[str, Any], dict[str, bytes], list[str]]:
    """Untar in stream mode (no seeking): the manifest, every file's bytes, names in order."""
    files: dict[str, bytes] = {}
    order: list[str] = []
    with path.open("rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for member in tar:
            assert member.isfile() and member.mode == 0o644
            order.append(member.name)
            extracted = tar.extractfile(member)
            assert extracted is not None
            files[member.name] = extracted.read()
    manifest = json.loads(files.pop("manifest.json"))
    return manifest, files, order


async def test_archive_streams_every_file_with_its_manifest(
    work: Work, server: LiveServer, tmp_path: Path
) -> None:
    k2 = await work.api.key(work.admin, work.pool_id, "contributor", name="k2")
    contents = {
        "a.bin": os.urandom(700_000),
        LONG_NAME: os.urandom(1000),
        "odd.txt": b"x" * 513,
    }
    uploads = []
    for i, (name, data) in enumerate(contents.items()):
        who = k2 if i == 1 else None
        uploads.append(await work.upload(data, START + timedelta(seconds=i), name, who=who))
    # Two files with one name: the upload id keeps their paths apart.
    uploads.append(await work.upload(b"same name", START + timedelta(seconds=5), "a.bin"))
    gid = uploads[0]["group_id"]
    claim = await work.claim(gid)

    length, received = await download(work, gid, claim["lease_id"], tmp_path / "g.tar")
    assert length == received and received % tarfile.RECORDSIZE == 0
    manifest, files, order = read_tar(tmp_path / "g.tar")

    assert order[0] == "manifest.json"
    assert manifest["format"] == 1
    assert manifest["group"]["group_id"] == gid and manifest["group"]["state"] == "claimed"
    entries = manifest["uploads"]
    assert [e["upload_id"] for e in entries] == [u["upload_id"] for u in uploads]
    assert order[1:] == [e["path"] for e in entries]
    assert len(set(order)) == len(order)
    for e, u in zip(entries, uploads, strict=True):
        assert e["path"] == f"files/{u['upload_id']}/{u['name']}"
        assert hashlib.sha256(files[e["path"]]).hexdigest() == e["sha256"] == u["sha256"]
        assert e["size"] == len(files[e["path"]]) == u["size"]
        for field in ("uploader_id", "ts", "name", "metadata", "content_type", "late"):
            assert e[field] == u[field], field
    assert entries[1]["name"] == LONG_NAME and entries[1]["uploader_id"] == k2.id


async def test_manifest_is_frozen_once_the_group_left_open(work: Work, tmp_path: Path) -> None:
    first = await work.upload(b"in time", START)
    gid = first["group_id"]
    lease = (await work.claim(gid))["lease_id"]
    late = await work.contributor.client.post(
        work.url("/uploads"),
        params={"ts": (START + timedelta(seconds=30)).isoformat(), "name": "late.bin"},
        content=b"too late",
    )
    assert late.status_code == 409 and late.json()["code"] == "window_closed"
    await download(work, gid, lease, tmp_path / "g.tar")
    manifest, files, _ = read_tar(tmp_path / "g.tar")
    assert [e["upload_id"] for e in manifest["uploads"]] == [first["upload_id"]]
    assert list(files.values()) == [b"in time"]
    assert (await work.group(gid)).file_count == 1


async def test_late_upload_goes_to_the_next_open_window(
    api: Api, server: LiveServer, tmp_path: Path
) -> None:
    work = await make_work(api, server, late_policy="next_open")
    first = await work.upload(b"in time", START - timedelta(minutes=2))
    gid = first["group_id"]
    lease = (await work.claim(gid))["lease_id"]
    late = await work.upload(b"late", START - timedelta(minutes=2) + timedelta(seconds=1))
    assert late["late"] is True and late["group_id"] != gid
    await download(work, gid, lease, tmp_path / "g.tar")
    manifest, _, _ = read_tar(tmp_path / "g.tar")
    assert [e["upload_id"] for e in manifest["uploads"]] == [first["upload_id"]]


async def test_who_may_download(work: Work, server: LiveServer, tmp_path: Path) -> None:
    gid = (await work.upload(b"x", START))["group_id"]
    r = await work.admin.client.get(work.url(f"/groups/{gid}/archive"))
    assert r.status_code == 409 and r.json()["code"] == "group_not_ready"  # still open
    await work.close(gid)
    r = await work.aggregator.client.get(work.url(f"/groups/{gid}/archive"))
    assert r.status_code == 422 and "lease_id is required" in r.json()["detail"]
    # A pool admin may inspect a closed group without a lease.
    r = await work.admin.client.get(work.url(f"/groups/{gid}/archive"))
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    (tmp_path / "a.tar").write_bytes(r.content)
    manifest, files, _ = read_tar(tmp_path / "a.tar")
    assert list(files.values()) == [b"x"] and manifest["group"]["state"] == "ready"
    listener = await work.api.key(work.admin, work.pool_id, "listener", name="l")
    r = await listener.client.get(work.url(f"/groups/{gid}/archive"))
    assert r.status_code == 403


async def test_archive_memory_does_not_grow_with_group_size(work: Work, server: LiveServer) -> None:
    size, count = 1024 * 1024, 8
    for i in range(count):
        await work.upload(os.urandom(size), START + timedelta(seconds=i), f"f{i}.bin")
    gid = (await work.upload(b"last", START))["group_id"]
    lease = (await work.claim(gid))["lease_id"]
    rt = server.runtime
    principal = Principal(
        id=work.aggregator.id, kind="key", pool_id=work.pool_id, pool_role=PoolRole.AGGREGATOR
    )
    built = await archive.open_archive(rt, principal, work.pool_id, gid, lease)
    total = 0
    tracemalloc.start()
    try:
        async for chunk in built.chunks(rt.blobs):
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == built.size > size * count
    # Chunks are passed on as they come: the peak is a few chunks, not the 8 MiB group.
    assert peak < 2 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_archive_size_matches_what_tarfile_writes() -> None:
    """The hand-computed length equals what the standard library produces for the same files."""
    members = [("files/u1/a.bin", 0), ("files/u2/" + LONG_NAME, 513), ("files/u3/c", 512)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, size in [("manifest.json", 10), *members]:
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = size, 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(b"m" * size))
    ours = 0
    for path, size in [("manifest.json", 10), *members]:
        ours += len(archive.header(path, size, 1_700_000_000)) + size + archive.padding(size)
    ours += archive.Archive._trailer_size(ours)
    assert ours == len(buf.getvalue())
