"""A streamed ``multipart/form-data`` body for batches: the manifest part first, then the files.

httpx's own multipart encoder puts form fields before files too, but reads files synchronously
inside the event loop and cannot tell the length up front; this one knows its exact length (so the
request carries ``Content-Length``) and reads the disk off the loop in the async client.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

from pooldrop.client._content import Source


@dataclass(frozen=True)
class FilePart:
    """One file of a multipart body, under the form field ``part``."""

    part: str
    filename: str
    source: Source
    content_type: str = "application/octet-stream"


def _quote(value: str) -> str:
    # As browsers do (WHATWG multipart encoding): escape only what would break the header.
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """Iterate it (sync or async) to get the encoded body; ``headers`` carry type and length."""

    def __init__(self, manifest: bytes, files: Sequence[FilePart]) -> None:
        self.boundary = secrets.token_hex(16)
        self._manifest = manifest
        self._files = list(files)
        self._pieces: list[bytes | FilePart] = []
        b = self.boundary.encode()
        self._pieces.append(
            b"--" + b + b"\r\n"
            b'Content-Disposition: form-data; name="manifest"\r\n'
            b"Content-Type: application/json\r\n\r\n" + manifest + b"\r\n"
        )
        for fp in self._files:
            head = (
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="{_quote(fp.part)}"; '
                f'filename="{_quote(fp.filename)}"\r\n'
                f"Content-Type: {fp.content_type}\r\n\r\n"
            )
            self._pieces += [head.encode(), fp, b"\r\n"]
        self._pieces.append(b"--" + b + b"--\r\n")

    @property
    def length(self) -> int:
        return sum(p.source.size if isinstance(p, FilePart) else len(p) for p in self._pieces)

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            "Content-Length": str(self.length),
        }

    def __iter__(self) -> Iterator[bytes]:
        for p in self._pieces:
            if isinstance(p, FilePart):
                yield from p.source.chunks()
            else:
                yield p

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for p in self._pieces:
            if isinstance(p, FilePart):
                async for chunk in p.source.achunks():
                    yield chunk
            else:
                yield p
