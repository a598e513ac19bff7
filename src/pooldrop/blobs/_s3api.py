"""The S3 multipart-upload calls, signed with SigV4 and sent with httpx.

obstore streams multipart uploads but aborts the whole upload when a part fails, so a caller
cannot retry one part. Driving CreateMultipartUpload / UploadPart / CompleteMultipartUpload /
AbortMultipartUpload here keeps every part retryable under the same part number. HeadBucket
(for ``ping``) and ListMultipartUploads (for sweeping abandoned uploads) come along because they
need the same signing. Everything else goes through obstore.
"""

from __future__ import annotations

import asyncio
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import httpx

from pooldrop.blobs._sigv4 import EMPTY_SHA256, Credentials, canonical_query, sign, uri_encode
from pooldrop.blobs.base import BlobError


class S3RequestError(BlobError):
    """S3 answered with an error status; ``code`` is S3's error code (``NoSuchUpload``...)."""

    def __init__(self, what: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{what}: HTTP {status} {code} {message}".strip())
        self.status = status
        self.code = code


@dataclass(frozen=True)
class PendingUpload:
    key: str
    upload_id: str
    initiated: datetime


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _find_text(root: ET.Element, name: str) -> str | None:
    for element in root.iter():
        if _local(element.tag) == name:
            return element.text or ""
    return None


def _parse(body: bytes, what: str) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise BlobError(f"{what}: unreadable answer from S3: {exc}") from exc


def _sha256_hex(pieces: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest()


class _Pieces:
    """Request content sent piece by piece, never joined into one buffer.

    Iterable again from the start (unlike a generator), so a resent request sends it all again.
    """

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self._pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


class S3Api:
    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        region: str,
        credentials: Credentials,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(endpoint)
        self._scheme = parts.scheme
        self._host = parts.netloc
        self._base_path = parts.path.rstrip("/")
        self.bucket = bucket
        self.region = region
        self.credentials = credentials
        # httpx retries only failed connection attempts here: nothing was sent, so it is safe.
        self._client = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(retries=1),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self,
        what: str,
        method: str,
        key: str | None,
        params: Mapping[str, str],
        body: bytes | Sequence[bytes] = b"",
        *,
        time_limit: float | None = None,
    ) -> httpx.Response:
        path = f"{self._base_path}/{uri_encode(self.bucket)}"
        if key is not None:
            path += "/" + uri_encode(key, keep_slash=True)
        query = canonical_query(params)
        pieces = [body] if isinstance(body, bytes) else [p for p in body if p]
        size = sum(map(len, pieces))
        payload_hash = await asyncio.to_thread(_sha256_hex, pieces) if size else EMPTY_SHA256
        headers = sign(
            method=method,
            host=self._host,
            path=path,
            query=query,
            payload_sha256=payload_hash,
            credentials=self.credentials,
            region=self.region,
            now=datetime.now(UTC),
        )
        url = f"{self._scheme}://{self._host}{path}" + (f"?{query}" if query else "")
        content: bytes | _Pieces = b""
        if len(pieces) == 1:
            content = pieces[0]
        elif pieces:
            content = _Pieces(pieces)
            headers["content-length"] = str(size)  # not chunked: S3 wants the length up front
        try:
            response = await self._client.request(
                method,
                url,
                content=content,
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT if time_limit is None else time_limit,
            )
        except httpx.HTTPError as exc:
            raise BlobError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            code, message = "", response.reason_phrase
            if response.content:
                try:
                    root = ET.fromstring(response.content)
                except ET.ParseError:
                    pass
                else:
                    code = _find_text(root, "Code") or ""
                    message = _find_text(root, "Message") or message
            raise S3RequestError(what, response.status_code, code, message)
        return response

    async def head_bucket(self, time_limit: float) -> None:
        await self._request(f"HeadBucket {self.bucket}", "HEAD", None, {}, time_limit=time_limit)

    async def create_multipart(self, key: str) -> str:
        what = f"CreateMultipartUpload {key}"
        response = await self._request(what, "POST", key, {"uploads": ""})
        upload_id = _find_text(_parse(response.content, what), "UploadId")
        if not upload_id:
            raise BlobError(f"{what}: S3 returned no UploadId")
        return upload_id

    async def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | Sequence[bytes]
    ) -> str:
        """Upload one part; ``data`` may be the part's bytes in several pieces."""
        what = f"UploadPart {number} of {key}"
        params = {"partNumber": str(number), "uploadId": upload_id}
        response = await self._request(what, "PUT", key, params, data)
        etag: str | None = response.headers.get("etag")
        if not etag:
            raise BlobError(f"{what}: S3 returned no ETag")
        return etag

    async def complete_multipart(self, key: str, upload_id: str, etags: Sequence[str]) -> None:
        what = f"CompleteMultipartUpload {key}"
        body = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
            for n, etag in enumerate(etags, start=1)
        )
        xml = f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode()
        response = await self._request(what, "POST", key, {"uploadId": upload_id}, xml)
        # S3 may answer 200 and still report a failure in the body of a completion.
        root = _parse(response.content, what)
        if _local(root.tag) == "Error":
            code = _find_text(root, "Code") or ""
            raise S3RequestError(
                what, response.status_code, code, _find_text(root, "Message") or ""
            )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self._request(
                f"AbortMultipartUpload {key}", "DELETE", key, {"uploadId": upload_id}
            )
        except S3RequestError as exc:
            if exc.status != 404:
                raise

    async def list_multipart(self, prefix: str) -> list[PendingUpload]:
        what = f"ListMultipartUploads {prefix}"
        uploads: list[PendingUpload] = []
        params = {"uploads": "", "prefix": prefix}
        while True:
            response = await self._request(what, "GET", None, params)
            root = _parse(response.content, what)
            for element in root:
                if _local(element.tag) != "Upload":
                    continue
                key = _find_text(element, "Key")
                upload_id = _find_text(element, "UploadId")
                initiated = _find_text(element, "Initiated")
                if key and upload_id and initiated:
                    when = datetime.fromisoformat(initiated.replace("Z", "+00:00"))
                    uploads.append(PendingUpload(key, upload_id, when))
            if (_find_text(root, "IsTruncated") or "").lower() != "true":
                return uploads
            params = {
                **params,
                "key-marker": _find_text(root, "NextKeyMarker") or "",
                "upload-id-marker": _find_text(root, "NextUploadIdMarker") or "",
            }
