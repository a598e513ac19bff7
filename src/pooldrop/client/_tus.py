"""A tus 1.0 upload as a small state machine; each client drives it with its own HTTP calls.

The machine says which request comes next (create, HEAD to learn the offset, PATCH the next
chunk) and reads each answer. After a broken connection or a 5xx it asks for a HEAD, so the upload
resumes from the server's offset instead of the start. Each PATCH carries a sha256
``Upload-Checksum`` so a corrupted chunk is refused and sent again.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx

from pooldrop.client._content import Source
from pooldrop.client._errors import PooldropError, ServerError, from_response

TUS_VERSION = "1.0.0"
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class TusRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    start: int = 0
    end: int = 0


def encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in metadata.items() if v
    )


class TusUpload:
    """Drive with ``next_request`` / ``handle`` (or ``failed``) until ``upload_id`` is set."""

    def __init__(
        self,
        endpoint: str,
        source: Source,
        metadata: dict[str, str],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        url: str | None = None,
        attempts: int = 5,
    ) -> None:
        self.endpoint = endpoint
        self.source = source
        self.metadata = metadata
        self.chunk_size = chunk_size
        self.url = url
        # A known URL may already hold bytes: ask before sending any.
        self.offset: int | None = None if url else 0
        self.upload_id: str | None = None
        self.attempts = attempts
        self.failures = 0

    @property
    def done(self) -> bool:
        return self.upload_id is not None

    def next_request(self) -> TusRequest:
        base = {"Tus-Resumable": TUS_VERSION}
        if self.url is None:
            headers = {
                **base,
                "Upload-Length": str(self.source.size),
                "Upload-Metadata": encode_metadata(self.metadata),
            }
            return TusRequest("POST", self.endpoint, headers)
        if self.offset is None:
            return TusRequest("HEAD", self.url, base)
        start = self.offset
        end = min(self.source.size, start + self.chunk_size)
        digest = hashlib.sha256()
        for chunk in self.source.chunks(start, end):
            digest.update(chunk)
        headers = {
            **base,
            "Upload-Offset": str(start),
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(end - start),
            "Upload-Checksum": f"sha256 {base64.b64encode(digest.digest()).decode()}",
        }
        return TusRequest("PATCH", self.url, headers, start, end)

    def failed(self, exc: PooldropError) -> None:
        """A request got no usable answer: count it, and learn the offset again next time."""
        self.failures += 1
        if self.failures >= self.attempts:
            raise exc
        if self.url is not None:
            self.offset = None

    def handle(self, request: TusRequest, response: httpx.Response) -> None:
        status = response.status_code
        if status >= 500 or status == 429:
            self.failed(from_response(response))
            return
        if request.method == "POST":
            if status != 201 or "location" not in response.headers:
                raise from_response(response)
            self.url = urljoin(self.endpoint, response.headers["location"])
            self.offset = int(response.headers.get("upload-offset", "0"))
            self._maybe_done(response)
            return
        if request.method == "HEAD":
            if status in (404, 410):
                # The server forgot it (expired): start over under a new URL.
                self.url, self.offset = None, 0
                return
            if status != 200:
                raise from_response(response)
            self.offset = int(response.headers["upload-offset"])
            self._maybe_done(response)
            return
        if status == 409 and response.headers.get("upload-offset") is not None:
            self.offset = None
            return
        if status == 460:  # checksum mismatch: the chunk was damaged in flight; send it again
            self.failed(ServerError("chunk checksum mismatch", status=460, code="checksum"))
            return
        if status != 204:
            raise from_response(response)
        self.offset = int(response.headers["upload-offset"])
        self.failures = 0
        self._maybe_done(response)

    def _maybe_done(self, response: httpx.Response) -> None:
        # If every byte is there but the answer naming the upload was lost, the next request is
        # a zero-length PATCH at the end offset, which makes the server name it again.
        upload_id = response.headers.get("pooldrop-upload-id")
        if upload_id:
            self.upload_id = upload_id
