"""Parsing the query options of storage URLs, and keeping secrets out of the URL we show."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

_SIZE = re.compile(r"\s*(\d+)\s*([KMG]i?B|B)?\s*", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def query_options(url: str, known: Iterable[str]) -> dict[str, str]:
    """The URL's query options as a dict; an option not in ``known`` is a ``ValueError`` (a typo
    in a deployment's URL should stop the process, not be silently ignored)."""
    allowed = set(known)
    options: dict[str, str] = {}
    for name, value in _pairs(urlsplit(url).query):
        if name not in allowed:
            known_list = ", ".join(sorted(allowed)) or "none"
            raise ValueError(f"unknown option {name!r} in storage URL; known options: {known_list}")
        options[name] = value
    return options


def _pairs(query: str) -> list[tuple[str, str]]:
    """Split a query string. Unlike form decoding, ``+`` stays a plus: AWS secret keys contain
    them, and in a URL (RFC 3986) a plus is just a plus."""
    pairs = []
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def parse_size(name: str, value: str) -> int:
    """``"8MiB"``, ``"5MB"``, ``"1048576"`` -> bytes."""
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f"option {name}={value!r} is not a size like 8MiB, 5MB or 1048576")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"option {name}={value!r} is not a boolean (1/0, true/false)")


def parse_seconds(name: str, value: str) -> float:
    try:
        seconds = float(value.strip().removesuffix("s"))
    except ValueError:
        raise ValueError(f"option {name}={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"option {name}={value!r} must be > 0")
    return seconds


def redact(url: str, secret_options: Iterable[str] = ()) -> str:
    """``url`` without the password of its user info and without the named query options."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{host}" if user else host
    hidden = set(secret_options)
    query = "&".join(
        item
        for item in parts.query.split("&")
        if item and unquote(item.partition("=")[0]) not in hidden
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
