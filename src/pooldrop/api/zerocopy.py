"""Zero-copy file responses: the ASGI ``http.response.zerocopysend`` extension for uvicorn.

uvicorn does not offer the extension, so ``ZeroCopyHttpToolsProtocol`` adds it: the response
start goes out as usual, then the file's bytes move kernel-to-socket with ``loop.sendfile``
(``os.sendfile`` underneath) instead of being read into Python and written back. Servers without
the extension (other ASGI servers, tests) get the same response streamed in chunks.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from pooldrop.blobs import FileSpan

EXTENSION = "http.response.zerocopysend"
FALLBACK_CHUNK = 256 * 1024


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, ready.set_result, None)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


async def _sendfile(transport: asyncio.Transport, file: BinaryIO, offset: int, count: int) -> None:
    """Move ``count`` bytes of ``file`` to the transport's socket with os.sendfile.

    uvloop (the default loop) does not implement ``loop.sendfile``, and a transport's own
    descriptor cannot be watched directly, so a duplicate descriptor is watched for writability.
    """
    loop = asyncio.get_running_loop()
    # What the transport already buffered (the response head) must reach the socket first.
    # The transport signals only the high-water mark, not "empty": poll briefly.
    while transport.get_write_buffer_size():  # noqa: ASYNC110
        await asyncio.sleep(0.0005)
    sock = transport.get_extra_info("socket")
    if sock is None:
        raise RuntimeError("the transport has no socket")
    fd = os.dup(sock.fileno())
    try:
        in_fd = file.fileno()
        while count > 0:
            try:
                sent = os.sendfile(fd, in_fd, offset, count)
            except BlockingIOError:
                await _writable(loop, fd)
                continue
            if sent == 0:
                raise ConnectionResetError("the client went away")
            offset += sent
            count -= sent
    finally:
        os.close(fd)


class ZeroCopyCycle(RequestResponseCycle):
    """uvicorn's request cycle with the zero-copy extension and a request body kept as chunks.

    uvicorn appends every chunk the parser hands over to a ``bytearray`` and copies that into a
    new ``bytes`` for each ``http.request`` message. Here the chunks are kept as they came: a
    message of one chunk (the usual case, since reading pauses above the high-water mark) is
    passed on without any copy, several are joined once. ``body`` stays readable and assignable
    as uvicorn's ``receive`` expects.
    """

    _chunks: list[bytes]
    body_size: int

    def _adopt(self) -> None:
        """Turn uvicorn's fresh cycle (class swapped in place) into one of these."""
        self.__dict__.pop("body", None)  # the class's property takes over from the bytearray
        self._chunks = []
        self.body_size = 0

    def add_body(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self.body_size += len(chunk)

    @property  # type: ignore[override]
    def body(self) -> bytes:
        chunks = self._chunks
        if len(chunks) > 1:
            chunks[:] = [b"".join(chunks)]
        return chunks[0] if chunks else b""

    @body.setter
    def body(self, value: bytes | bytearray) -> None:
        self._chunks = [bytes(value)] if value else []
        self.body_size = len(value)

    async def send(self, message: Any) -> None:
        if message["type"] != EXTENSION:
            await super().send(message)
            return
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return  # like uvicorn's own sends: a gone client is not an error
        if not self.response_started or self.response_complete:
            raise RuntimeError(f"{EXTENSION} is only valid after http.response.start")
        file: BinaryIO = message["file"]
        offset = message.get("offset", 0) or 0
        count = message.get("count")
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        if self.scope["method"] != "HEAD" and count:
            if count > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            await _sendfile(self.transport, file, offset, count)
            self.expected_content_length -= count
        elif self.scope["method"] == "HEAD":
            self.expected_content_length = 0
        if not message.get("more_body", False):
            await super().send({"type": "http.response.body", "body": b"", "more_body": False})


class ZeroCopyHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, offering ``http.response.zerocopysend``."""

    def on_headers_complete(self) -> None:
        self.scope.setdefault("extensions", {})[EXTENSION] = {}
        super().on_headers_complete()
        if self.cycle is not None and type(self.cycle) is RequestResponseCycle:
            # Same fields, one more message type: swapping the class keeps uvicorn's own state.
            cycle: RequestResponseCycle = self.cycle
            cycle.__class__ = ZeroCopyCycle
            cast(ZeroCopyCycle, cycle)._adopt()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not isinstance(cycle, ZeroCopyCycle):
            super().on_body(body)
            return
        # As uvicorn's own on_body, minus the growing bytearray: chunks are kept as they are.
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.add_body(body)
        if cycle.body_size > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()


async def _send_file(
    file: BinaryIO, offset: int, count: int, send: Send, *, zero_copy: bool, more_body: bool
) -> None:
    """Send ``count`` bytes of ``file`` from ``offset``: sendfile when offered, else chunks."""
    if zero_copy:
        await send(
            {
                "type": EXTENSION,
                "file": file,
                "offset": offset,
                "count": count,
                "more_body": more_body,
            }
        )
        return
    remaining = count
    while remaining > 0:
        chunk = await asyncio.to_thread(
            os.pread, file.fileno(), min(FALLBACK_CHUNK, remaining), offset
        )
        if not chunk:
            raise RuntimeError(f"{file.name} is shorter than expected")
        offset += len(chunk)
        remaining -= len(chunk)
        await send(
            {"type": "http.response.body", "body": chunk, "more_body": more_body or remaining > 0}
        )
    if count == 0 and not more_body:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class ZeroCopyFileResponse(Response):
    """A byte range of a local file, sent with sendfile where the server allows it."""

    def __init__(
        self,
        path: Path,
        *,
        start: int,
        end: int,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.path = path
        self.start = start
        self.end = end
        self.status_code = status_code
        self.media_type = media_type
        self.background = background
        self.init_headers({**(headers or {}), "content-length": str(end - start)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        file = await asyncio.to_thread(open, self.path, "rb")
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            head = scope["method"] == "HEAD"
            await _send_file(
                file,
                self.start,
                0 if head else self.end - self.start,
                send,
                zero_copy=EXTENSION in scope.get("extensions", {}),
                more_body=False,
            )
        finally:
            await asyncio.to_thread(file.close)
        if self.background is not None:
            await self.background()


class ZeroCopyStreamResponse(Response):
    """A body made of byte chunks and local file spans; spans go out with sendfile if offered.

    ``Content-Length`` must be given: it is what keeps the connection usable afterwards.
    """

    def __init__(
        self,
        pieces: AsyncIterator[bytes | FileSpan],
        *,
        headers: Mapping[str, str],
        media_type: str,
        status_code: int = 200,
    ) -> None:
        self.pieces = pieces
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        zero_copy = EXTENSION in scope.get("extensions", {})
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for piece in self.pieces:
            if isinstance(piece, bytes):
                if piece:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                continue
            file = await asyncio.to_thread(open, piece.path, "rb")
            try:
                if os.fstat(file.fileno()).st_size != piece.size:
                    # Cut the response short: a truncated body, never wrong bytes.
                    raise RuntimeError(
                        f"{piece.path} does not have the {piece.size} bytes expected"
                    )
                await _send_file(file, 0, piece.size, send, zero_copy=zero_copy, more_body=True)
            finally:
                await asyncio.to_thread(file.close)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
