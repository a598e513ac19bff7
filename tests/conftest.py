"""Fixtures shared by the whole suite.

Every test that asks for ``stack`` (directly, or through ``db_url``, ``settings``, ``server``) runs
once per backend stack: ``sqlite`` (the embedded default: SQLite, local disk, memory bus),
``postgresql`` (PostgreSQL, local disk, memory bus) and ``pg-s3-redis`` (PostgreSQL, a real S3
server started by the tests, Redis); ``pg-s3-amqp`` is available too. Choose with
POOLDROP_TEST_STACKS=sqlite,postgresql (or POOLDROP_TEST_DATABASES=sqlite for the SQLite stack
only). A missing service is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pooldrop.clock import FakeClock
from pooldrop.config import Settings
from tests.support.api import Api
from tests.support.databases import PostgresTemplates, SqliteTemplates
from tests.support.s3server import create_bucket, s3_url, start_s3_server
from tests.support.server import LiveServer, live_server

START = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
S3_BUCKET = "pooldrop-blobs"

BUS_URLS = {
    "memory": "memory://",
    "redis": "redis://127.0.0.1:6379/15",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/",
}


@dataclass(frozen=True)
class Stack:
    database: str  # sqlite | postgresql
    storage: str  # file | s3
    bus: str  # a key of BUS_URLS


STACKS = {
    "sqlite": Stack("sqlite", "file", "memory"),
    "postgresql": Stack("postgresql", "file", "memory"),
    "pg-s3-redis": Stack("postgresql", "s3", "redis"),
    "pg-s3-amqp": Stack("postgresql", "s3", "amqp"),
}


def selected_stacks() -> list[str]:
    raw = os.environ.get("POOLDROP_TEST_STACKS")
    if raw is None:
        databases = os.environ.get("POOLDROP_TEST_DATABASES")
        if databases is not None:
            return [d.strip() for d in databases.split(",") if d.strip()]
        return ["sqlite", "postgresql", "pg-s3-redis"]
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in STACKS]
    if unknown:
        raise RuntimeError(f"unknown POOLDROP_TEST_STACKS {unknown}: choose from {list(STACKS)}")
    return names


@pytest.fixture(params=selected_stacks())
def stack(request: pytest.FixtureRequest) -> Stack:
    return STACKS[request.param]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, with the bucket ``S3_BUCKET``."""
    endpoint, stop = start_s3_server()
    try:
        create_bucket(endpoint, S3_BUCKET)
        yield endpoint
    finally:
        stop()


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplates:
    return SqliteTemplates(tmp_path_factory.mktemp("sqlite-template"))


def _run_in_thread(coro: Coroutine[object, object, None]) -> None:
    # Session fixtures may be first requested from inside a running test loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def pg_templates() -> Iterator[PostgresTemplates]:
    templates = PostgresTemplates()
    _run_in_thread(templates.setup())
    yield templates
    _run_in_thread(templates.teardown())


@pytest.fixture
async def db_url(
    stack: Stack, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    if stack.database == "sqlite":
        yield request.getfixturevalue("sqlite_templates").fresh(tmp_path / "db")
        return
    templates: PostgresTemplates = request.getfixturevalue("pg_templates")
    name, url = await templates.fresh()
    yield url
    await templates.drop(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def storage_url(stack: Stack, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if stack.storage == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        return s3_url(endpoint, S3_BUCKET, f"t{uuid.uuid4().hex}", part_size="5MiB")
    return f"file://{tmp_path / 'blobs'}"


@pytest.fixture
def bus_url(stack: Stack) -> str:
    return BUS_URLS[stack.bus]


@pytest.fixture
def settings(db_url: str, storage_url: str, bus_url: str, tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=db_url,
        storage_url=storage_url,
        bus_url=bus_url,
        secret_key="test-secret-key-that-is-long-enough-for-hs256",
        # Cheap hashes keep the suite fast; production cost is the default.
        password_time_cost=1,
        password_memory_kib=1024,
    )


@pytest.fixture
async def server(settings: Settings, clock: FakeClock) -> AsyncIterator[LiveServer]:
    async with live_server(settings, clock) as srv:
        yield srv


@pytest.fixture
async def api(server: LiveServer) -> AsyncIterator[Api]:
    async with Api(server) as a:
        yield a


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Nothing in this suite may be skipped: a skip means something was not tested.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"error: {skipped} test(s) skipped; every test must run", red=True)
