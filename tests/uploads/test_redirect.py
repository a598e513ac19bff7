"""With `download_redirect` on an S3 store, downloads are 307s to short-lived presigned URLs."""

from __future__ import annotations

import os
import uuid

import httpx

from pooldrop.clock import FakeClock
from pooldrop.config import Settings
from tests.conftest import S3_BUCKET, START
from tests.support.api import Api
from tests.support.s3server import s3_url
from tests.support.server import live_server


async def test_download_redirects_to_a_presigned_url(
    settings: Settings, s3_endpoint: str, clock: FakeClock
) -> None:
    storage = s3_url(s3_endpoint, S3_BUCKET, f"r{uuid.uuid4().hex}", presign="1")
    redirecting = settings.model_copy(update={"storage_url": storage, "download_redirect": True})
    async with live_server(redirecting, clock) as srv, Api(srv) as api:
        admin = await api.user()
        pid = (await api.pool(admin))["pool_id"]
        data = os.urandom(70_000)
        r = await admin.client.post(
            f"/api/v1/pools/{pid}/uploads",
            params={"ts": START.isoformat(), "name": "x.bin"},
            content=data,
        )
        assert r.status_code == 201, r.text
        url = f"/api/v1/pools/{pid}/uploads/{r.json()['upload_id']}/content"
        moved = await admin.client.get(url)
        assert moved.status_code == 307
        location = moved.headers["location"]
        assert location.startswith(s3_endpoint)
        async with httpx.AsyncClient() as plain:  # no pooldrop credentials: the URL is the grant
            fetched = await plain.get(location)
        assert fetched.status_code == 200 and fetched.content == data
        # Access is still checked before any URL is handed out.
        stranger = await api.user()
        assert (await stranger.client.get(url)).status_code == 404
