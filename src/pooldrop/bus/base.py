"""The bus interface: wake other processes up, never the source of truth.

pooldrop's durable per-pool event log lives in the database. The bus only carries short wake-ups
("pool P has events up to seq N", "group G became ready") so that other processes and nodes read
the log sooner than their periodic poll would. It may lose messages: while a subscriber is
disconnected nothing is yielded, and it catches up from the log.

    BusError            every backend failure (unreachable, refused, timed out), vendor errors
                        wrapped; the message names the URL with any password removed
    Subscription        an async iterator of payloads published after ``subscribe()`` returned
    Bus                 start / publish / subscribe / ping / close, one per process per URL
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

DEFAULT_QUEUE_SIZE = 10_000
"""Wake-ups a subscription buffers for a slow consumer before it drops the oldest."""

DEFAULT_CONNECT_TIMEOUT = 3.0
"""Seconds to wait for a backend before a call fails with ``BusError``."""

_TOPIC = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")


class BusError(Exception):
    """A bus backend failed: unreachable, refused, timed out or closed."""


class Subscription(Protocol):
    """Payloads published on one topic after ``Bus.subscribe()`` returned, in publish order.

    Iteration ends when the subscription or its bus is closed. A consumer slower than the
    publishers loses the oldest buffered payloads (counted in ``dropped``), never memory.
    """

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None:
        """Stop receiving; a pending or later iteration ends. Idempotent."""
        ...

    @property
    def dropped(self) -> int:
        """How many payloads were discarded because the buffer was full."""
        ...

    @property
    def pending(self) -> int:
        """How many payloads are buffered and not yet iterated."""
        ...


class Bus(ABC):
    """A topic-based wake-up bus. Build one with ``pooldrop.bus.open_bus(url)``.

    Constructing a bus does no I/O; ``start()`` connects. Usable as ``async with bus: ...``.
    """

    url: str
    """The configured URL with any password removed: safe for logs and error messages."""

    def __init__(self, url: str) -> None:
        """Parse ``url`` (``ValueError`` if malformed). Does no I/O."""
        self.url = redact_url(url)

    @abstractmethod
    async def start(self) -> None:
        """Connect. Raises ``BusError`` naming ``url`` within a few seconds if unreachable."""

    @abstractmethod
    async def publish(self, topic: str, payload: bytes) -> None:
        """Send ``payload`` to every current subscriber of ``topic``, on any node.

        Raises ``BusError`` quickly when the backend is down; callers log it and carry on.
        """

    @abstractmethod
    async def subscribe(self, topic: str) -> Subscription:
        """Subscribe to ``topic``; returns once a publish made after it will be delivered."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise ``BusError`` unless the backend answers (for readiness probes)."""

    @abstractmethod
    async def close(self) -> None:
        """End every subscription's iteration and release connections. Idempotent."""

    @property
    @abstractmethod
    def distributed(self) -> bool:
        """True when publishes reach other processes (False for ``memory://``)."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a short ASCII name, else raise ``ValueError``.

    The alphabet leaves out whitespace and the AMQP wildcards ``*`` and ``#`` so a topic means
    the same on every backend.
    """
    if not _TOPIC.fullmatch(topic):
        raise ValueError(
            f"invalid bus topic {topic!r}: use 1-200 characters of A-Z a-z 0-9 _ . : -"
        )
    return topic


def redact_url(url: str) -> str:
    """``url`` without its password, nor any query option whose name mentions a password."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hostinfo}" if user else hostinfo
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if "password" not in k]
    )
    # Built by hand: urlunsplit drops the "//" of an empty host (memory://) for unknown schemes.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def url_secrets(url: str) -> list[str]:
    """The secrets of ``url`` that must never appear in a message (see ``scrub``)."""
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [v for k, v in parse_qsl(parts.query) if "password" in k and v]
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced, for vendor messages that might echo a URL."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def describe(exc: BaseException, timeout: float | None = None) -> str:
    """A one-line reason for a vendor error, e.g. ``ConnectionRefusedError: ...``.

    A bare ``TimeoutError`` (as ``asyncio.timeout`` raises) says how long was waited.
    """
    text = str(exc).strip()
    if not text and isinstance(exc, TimeoutError) and timeout is not None:
        text = f"no answer within {timeout:g}s"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def pop_float(query: dict[str, str], name: str, default: float) -> float:
    """Remove option ``name`` from ``query`` and parse it as a positive number."""
    raw = query.pop(name, None)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValueError(f"bus URL option {name}={raw!r} must be a positive number")
    return value


def pop_int(query: dict[str, str], name: str, default: int) -> int:
    """Remove option ``name`` from ``query`` and parse it as a positive integer."""
    raw = query.pop(name, None)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError(f"bus URL option {name}={raw!r} must be a positive integer")
    return int(raw)


def query_dict(url: str) -> dict[str, str]:
    """The query options of ``url`` as a dict (last value wins)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def reject_unknown(query: Mapping[str, str], scheme: str) -> None:
    """Raise ``ValueError`` naming options left over after a backend took the ones it knows."""
    if query:
        names = ", ".join(sorted(query))
        raise ValueError(f"unknown option(s) for a {scheme}:// bus URL: {names}")
