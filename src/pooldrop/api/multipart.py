"""A pull-based ``multipart/form-data`` reader over a streamed request body.

``python-multipart`` is a push parser: each body chunk written to it fires callbacks. Here the
callbacks only queue small events, and the reader feeds the parser the next chunk only when those
are used up, so a part's bytes flow to whoever iterates the part as the request arrives. At most
one body chunk's worth of data is held, whatever the size of a part or of the whole request.

    async with aclosing(read_parts(content_type, request.stream())) as parts:
        async for part in parts:          # part.name, part.content_type
            async for chunk in part: ...  # or: await part.read(limit), or skip it entirely
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from enum import Enum, auto
from typing import Self

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from pooldrop.errors import PooldropError, UnsupportedMediaType, ValidationFailed

MAX_HEADER_SIZE = 8192
MAX_HEADER_COUNT = 16


class MalformedMultipart(ValidationFailed):
    """The body is not valid multipart; nothing after this point can be read."""


class _Ev(Enum):
    PART_BEGIN = auto()
    HEADER = auto()
    HEADERS_DONE = auto()
    DATA = auto()
    PART_END = auto()
    END = auto()


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; UnsupportedMediaType otherwise."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind.lower() != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType("send multipart/form-data with a boundary")
    return boundary


class _Events:
    """The parser and the events its callbacks queued, fed one body chunk at a time."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        self._body = body
        self._queue: deque[tuple[_Ev, bytes, bytes]] = deque()
        self._field = bytearray()
        self._value = bytearray()
        self._ended = False
        self._error: PooldropError | None = None
        try:
            self._parser = MultipartParser(
                boundary,
                callbacks={
                    "on_part_begin": lambda: self._push(_Ev.PART_BEGIN),
                    "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
                    "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
                    "on_header_end": self._header_end,
                    "on_headers_finished": lambda: self._push(_Ev.HEADERS_DONE),
                    "on_part_data": lambda d, s, e: self._push(_Ev.DATA, bytes(d[s:e])),
                    "on_part_end": lambda: self._push(_Ev.PART_END),
                    "on_end": self._end,
                },
                max_header_count=MAX_HEADER_COUNT,
                max_header_size=MAX_HEADER_SIZE,
            )
        except (MultipartParseError, ValueError) as exc:
            raise MalformedMultipart(f"bad multipart boundary: {exc}") from None

    def _push(self, kind: _Ev, data: bytes = b"", extra: bytes = b"") -> None:
        if kind is not _Ev.DATA or data:
            self._queue.append((kind, data, extra))

    def _header_end(self) -> None:
        self._push(_Ev.HEADER, bytes(self._field), bytes(self._value))
        self._field.clear()
        self._value.clear()

    def _end(self) -> None:
        self._ended = True
        self._push(_Ev.END)

    async def next(self) -> tuple[_Ev, bytes, bytes]:
        if self._error is not None:
            raise self._error
        while not self._queue:
            if self._ended:
                return (_Ev.END, b"", b"")
            chunk = await anext(self._body, None)
            if chunk is None:
                self._error = MalformedMultipart(
                    "the multipart body ended before its last boundary"
                )
                raise self._error
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                self._error = MalformedMultipart(f"malformed multipart body: {exc}")
                raise self._error from None
        return self._queue.popleft()


class Part:
    """One part: its headers, then its bytes as an async iterator (each chunk read once)."""

    def __init__(self, events: _Events, headers: dict[str, str]) -> None:
        self._events = events
        self.headers = headers
        disposition, options = parse_options_header(headers.get("content-disposition", ""))
        self.is_form_data = disposition.lower() == b"form-data"
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        self.content_type = headers.get("content-type")
        self.done = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        while not self.done:
            kind, data, _ = await self._events.next()
            if kind is _Ev.DATA:
                return data
            if kind in (_Ev.PART_END, _Ev.END):
                self.done = True
        raise StopAsyncIteration

    async def read(self, limit: int) -> bytes:
        """The whole part, for small ones; ValidationFailed past ``limit`` bytes."""
        data = bytearray()
        async for chunk in self:
            data += chunk
            if len(data) > limit:
                raise ValidationFailed(f"part {self.name!r} is larger than {limit} bytes")
        return bytes(data)

    async def skip(self) -> None:
        """Read past what is left of this part."""
        async for _ in self:
            pass


async def read_parts(
    content_type: str | None, body: AsyncIterator[bytes]
) -> AsyncGenerator[Part, None]:
    """The parts of a ``multipart/form-data`` body, in order. Whatever a consumer leaves of a part
    is skipped when it asks for the next one. Errors: UnsupportedMediaType, MalformedMultipart."""
    events = _Events(body, boundary_of(content_type))
    while True:
        kind, _, _ = await events.next()
        if kind is _Ev.END:
            return
        if kind is not _Ev.PART_BEGIN:
            continue
        headers: dict[str, str] = {}
        while True:
            kind, field, value = await events.next()
            if kind is _Ev.HEADERS_DONE:
                break
            if kind is _Ev.HEADER:
                headers[field.decode("latin-1").strip().lower()] = value.decode("utf-8", "replace")
        part = Part(events, headers)
        yield part
        await part.skip()
