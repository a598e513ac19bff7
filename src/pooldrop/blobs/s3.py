"""Blob storage in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...).

URL: ``s3://[ACCESS_KEY_ID:SECRET@]bucket[/prefix][?option=value&...]``, for example
``s3://pooldrop/prod?endpoint=http://127.0.0.1:9000&region=us-east-1&part_size=8MiB&presign=1``.
Blob ``key`` is stored as object ``<prefix>/<key>`` in ``bucket``.

Options:
    endpoint           ``http(s)://host[:port][/path]`` of the server; default AWS's regional
                       endpoint. Plain http is allowed when the endpoint says ``http://``.
                       Requests are path-style (``<endpoint>/<bucket>/<object>``).
    region             default ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else ``us-east-1``.
    part_size          multipart part size, ``8MiB`` by default, ``5MiB`` (S3's minimum) to
                       ``5GiB``. A blob up to this size is sent in one PUT on commit; a larger one
                       as a multipart upload, part by part while it is written. A writer holds
                       about one part in memory at most: the bytes written since its last part
                       was sent, as the pieces they came in (a part goes out without a copy).
    presign            ``1`` to hand out presigned GET URLs (so downloads can be redirected to the
                       bucket); ``0`` by default, since an internal endpoint is often unreachable
                       by clients.
    access_key_id, secret_access_key, session_token
                       credentials; otherwise the URL's user info, otherwise the environment's
                       ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``.
                       Values are percent-decoded (a ``+`` stays a plus; a ``/`` in user info
                       must be written ``%2F``). They never appear in ``store.url``.
                       Instance profiles and web-identity tokens are not supported: the multipart
                       calls sign requests themselves with these static keys.
    timeout            seconds allowed for one request (default 60).
    ping_timeout       seconds ``ping`` waits for the server (default 5).
    max_retries        how often obstore retries a failed read or single PUT (default 3).

Atomic visibility comes from S3 itself: a PUT or a completed multipart upload appears whole or
not at all. Writers are retry-safe part by part: a failed part is resent under the same part
number from the writer's buffer. ``sweep_staging`` aborts multipart uploads under the prefix that
were started too long ago (crashed writers); a bucket lifecycle rule for incomplete multipart
uploads is a good second net.

Library split: obstore (Rust ``object_store``) does reads, ranged reads, HEAD, single PUTs,
listing, deletes and presigning; ``_s3api`` drives the multipart calls, which obstore does not
expose in a retryable form.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import httpx
import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

from pooldrop.blobs._s3api import S3Api, S3RequestError
from pooldrop.blobs._sigv4 import Credentials
from pooldrop.blobs._url import parse_bool, parse_seconds, parse_size, query_options, redact
from pooldrop.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobError,
    BlobNotFound,
    BlobStore,
    check_range,
    validate_key,
    validate_prefix,
)

if TYPE_CHECKING:
    from obstore import GetOptions
    from obstore.store import ClientConfig, RetryConfig, S3Config

MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
DEFAULT_PART_SIZE = 8 * 1024**2
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit

_SECRET_OPTIONS = ("secret_access_key", "session_token")
_OPTIONS = (
    "endpoint",
    "region",
    "part_size",
    "presign",
    "access_key_id",
    *_SECRET_OPTIONS,
    "timeout",
    "ping_timeout",
    "max_retries",
)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _vendor_errors(what: str, key: str) -> Iterator[None]:
    """Turn obstore's exceptions into the interface's two."""
    try:
        yield
    # obstore raises the builtin FileNotFoundError for a missing object, NotFoundError elsewhere.
    except (FileNotFoundError, NotFoundError):
        raise BlobNotFound(key) from None
    except ObstoreError as exc:
        raise BlobError(f"{what} {key!r}: {_first_line(exc)}") from exc


def _split(pieces: list[bytes], size: int) -> tuple[list[bytes], list[bytes]]:
    """The first ``size`` bytes of ``pieces`` and the rest; only a piece cut in two is copied."""
    head: list[bytes] = []
    for i, piece in enumerate(pieces):
        if len(piece) < size:
            head.append(piece)
            size -= len(piece)
            continue
        if len(piece) == size:
            return [*head, piece], pieces[i + 1 :]
        return [*head, piece[:size]], [piece[size:], *pieces[i + 1 :]]
    raise ValueError("fewer bytes than asked for")


class S3BlobWriter:
    """Holds written bytes as the pieces they came in until a part is full, then sends that part
    piece by piece: no byte is copied into a part buffer (the old cost: a growing buffer plus a
    copy of every part)."""

    def __init__(self, store: S3BlobStore, key: str) -> None:
        self.key = key
        self.bytes_written = 0
        self._store = store
        self._object = store.object_key(key)
        self._held: list[bytes] = []
        self._held_size = 0
        self._etags: list[str] = []
        self._upload_id: str | None = None
        self._state = "open"
        self._complete_sent = False

    def _check_open(self) -> None:
        if self._state != "open":
            raise BlobError(f"writer for {self.key!r} is {self._state}")

    async def write(self, data: bytes) -> None:
        await self.write_pieces((data,))

    async def write_pieces(self, pieces: Sequence[bytes]) -> None:
        self._check_open()
        size = sum(map(len, pieces))
        if not size:
            return
        part_size = self._store.part_size
        # Built aside and kept only on success: a failed call leaves the writer as it was.
        held = [*self._held, *(bytes(piece) for piece in pieces if piece)]
        held_size = self._held_size + size
        parts_before = len(self._etags)
        try:
            while held_size >= part_size:
                if self._upload_id is None:
                    self._upload_id = await self._store.api.create_multipart(self._object)
                part, held = _split(held, part_size)
                etag = await self._store.api.upload_part(
                    self._object, self._upload_id, len(self._etags) + 1, part
                )
                self._etags.append(etag)
                held_size -= part_size
        except BaseException:
            # Undo this call entirely; the retry resends these parts under the same numbers,
            # which S3 treats as replacing them.
            del self._etags[parts_before:]
            raise
        self._held, self._held_size = held, held_size
        self.bytes_written += size

    async def commit(self) -> None:
        if self._state == "committed":
            return
        self._check_open()
        if self._upload_id is None:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            with _vendor_errors("uploading", self.key):
                await obstore.put_async(self._store.store, self.key, data, use_multipart=False)
        else:
            if self._held:
                etag = await self._store.api.upload_part(
                    self._object, self._upload_id, len(self._etags) + 1, self._held
                )
                self._etags.append(etag)
                self._held, self._held_size = [], 0
            retried, self._complete_sent = self._complete_sent, True
            try:
                await self._store.api.complete_multipart(self._object, self._upload_id, self._etags)
            except S3RequestError as exc:
                # A completion whose answer was lost has finished: S3 forgets the upload id.
                if not (retried and exc.status == 404 and await self._landed()):
                    raise
        self._held, self._held_size = [], 0
        self._state = "committed"

    async def _landed(self) -> bool:
        try:
            return await self._store.size(self.key) == self.bytes_written
        except BlobNotFound:
            return False

    async def abort(self) -> None:
        if self._state == "committed":
            return
        self._state = "aborted"
        self._held, self._held_size = [], 0
        if self._upload_id is not None:
            await self._store.api.abort_multipart(self._object, self._upload_id)
            self._upload_id = None


class S3BlobStore(BlobStore):
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint: str,
        region: str,
        credentials: Credentials,
        part_size: int = DEFAULT_PART_SIZE,
        presign: bool = False,
        timeout: float = 60.0,
        ping_timeout: float = 5.0,
        max_retries: int = 3,
        url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport`` carries the multipart and ping requests; tests pass one that injects
        faults."""
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between 5MiB and 5GiB, got {part_size} bytes")
        self.bucket = bucket
        self.prefix = validate_prefix(prefix)
        self.endpoint = endpoint.rstrip("/")
        self.part_size = part_size
        self.presign = presign
        self.ping_timeout = ping_timeout
        self.url = url or f"s3://{bucket}/{self.prefix}?endpoint={self.endpoint}&region={region}"
        config: S3Config = {
            "endpoint": self.endpoint,
            "region": region,
            "access_key_id": credentials.access_key_id,
            "secret_access_key": credentials.secret_access_key,
            "virtual_hosted_style_request": False,
        }
        if credentials.session_token:
            config["session_token"] = credentials.session_token
        client: ClientConfig = {
            "allow_http": self.endpoint.startswith("http://"),
            "timeout": timedelta(seconds=timeout),
            "connect_timeout": timedelta(seconds=min(timeout, 5.0)),
        }
        retry: RetryConfig = {"max_retries": max_retries}
        self.store = S3Store(
            bucket,
            prefix=self.prefix or None,
            config=config,
            client_options=client,
            retry_config=retry,
        )
        self.api = S3Api(
            endpoint=self.endpoint,
            bucket=bucket,
            region=region,
            credentials=credentials,
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_url(
        cls, url: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> S3BlobStore:
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3":
            raise ValueError(f"not an s3:// URL: {redact(url, _SECRET_OPTIONS)!r}")
        bucket = parts.hostname or ""
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(f"s3:// URL needs a valid bucket name, got {bucket!r}")
        options = query_options(url, _OPTIONS)
        region = (
            options.get("region")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        endpoint = options.get("endpoint") or f"https://s3.{region}.amazonaws.com"
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError(f"endpoint must be an http:// or https:// URL, got {endpoint!r}")
        access_key = options.get("access_key_id") or unquote(parts.username or "")
        secret = options.get("secret_access_key") or unquote(parts.password or "")
        token = options.get("session_token")
        if not access_key and not secret:
            access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
            secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
            token = token or os.environ.get("AWS_SESSION_TOKEN")
        if not access_key or not secret:
            raise ValueError(
                "s3:// storage needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or pass access_key_id= and secret_access_key= in the URL"
            )
        return cls(
            bucket=bucket,
            prefix=parts.path.strip("/"),
            endpoint=endpoint,
            region=region,
            credentials=Credentials(access_key, secret, token or None),
            part_size=parse_size("part_size", options.get("part_size", "8MiB")),
            presign=parse_bool("presign", options.get("presign", "0")),
            timeout=parse_seconds("timeout", options.get("timeout", "60")),
            ping_timeout=parse_seconds("ping_timeout", options.get("ping_timeout", "5")),
            max_retries=int(options.get("max_retries", "3")),
            url=redact(url, _SECRET_OPTIONS),
            transport=transport,
        )

    def object_key(self, key: str) -> str:
        """The object's name in the bucket (the key under the URL's prefix)."""
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def writer(self, key: str) -> S3BlobWriter:
        return S3BlobWriter(self, validate_key(key))

    async def open(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        check_range(start, end, chunk_size)
        validate_key(key)
        if end == start:
            await self.size(key)
            return _empty()
        ranged = start > 0 or end is not None
        options: GetOptions = {}
        if ranged:
            options["range"] = {"offset": start} if end is None else (start, end)
        try:
            with _vendor_errors("reading", key):
                result = await obstore.get_async(self.store, key, options=options)
        except BlobError:
            # S3 refuses a range that starts at or past the end (416); the interface calls that
            # an empty read. Anything else (or a missing blob) is re-raised.
            if ranged and start >= await self.size(key):
                return _empty()
            raise
        return self._chunks(key, result.stream(min_chunk_size=chunk_size), chunk_size)

    @staticmethod
    async def _chunks(
        key: str, stream: AsyncIterator[bytes], chunk_size: int
    ) -> AsyncIterator[bytes]:
        with _vendor_errors("reading", key):
            async for buf in stream:
                if len(buf) <= chunk_size:
                    yield buf
                    continue
                for pos in range(0, len(buf), chunk_size):
                    yield buf[pos : pos + chunk_size]

    async def size(self, key: str) -> int:
        validate_key(key)
        with _vendor_errors("reading the size of", key):
            meta = await obstore.head_async(self.store, key)
        return meta["size"]

    async def delete(self, key: str) -> None:
        validate_key(key)
        with _vendor_errors("deleting", key):
            await obstore.delete_async(self.store, key)

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list_prefix(prefix)
        if keys:
            # obstore batches these into DeleteObjects requests of up to 1000 keys.
            with _vendor_errors("deleting blobs under", prefix):
                await obstore.delete_async(self.store, keys)
        return len(keys)

    async def list_prefix(self, prefix: str) -> list[str]:
        prefix = validate_prefix(prefix)
        keys: list[str] = []
        with _vendor_errors("listing", prefix):
            async for batch in obstore.list(self.store, prefix=prefix or None, chunk_size=1000):
                keys.extend(meta["path"] for meta in batch)
        return sorted(keys)

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        validate_key(key)
        if not self.presign:
            return None
        if not 0 < expires_in <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"expires_in must be 1..{MAX_PRESIGN_SECONDS} seconds")
        with _vendor_errors("signing", key):
            return await obstore.sign_async(self.store, "GET", key, timedelta(seconds=expires_in))

    async def ping(self) -> None:
        """HeadBucket with a short timeout: reachable, bucket there, credentials accepted."""
        await self.api.head_bucket(time_limit=self.ping_timeout)

    async def sweep_staging(self, older_than_seconds: float) -> int:
        """Abort multipart uploads under the prefix started more than this long ago."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        prefix = f"{self.prefix}/" if self.prefix else ""
        removed = 0
        for upload in await self.api.list_multipart(prefix):
            if upload.initiated < cutoff:
                await self.api.abort_multipart(upload.key, upload.upload_id)
                removed += 1
        return removed

    async def close(self) -> None:
        await self.api.aclose()


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing
