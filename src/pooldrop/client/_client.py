"""The synchronous client: every API call as a method, httpx underneath."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from pooldrop.client import _endpoints as ep
from pooldrop.client._batch import BatchEntry, guess_type, prepare_batch
from pooldrop.client._content import (
    Content,
    Timestamp,
    counting,
    format_ts,
    new_client_upload_id,
    open_source,
)
from pooldrop.client._download import Download, Progress
from pooldrop.client._endpoints import Call, EventBatch
from pooldrop.client._errors import TransportError
from pooldrop.client._events import EventStream
from pooldrop.client._models import (
    BatchResult,
    Claim,
    Enrollment,
    Group,
    Identity,
    Key,
    KeySecret,
    Member,
    Page,
    Pool,
    Result,
    Session,
    Upload,
)
from pooldrop.client._retry import NO_RETRY, RetryPolicy
from pooldrop.client._transport import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    auth_headers,
    check,
    mapped_errors,
    request_kwargs,
)
from pooldrop.client._tus import DEFAULT_CHUNK_SIZE, TusUpload

T = TypeVar("T")


def enroll(base_url: str, token: str, name: str, **client_kw: Any) -> KeySecret:
    """Enrol an app with a pool's enrolment token; the answer's ``secret`` is its new key."""
    with Client(base_url, **client_kw) as c:
        return c.enroll(token, name)


class Client:
    """A pooldrop client. Authenticate with ``api_key="pdk_..."``, ``token=`` or :meth:`login`.

    Idempotent calls (and uploads, which carry a ``client_upload_id``) are retried with
    exponential backoff and jitter per ``retry``. Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credential = api_key or token
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    # --- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def http(self) -> httpx.Client:
        """The underlying httpx client (for calls this SDK does not wrap)."""
        return self._http

    @property
    def auth_headers(self) -> dict[str, str]:
        return auth_headers(self.credential)

    def call(self, call: Call[T], *, retry: bool = True) -> T:
        """Send ``call``, retrying per the policy (unless ``retry=False``), and parse the answer."""
        policy = self.retry if retry else NO_RETRY
        for attempt in policy.retrying(call.idempotent):
            with attempt:
                return self._once(call)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _once(self, call: Call[T]) -> T:
        kw = request_kwargs(call, self.credential, is_async=False)
        request = self._http.build_request(call.method, call.path, **kw)
        with mapped_errors():
            response = self._http.send(request)
        return call.parse(check(response))

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        """An authenticated streamed request (answer status not checked)."""
        headers = {**self.auth_headers, **kw.pop("headers", {})}
        with mapped_errors(), self._http.stream(method, path, headers=headers, **kw) as r:
            yield r

    # --- auth -------------------------------------------------------------------------------

    def signup(self, username: str, password: str) -> Session:
        """Create a user and log in as it."""
        session = self.call(ep.signup(username, password))
        self.credential = session.access_token
        return session

    def login(self, username: str, password: str) -> Session:
        """Log in; later calls use the new access token."""
        session = self.call(ep.login(username, password))
        self.credential = session.access_token
        return session

    def logout(self) -> None:
        """End the server-side session; the token stops working at once."""
        self.call(ep.logout())
        self.credential = None

    def whoami(self) -> Identity:
        return self.call(ep.validate())

    def enroll(self, token: str, name: str) -> KeySecret:
        """Enrol with an enrolment token; this client then authenticates with the new key."""
        key = self.call(ep.enroll(token, name))
        self.credential = key.secret
        return key

    # --- pools, members, keys ---------------------------------------------------------------

    def create_pool(self, name: str, window: str | float, **settings: Any) -> Pool:
        """Create a pool (``allowed_lateness``, ``late_policy``, ``lease``... as keywords)."""
        return self.call(ep.create_pool(name, window, settings))

    def list_pools(self) -> list[Pool]:
        return self.call(ep.list_pools())

    def get_pool(self, pool_id: str) -> Pool:
        return self.call(ep.get_pool(pool_id))

    def update_pool(self, pool_id: str, **changes: Any) -> Pool:
        return self.call(ep.update_pool(pool_id, changes))

    def delete_pool(self, pool_id: str) -> None:
        self.call(ep.delete_pool(pool_id))

    def list_members(self, pool_id: str) -> list[Member]:
        return self.call(ep.list_members(pool_id))

    def set_member(self, pool_id: str, user_id: str, role: str) -> Member:
        return self.call(ep.set_member(pool_id, user_id, role))

    def remove_member(self, pool_id: str, user_id: str) -> None:
        self.call(ep.remove_member(pool_id, user_id))

    def create_key(self, pool_id: str, name: str, role: str) -> KeySecret:
        return self.call(ep.create_key(pool_id, name, role))

    def list_keys(self, pool_id: str) -> list[Key]:
        return self.call(ep.list_keys(pool_id))

    def revoke_key(self, pool_id: str, key_id: str) -> None:
        self.call(ep.revoke_key(pool_id, key_id))

    def create_enrollment(
        self, pool_id: str, role: str, max_uses: int, expires_in: str | float = "7d"
    ) -> Enrollment:
        return self.call(ep.create_enrollment(pool_id, role, max_uses, expires_in))

    # --- uploads ----------------------------------------------------------------------------

    def upload(
        self,
        pool_id: str,
        content: Content,
        *,
        ts: Timestamp | None = None,
        name: str | None = None,
        client_upload_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        content_type: str | None = None,
        progress: Progress | None = None,
    ) -> Upload:
        """Upload one file (a path, bytes or a binary file) with its event time ``ts``.

        The body is streamed with its sha256 in ``Content-Digest``; retries reuse the same
        ``client_upload_id`` (generated when not given), so the server stores it once.
        """
        with open_source(content, name=name) as source:
            call = ep.upload(
                pool_id,
                source,
                ts=format_ts(ts),
                name=source.name,
                client_upload_id=client_upload_id or new_client_upload_id(),
                metadata_json=_metadata_json(metadata),
                content_type=content_type or guess_type(source.name),
            )
            call.progress = progress
            return self.call(call)

    def upload_batch(
        self,
        pool_id: str,
        entries: Sequence[BatchEntry],
        *,
        retry: bool = True,
        progress: Progress | None = None,
    ) -> BatchResult:
        """Send many files in one multipart request; each file stands or falls alone.

        Safe to retry: every entry carries a ``client_upload_id`` (generated when missing).
        """
        with prepare_batch(entries) as (body, _parts):
            call: Call[BatchResult] = Call(
                "POST",
                ep.pool_path(pool_id, "batches"),
                ep.model(BatchResult),
                body=body,
                progress=progress,
            )
            return self.call(call, retry=retry)

    def upload_resumable(
        self,
        pool_id: str,
        content: Content,
        *,
        ts: Timestamp | None = None,
        name: str | None = None,
        client_upload_id: str | None = None,
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        url: str | None = None,
        on_url: Callable[[str], None] | None = None,
        progress: Progress | None = None,
    ) -> Upload:
        """Upload a large file with tus: chunked PATCHes that resume from the server's offset.

        A dropped connection is resumed in place (HEAD, then the missing bytes). To resume after
        a restart, keep the URL ``on_url`` reports and pass it back as ``url``.
        """
        with open_source(content, name=name) as source:
            tus = TusUpload(
                f"{self.base_url}{ep.API}/tus/",
                source,
                {
                    "pool_id": pool_id,
                    "ts": format_ts(ts),
                    "filename": source.name,
                    "client_upload_id": client_upload_id or new_client_upload_id(),
                    "filetype": content_type or "",
                    "sha256": source.sha256_hex,
                    "metadata": _metadata_json(metadata) or "",
                },
                chunk_size=chunk_size,
                url=url,
                attempts=self.retry.attempts,
            )
            reported = url
            while not tus.done:
                if on_url is not None and tus.url is not None and tus.url != reported:
                    reported = tus.url
                    on_url(tus.url)
                req = tus.next_request()
                body = (
                    counting(source.chunks(req.start, req.end), progress)
                    if req.method == "PATCH"
                    else None
                )
                headers = {**req.headers, **self.auth_headers}
                try:
                    with mapped_errors():
                        response = self._http.request(
                            req.method, req.url, headers=headers, content=body
                        )
                except TransportError as e:
                    tus.failed(e)
                    (self.retry.sleep or time.sleep)(self.retry.delay(tus.failures))
                    continue
                tus.handle(req, response)
            assert tus.upload_id is not None
            return self.get_upload(pool_id, tus.upload_id)

    def list_uploads(
        self,
        pool_id: str | None = None,
        *,
        mine: bool | None = None,
        group_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Upload]:
        """One page of upload history (``pool_id=None``: the caller's own, across pools)."""
        return self.call(
            ep.list_uploads(
                pool_id, mine=mine, group_id=group_id, status=status, limit=limit, cursor=cursor
            )
        )

    def iter_uploads(self, pool_id: str | None = None, **filters: Any) -> Iterator[Upload]:
        """Every upload matching ``filters``, following the pages."""
        cursor: str | None = None
        while True:
            page = self.list_uploads(pool_id, cursor=cursor, **filters)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_upload(self, pool_id: str, upload_id: str) -> Upload:
        return self.call(ep.get_upload(pool_id, upload_id))

    def download_upload(
        self, upload: Upload, dest: str | Path, *, progress: Progress | None = None
    ) -> Path:
        """Save an upload's content to ``dest``, verified against its sha256."""
        path = ep.pool_path(upload.pool_id, "uploads", upload.upload_id, "content")
        return self._download(path, Path(dest), upload.sha256, progress)

    # --- groups -----------------------------------------------------------------------------

    def list_groups(
        self,
        pool_id: str,
        *,
        state: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Group]:
        return self.call(ep.list_groups(pool_id, state=state, limit=limit, cursor=cursor))

    def get_group(self, pool_id: str, group_id: str) -> Group:
        """A group with its ``manifest`` (the uploads in it)."""
        return self.call(ep.get_group(pool_id, group_id))

    def close_group(self, pool_id: str, group_id: str) -> Group:
        return self.call(ep.close_group(pool_id, group_id))

    def claim(self, pool_id: str, *, wait: float = 0) -> Claim | None:
        """Claim the oldest ready group, waiting up to ``wait`` seconds; ``None`` if none."""
        return self.call(ep.claim(pool_id, wait))

    def claim_group(self, pool_id: str, group_id: str) -> Claim:
        """Claim this group (closing it first if it is still open)."""
        return self.call(ep.claim_group(pool_id, group_id))

    def heartbeat(self, claim: Claim) -> Claim:
        """Extend the lease (the answer has the new expiry); :class:`LeaseLost` if it is gone."""
        return self.call(ep.heartbeat(claim.group.pool_id, claim.group.group_id, claim.lease_id))

    def release(self, claim: Claim) -> Group:
        """Give the group back: ``ready`` again, or ``failed`` after its last attempt."""
        return self.call(ep.release(claim.group.pool_id, claim.group.group_id, claim.lease_id))

    def download_archive(
        self, claim: Claim, dest: str | Path, *, progress: Progress | None = None
    ) -> Path:
        """Save the claimed group's files and ``manifest.json`` as one tar file at ``dest``."""
        g = claim.group
        path = ep.pool_path(g.pool_id, "groups", g.group_id, "archive")
        return self._download(path, Path(dest), None, progress, params={"lease_id": claim.lease_id})

    def put_result(self, claim: Claim, content: Content, *, name: str | None = None) -> Result:
        """Upload the group's one result file; the group becomes ``done``."""
        with open_source(content, name=name) as source:
            g = claim.group
            return self.call(
                ep.put_result(g.pool_id, g.group_id, claim.lease_id, source, source.name)
            )

    # --- results and events -----------------------------------------------------------------

    def list_results(
        self,
        pool_id: str,
        *,
        group_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Result]:
        """One page of the pool's results, newest first."""
        return self.call(ep.list_results(pool_id, group_id=group_id, limit=limit, cursor=cursor))

    def latest_result(self, pool_id: str) -> Result:
        return self.call(ep.latest_result(pool_id))

    def get_result(self, pool_id: str, result_id: str) -> Result:
        return self.call(ep.get_result(pool_id, result_id))

    def download_result(
        self, result: Result, dest: str | Path, *, progress: Progress | None = None
    ) -> Path:
        """Save a result to ``dest``: resumed with ``Range``, verified against its sha256."""
        path = ep.pool_path(result.pool_id, "results", result.result_id, "content")
        return self._download(path, Path(dest), result.sha256, progress)

    def poll_events(
        self,
        pool_id: str,
        *,
        after: int | None = None,
        wait: float | None = None,
        limit: int | None = None,
    ) -> EventBatch:
        """One long-poll: events after ``after``, waiting up to ``wait`` seconds for one."""
        call = ep.poll_events(pool_id, after=after, wait=wait, limit=limit)
        return self.call(call)

    def events(
        self,
        pool_id: str,
        *,
        after: int | None = None,
        transport: str = "auto",
        types: Sequence[str] | None = None,
    ) -> EventStream:
        """Follow a pool's events forever, from ``after`` on, over ``transport``.

        ``auto`` uses the WebSocket, falling back to SSE and then long-poll when the server lacks
        one; a dropped connection is reopened from the last cursor and no event repeats.
        """
        return EventStream(self, pool_id, after=after, transport=transport, types=types)

    # --- helpers ----------------------------------------------------------------------------

    def _download(
        self,
        path: str,
        dest: Path,
        sha256: str | None,
        progress: Progress | None,
        params: dict[str, Any] | None = None,
    ) -> Path:
        dl = Download(dest, sha256, progress)
        if dl.already_done():
            return dest
        for attempt in self.retry.retrying(True):
            with attempt:
                try:
                    with self.stream("GET", path, params=params, headers=dl.request_headers()) as r:
                        if not r.is_success:
                            r.read()
                        if dl.begin(r):
                            with mapped_errors():
                                for chunk in r.iter_bytes():
                                    dl.write(chunk)
                    return dl.finish()
                finally:
                    dl.abort()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def _metadata_json(metadata: dict[str, Any] | None) -> str | None:
    return None if metadata is None else json.dumps(metadata, separators=(",", ":"))
