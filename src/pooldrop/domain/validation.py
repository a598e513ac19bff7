"""Validation of what clients send: file names, metadata, upload ids, digests, credentials.

Every function returns the clean value or raises :class:`ValidationFailed` with a detail a person
can act on. The digest parsers live in :mod:`pooldrop.domain.digests` and are re-exported here.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

from pooldrop.domain.digests import expected_sha256, parse_content_digest, parse_upload_checksum
from pooldrop.errors import ValidationFailed

__all__ = [
    "MAX_FILENAME_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "expected_sha256",
    "parse_content_digest",
    "parse_upload_checksum",
    "validate_client_upload_id",
    "validate_filename",
    "validate_metadata",
    "validate_password",
    "validate_username",
]

MAX_FILENAME_BYTES = 255
MAX_METADATA_BYTES = 4096
MAX_METADATA_DEPTH = 8
"""The top-level object is depth 1; each nested object or array adds one."""
MIN_PASSWORD, MAX_PASSWORD = 8, 1024

# Text this large cannot compact below the limit; refuse it before the JSON parser sees it.
_MAX_METADATA_INPUT = 64 * 1024
_CLIENT_UPLOAD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,63}", re.ASCII)
# Bidi overrides and isolates make "evil\u202eexe.txt" display as "eviltxt.exe"; line and
# paragraph separators break headers and logs.
_SPOOFING = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def validate_filename(name: str) -> str:
    """Check an uploaded file's name and return it NFC-normalised.

    Refused: empty, ``.``, ``..``, any ``/`` or ``\\``, control characters (C0 incl. NUL, DEL, C1),
    bidirectional overrides and line separators, lone surrogates, leading or trailing whitespace,
    and names over 255 bytes of UTF-8.
    """
    if not isinstance(name, str):
        raise ValidationFailed("file name must be text")
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise ValidationFailed("file name is empty")
    if name in (".", ".."):
        raise ValidationFailed(f"file name {name!r} is not allowed")
    if "/" in name or "\\" in name:
        raise ValidationFailed(f"file name {name!r} must not contain '/' or '\\'")
    for char in name:
        if _is_control(char):
            raise ValidationFailed(
                f"file name {name!r} contains a control character (U+{ord(char):04X})"
            )
        if char in _SPOOFING:
            raise ValidationFailed(
                f"file name {name!r} contains a bidirectional or line-separator character "
                f"(U+{ord(char):04X})"
            )
        if unicodedata.category(char) == "Cs":
            raise ValidationFailed(f"file name {name!r} is not valid Unicode (lone surrogate)")
    if name[0].isspace() or name[-1].isspace():
        raise ValidationFailed(f"file name {name!r} must not start or end with whitespace")
    size = len(name.encode("utf-8"))
    if size > MAX_FILENAME_BYTES:
        raise ValidationFailed(
            f"file name is {size} bytes of UTF-8; at most {MAX_FILENAME_BYTES} are allowed"
        )
    return name


def _check_text(text: str) -> None:
    # JSON's "\\ud800" escape decodes to a lone surrogate that no database or encoder will take.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationFailed("metadata text is not valid Unicode (lone surrogate)") from None


def _check_json_value(value: object, depth: int) -> None:
    """Only JSON types, string keys, finite numbers and bounded depth (stops early, so a cyclic
    structure is refused rather than recursed into forever)."""
    if isinstance(value, dict | list):
        if depth > MAX_METADATA_DEPTH:
            raise ValidationFailed(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ValidationFailed(f"metadata keys must be strings, got {key!r}")
                _check_text(key)
                _check_json_value(item, depth + 1)
        else:
            for item in value:
                _check_json_value(item, depth + 1)
    elif isinstance(value, str):
        _check_text(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationFailed("metadata numbers must be finite")
    elif value is not None and not isinstance(value, bool | int | str):
        raise ValidationFailed(f"metadata values must be JSON, got {type(value).__name__}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValidationFailed(f"metadata has the key {key!r} twice")
        out[key] = value
    return out


def _no_constants(token: str) -> Any:
    raise ValidationFailed(f"metadata numbers must be finite, got {token}")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValidationFailed(f"metadata number {token} is out of range")
    return value


def _loads(text: str) -> Any:
    if len(text) > _MAX_METADATA_INPUT:
        raise ValidationFailed(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constants,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise ValidationFailed(
            f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"metadata is not valid JSON: {exc}") from None
    except ValueError:  # an integer literal longer than Python converts (4300 digits)
        raise ValidationFailed("metadata is not valid JSON: a number is too long") from None


def validate_metadata(raw: str | bytes | dict[str, Any] | None) -> dict[str, Any]:
    """Check client metadata and return it as a fresh dict.

    Text or UTF-8 bytes are parsed as JSON; a dict is checked as is. The result must be a JSON
    object of at most 4 KiB in compact UTF-8 encoding, nested at most 8 levels deep, with no
    duplicate keys and only finite numbers. ``None`` means no metadata: ``{}``.
    """
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("metadata is not valid UTF-8") from None
    value: Any = _loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        raise ValidationFailed("metadata must be a JSON object")
    _check_json_value(value, 1)
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    size = len(compact.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ValidationFailed(
            f"metadata is {size} bytes as compact JSON; at most {MAX_METADATA_BYTES} are allowed"
        )
    if isinstance(raw, str):
        return value
    # A deep copy that also drops any subclass (OrderedDict, a str enum...) for plain JSON types.
    copied: dict[str, Any] = json.loads(compact)
    return copied


DEFAULT_CONTENT_TYPE = "application/octet-stream"


def validate_content_type(raw: str | None) -> str:
    """A file's declared media type (default ``application/octet-stream``); ValidationFailed if
    it is over 255 characters or holds control characters."""
    if not raw:
        return DEFAULT_CONTENT_TYPE
    value = raw.strip()
    if len(value) > 255 or any(ord(c) < 32 for c in value):
        raise ValidationFailed("Content-Type is not valid")
    return value


_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)


def parse_sha256_hex(value: object, what: str = "sha256") -> bytes | None:
    """A SHA-256 given as 64 hexadecimal digits (None stays None); ValidationFailed otherwise."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise ValidationFailed(f"{what} must be 64 hexadecimal digits")
    return bytes.fromhex(value)


def parse_count(raw: str, what: str) -> int:
    """A non-negative integer given as text (a header or query value); ValidationFailed if not."""
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{what} must be an integer") from None
    if value < 0:
        raise ValidationFailed(f"{what} must be >= 0")
    return value


def validate_client_upload_id(value: str | None) -> str | None:
    """A client's idempotency key: 1 to 128 of ``A-Z a-z 0-9 . _ : -``; ``None`` passes through."""
    if value is None:
        return None
    if not isinstance(value, str) or not _CLIENT_UPLOAD_ID.fullmatch(value):
        raise ValidationFailed(
            "client_upload_id must be 1 to 128 characters of letters, digits, '.', '_', ':' or '-'"
        )
    return value


def validate_username(name: str) -> str:
    """3 to 64 characters of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit."""
    if not isinstance(name, str) or not _USERNAME.fullmatch(name):
        raise ValidationFailed(
            "username must be 3 to 64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_password(pw: str) -> str:
    """8 to 1024 characters (the upper bound keeps password hashing cheap to refuse)."""
    if not isinstance(pw, str):
        raise ValidationFailed("password must be text")
    if not MIN_PASSWORD <= len(pw) <= MAX_PASSWORD:
        raise ValidationFailed(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    return pw
