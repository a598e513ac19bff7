"""The web console: static HTML, one stylesheet and ES modules, served at ``/console``.

No build step and nothing fetched from elsewhere at run time: the console must work on a machine
that is offline. The files live in ``static/`` next to this module and ship in the wheel.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "static"
"""Where the console's files are."""

MOUNT_PATH = "/console"
"""The URL prefix of the console."""

# The console keeps an access token in sessionStorage, so script injection would be costly:
# only our own files may run or be fetched, and the page may not be framed (clickjacking).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class _SecureStaticFiles(StaticFiles):
    """StaticFiles that adds ``SECURITY_HEADERS`` to every response it sends."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def mount(app: FastAPI) -> None:
    """Serve the console at ``/console/`` and redirect ``/`` there."""
    app.mount(MOUNT_PATH, _SecureStaticFiles(directory=STATIC_DIR, html=True), name="console")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{MOUNT_PATH}/", status_code=307)
