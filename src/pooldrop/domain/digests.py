"""Integrity headers: RFC 9530 ``Content-Digest`` and tus ``Upload-Checksum``.

``Content-Digest`` is an RFC 8941 structured-field Dictionary whose values are Byte Sequences
(``sha-256=:<base64>:, sha-512=:<base64>:``), optionally with parameters, which are parsed and
ignored. Only what those two headers need of RFC 8941 is implemented.
"""

from __future__ import annotations

import base64
import binascii
import re

from pooldrop.errors import ValidationFailed

DIGEST_SIZES: dict[str, int] = {"sha-256": 32, "sha-512": 64}
"""Byte lengths of the RFC 9530 algorithms whose length we check; others are passed through."""

UPLOAD_CHECKSUM_SIZES: dict[str, int] = {"sha1": 20, "sha256": 32, "sha512": 64, "md5": 16}
"""tus checksum algorithms understood by :func:`parse_upload_checksum`, with digest lengths."""

_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*", re.ASCII)
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*", re.ASCII)
_NUMBER = re.compile(r"-?\d{1,15}(?:\.\d{1,3})?", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII)
_MAX_HEADER = 8192


def _malformed(why: str) -> ValidationFailed:
    return ValidationFailed(f"malformed Content-Digest header: {why}")


def _b64decode(text: str, fail: ValidationFailed) -> bytes:
    if not _BASE64.fullmatch(text):
        raise fail
    # RFC 8941 asks parsers to tolerate missing "=" padding.
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise fail from None


class _Parser:
    """A cursor over one header value (RFC 8941 section 4.2)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None or not found.group():
            raise _malformed(f"expected {what} at position {self.pos}")
        self.pos = found.end()
        return found.group()

    def byte_sequence(self) -> bytes:
        end = self.text.find(":", self.pos + 1)
        if self.peek() != ":" or end < 0:
            raise _malformed(f"expected a byte sequence ':<base64>:' at position {self.pos}")
        raw = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return _b64decode(raw, _malformed(f"bad base64 in byte sequence {raw!r}"))

    def string(self) -> None:
        self.pos += 1
        while True:
            char = self.peek()
            if not char:
                raise _malformed("unterminated string")
            self.pos += 1
            if char == '"':
                return
            if char == "\\":
                if self.peek() not in ('"', "\\"):
                    raise _malformed("bad escape in string")
                self.pos += 1
            elif not " " <= char <= "~":
                raise _malformed("bad character in string")

    def bare_item(self) -> None:
        """Consume a bare item of a parameter; its value is not needed."""
        char = self.peek()
        if char == ":":
            self.byte_sequence()
        elif char == '"':
            self.string()
        elif char == "?":
            self.pos += 1
            if self.peek() not in ("0", "1"):
                raise _malformed("bad boolean")
            self.pos += 1
        elif char == "-" or char.isdigit():
            self.match(_NUMBER, "a number")
        else:
            self.match(_TOKEN, "a parameter value")

    def parameters(self) -> None:
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            self.match(_KEY, "a parameter name")
            if self.peek() == "=":
                self.pos += 1
                self.bare_item()


def parse_content_digest(header: str) -> dict[str, bytes]:
    """Parse an RFC 9530 ``Content-Digest`` value into ``{algorithm: raw digest bytes}``.

    Keys are lowercase algorithm names as sent (``sha-256``); a repeated key keeps the last value
    (as RFC 8941 says). ``sha-256``/``sha-512`` digests of the wrong length, values that are not
    byte sequences and any syntax error raise :class:`ValidationFailed`. An empty value is an
    empty dictionary.
    """
    if not isinstance(header, str):
        raise _malformed("expected text")
    if len(header) > _MAX_HEADER:
        raise _malformed("too long")
    parser = _Parser(header.strip(" \t"))
    result: dict[str, bytes] = {}
    if not parser.text:
        return result
    while True:
        key = parser.match(_KEY, "an algorithm name (lowercase, e.g. sha-256)")
        if parser.peek() != "=":
            raise _malformed(f"{key} has no value; expected {key}=:<base64>:")
        parser.pos += 1
        digest = parser.byte_sequence()
        parser.parameters()
        expected = DIGEST_SIZES.get(key)
        if expected is not None and len(digest) != expected:
            raise _malformed(f"{key} digest must be {expected} bytes, got {len(digest)}")
        result[key] = digest
        parser.skip(" \t")
        if not parser.peek():
            return result
        if parser.peek() != ",":
            raise _malformed(f"expected ',' at position {parser.pos}")
        parser.pos += 1
        parser.skip(" \t")
        if not parser.peek():
            raise _malformed("trailing comma")


def expected_sha256(header: str | None) -> bytes | None:
    """The SHA-256 a client declared in ``Content-Digest``, or ``None`` if it declared none."""
    if header is None:
        return None
    return parse_content_digest(header).get("sha-256")


def parse_upload_checksum(header: str) -> tuple[str, bytes]:
    """Parse a tus ``Upload-Checksum`` value (``"sha256 <base64>"``) into (algorithm, digest).

    Unknown algorithms, bad base64 and wrong digest lengths raise :class:`ValidationFailed`
    (tus answers 400 for an unsupported algorithm).
    """
    parts = header.strip().split(" ") if isinstance(header, str) else []
    if len(parts) != 2:
        raise ValidationFailed("malformed Upload-Checksum header: expected '<algorithm> <base64>'")
    algorithm, encoded = parts[0].lower(), parts[1]
    size = UPLOAD_CHECKSUM_SIZES.get(algorithm)
    if size is None:
        supported = ", ".join(sorted(UPLOAD_CHECKSUM_SIZES))
        raise ValidationFailed(
            f"unsupported checksum algorithm {parts[0]!r}; use one of {supported}"
        )
    digest = _b64decode(encoded, ValidationFailed("malformed Upload-Checksum header: bad base64"))
    if len(digest) != size:
        raise ValidationFailed(f"{algorithm} checksum must be {size} bytes, got {len(digest)}")
    return algorithm, digest
