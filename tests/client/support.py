"""Helpers for SDK tests: run blocking SDK code off the loop, and transports that misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking SDK code in a thread: the in-test server lives on this loop."""
    return await asyncio.to_thread(fn)


class Recording(httpx.HTTPTransport):
    """A real transport that remembers every request it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


class LoseAnswers(httpx.HTTPTransport):
    """Sends requests for real, but throws away the first ``n`` answers matching ``match``.

    The server did the work; the client saw a broken connection. That is the case a retry with
    the same ``client_upload_id`` must survive without creating a duplicate.
    """

    def __init__(self, n: int, match: Callable[[httpx.Request], bool]) -> None:
        super().__init__()
        self.left = n
        self.match = match
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.match(request):
            self.sent.append(request)
            if self.left > 0:
                self.left -= 1
                response.read()
                response.close()
                raise httpx.ReadError("connection reset (test)", request=request)
        return response


class Refuse(httpx.BaseTransport):
    """Every request fails to connect, as when the server is down."""

    def __init__(self) -> None:
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        raise httpx.ConnectError("connection refused (test)", request=request)


def no_sleep(_seconds: float) -> None:
    """A retry policy's sleep for tests: backoff is computed, not waited."""
