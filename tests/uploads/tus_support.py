"""Raw tus requests for tests: metadata encoding, and requests over a bare socket that can be
stalled or cut half-way through a body."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from tests.conftest import START
from tests.support.api import Actor
from tests.support.server import LiveServer

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_STREAM = "application/offset+octet-stream"


def upload_metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


@dataclass
class Tus:
    """tus calls as one actor, into one pool."""

    who: Actor
    pool_id: str

    async def create(
        self,
        length: int,
        *,
        ts: datetime | str = START,
        filename: str = "data.bin",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        **meta: str,
    ) -> httpx.Response:
        fields = {
            "pool_id": self.pool_id,
            "ts": ts if isinstance(ts, str) else ts.isoformat(),
            "filename": filename,
            **meta,
        }
        h = {**TUS, "Upload-Length": str(length), "Upload-Metadata": upload_metadata(**fields)}
        if body is not None:
            h["Content-Type"] = OFFSET_STREAM
        h.update(headers or {})
        return await self.who.client.post("/api/v1/tus/", content=body, headers=h)

    async def start(self, length: int, **kw: str) -> str:
        r = await self.create(length, **kw)
        assert r.status_code == 201, r.text
        return r.headers["location"]

    async def patch(
        self,
        url: str,
        data: bytes,
        offset: int,
        headers: dict[str, str] | None = None,
        who: Actor | None = None,
    ) -> httpx.Response:
        h = {**TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": str(offset), **(headers or {})}
        return await (who or self.who).client.patch(url, content=data, headers=h)

    async def head(self, url: str, who: Actor | None = None) -> httpx.Response:
        return await (who or self.who).client.head(url, headers=TUS)


@dataclass
class RawRequest:
    """An HTTP request written by hand on its own connection, its body sent piece by piece."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    sent: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    async def open(
        cls, server: LiveServer, method: str, path: str, headers: dict[str, str]
    ) -> RawRequest:
        url = urlsplit(server.url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.sent += len(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def raw_patch(
    server: LiveServer, who: Actor, path: str, offset: int, length: int
) -> RawRequest:
    """A PATCH announcing ``length`` body bytes, none sent yet."""
    headers = {
        **TUS,
        "Authorization": f"Bearer {who.token}",
        "Content-Type": OFFSET_STREAM,
        "Upload-Offset": str(offset),
        "Content-Length": str(length),
    }
    return await RawRequest.open(server, "PATCH", path, headers)
