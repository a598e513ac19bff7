"""What only the s3:// backend has: URL options, credentials, multipart, signing, ping."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import obstore
import pytest
from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials as BotoCredentials  # type: ignore[import-untyped]

from pooldrop.blobs import BlobError, open_blob_store
from pooldrop.blobs._sigv4 import Credentials, canonical_query, sign, uri_encode
from pooldrop.blobs.s3 import S3BlobStore
from tests.blobs.conftest import BUCKET
from tests.support.s3server import s3_url

MiB = 1024 * 1024


def s3(url: str) -> S3BlobStore:
    store = open_blob_store(url)
    assert isinstance(store, S3BlobStore)
    return store


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ]:
        monkeypatch.delenv(name, raising=False)


async def test_url_options_and_redaction(clean_aws_env: None) -> None:
    async with s3(
        "s3://my-bucket/some/prefix?endpoint=http://127.0.0.1:9&region=eu-west-3"
        "&part_size=16MiB&presign=1&access_key_id=AKID&secret_access_key=s3+cr%2F3t"
        "&session_token=t0ken&timeout=7&ping_timeout=0.5&max_retries=0"
    ) as store:
        assert (store.bucket, store.prefix, store.endpoint) == (
            "my-bucket",
            "some/prefix",
            "http://127.0.0.1:9",
        )
        assert store.part_size == 16 * MiB and store.presign and store.ping_timeout == 0.5
        assert store.api.region == "eu-west-3"
        assert store.api.credentials == Credentials("AKID", "s3+cr/3t", "t0ken")
        assert "cr%2F3t" not in store.url and "t0ken" not in store.url
        assert "endpoint=http://127.0.0.1:9&" in store.url
        assert "access_key_id=AKID" in store.url and "part_size=16MiB" in store.url
        assert store.object_key("a/b") == "some/prefix/a/b"


async def test_credentials_from_userinfo_and_environment(
    clean_aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with s3("s3://AKID:pa%2Fss@bucket?endpoint=http://127.0.0.1:9") as store:
        assert store.api.credentials == Credentials("AKID", "pa/ss")
        assert "pa%2Fss" not in store.url and store.url.startswith("s3://AKID@bucket")
        assert store.prefix == "" and store.object_key("k") == "k"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "envtoken")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    async with s3("s3://bucket/p") as store:
        assert store.api.credentials == Credentials("ENVKEY", "envsecret", "envtoken")
        assert store.api.region == "ap-south-1"
        assert store.endpoint == "https://s3.ap-south-1.amazonaws.com"
        assert store.part_size == 8 * MiB and not store.presign


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://bucket/p?endpoint=http://127.0.0.1:9", "needs credentials"),
        ("s3://B/p?access_key_id=a&secret_access_key=b", "valid bucket"),
        ("s3:///p?access_key_id=a&secret_access_key=b", "valid bucket"),
        ("s3://bucket?access_key_id=a&secret_access_key=b&part_size=1MiB", "part_size"),
        ("s3://bucket?access_key_id=a&secret_access_key=b&part_size=lots", "part_size"),
        ("s3://bucket?access_key_id=a&secret_access_key=b&endpoint=ftp://x", "endpoint"),
        ("s3://bucket?access_key_id=a&secret_access_key=b&presign=sure", "presign"),
        ("s3://bucket?access_key_id=a&secret_access_key=b&bucket_size=1", "known options"),
        ("s3://bucket/a//b?access_key_id=a&secret_access_key=b", "segment"),
    ],
)
def test_bad_urls(clean_aws_env: None, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_blob_store(url)


async def test_large_blobs_go_up_as_multipart_and_small_ones_in_one_put(
    s3_endpoint: str,
) -> None:
    url = s3_url(s3_endpoint, BUCKET, f"t{uuid.uuid4().hex}", part_size="5MiB")
    async with s3(url) as store:
        await store.put("large", _chunks(b"L" * (12 * MiB), MiB))
        await store.put("exact", _chunks(b"E" * (5 * MiB), MiB))
        await store.put("small", _chunks(b"S" * MiB, 64 * 1024))
        # An S3 ETag of a multipart object is "<md5 of part md5s>-<number of parts>".
        large = await obstore.head_async(store.store, "large")
        exact = await obstore.head_async(store.store, "exact")
        small = await obstore.head_async(store.store, "small")
        assert (large["e_tag"] or "").strip('"').endswith("-3")
        assert (exact["e_tag"] or "").strip('"').endswith("-1")
        assert "-" not in (small["e_tag"] or "")
        assert large["size"] == 12 * MiB and small["size"] == MiB


async def test_a_writer_holds_about_one_part_and_copies_none(s3_endpoint: str) -> None:
    url = s3_url(s3_endpoint, BUCKET, f"t{uuid.uuid4().hex}", part_size="5MiB")
    data = os.urandom(16 * MiB)
    chunks = [data[i : i + 256 * 1024] for i in range(0, len(data), 256 * 1024)]
    async with s3(url) as store:
        writer = store.writer("big")
        tracemalloc.start()
        try:
            for i in range(0, len(chunks), 4):
                await writer.write_pieces(chunks[i : i + 4])
            await writer.commit()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # The chunks existed before; a part buffer or a copy of a part would be 5 MiB more.
        assert peak < 2 * MiB, f"peak {peak / MiB:.1f} MiB"
        assert hashlib.sha256(b"".join([c async for c in await store.open("big")])).digest() == (
            hashlib.sha256(data).digest()
        )


async def test_ping_fails_fast_on_a_closed_port(clean_aws_env: None) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends
    url = (
        f"s3://bucket/p?endpoint=http://127.0.0.1:{port}&ping_timeout=1"
        "&access_key_id=a&secret_access_key=b"
    )
    async with s3(url) as store:
        started = time.monotonic()
        with pytest.raises(BlobError, match="HeadBucket"):
            await store.ping()
        assert time.monotonic() - started < 3


async def test_ping_fails_on_a_missing_bucket(s3_endpoint: str) -> None:
    async with s3(s3_url(s3_endpoint, "no-such-bucket", "p")) as store:
        with pytest.raises(BlobError, match="404"):
            await store.ping()


async def test_presign_is_off_by_default_and_bounded(s3_endpoint: str) -> None:
    async with s3(s3_url(s3_endpoint, BUCKET, "p")) as store:
        assert await store.presigned_url("k", 60) is None
    async with s3(s3_url(s3_endpoint, BUCKET, "p", presign="1")) as store:
        with pytest.raises(ValueError):
            await store.presigned_url("k", 0)
        with pytest.raises(ValueError):
            await store.presigned_url("k", 8 * 24 * 3600)


@pytest.mark.parametrize("token", [None, "session/token+=="])
def test_sigv4_matches_botocore(token: str | None) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    body = b"part bytes" * 1000
    host = "127.0.0.1:9000"
    path = "/" + uri_encode("my-bucket") + "/" + uri_encode("pre/fix/a-b_c.d~e", keep_slash=True)
    query = canonical_query({"uploadId": "a+b/c=d", "partNumber": "7"})

    request = AWSRequest(method="PUT", url=f"http://{host}{path}?{query}", data=body)
    S3SigV4Auth(
        BotoCredentials("AKIDEXAMPLE", credentials.secret_access_key, token), "s3", "eu-west-1"
    ).add_auth(request)
    when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    ours = sign(
        method="PUT",
        host=host,
        path=path,
        query=query,
        payload_sha256=hashlib.sha256(body).hexdigest(),
        credentials=credentials,
        region="eu-west-1",
        now=when,
    )
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-content-sha256"] == request.headers["X-Amz-Content-SHA256"]
    if token:
        assert ours["x-amz-security-token"] == token
