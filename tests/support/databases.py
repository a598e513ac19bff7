"""Per-test databases: migrated once into a template, then copied for each test.

SQLite: the template file is copied. PostgreSQL: ``CREATE DATABASE ... TEMPLATE`` (a file copy on
the server), so every test starts from a freshly migrated schema without running Alembic again.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import asyncpg

from pooldrop.store.migrate import upgrade

PG_ADMIN_DSN = os.environ.get(
    "POOLDROP_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
START_PG_HINT = (
    "PostgreSQL is not reachable at 127.0.0.1:5432. Start it with "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "or run only SQLite with POOLDROP_TEST_DATABASES=sqlite."
)


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{dbname}"


class SqliteTemplates:
    def __init__(self, root: Path) -> None:
        self.template = root / "template.db"
        upgrade(f"sqlite+aiosqlite:///{self.template}")

    def fresh(self, directory: Path) -> str:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / "pooldrop.db"
        shutil.copyfile(self.template, target)
        return f"sqlite+aiosqlite:///{target}"


class PostgresTemplates:
    def __init__(self) -> None:
        self.prefix = f"pdt_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.template = f"{self.prefix}_template"
        self.created: list[str] = []

    async def setup(self) -> None:
        try:
            conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            raise RuntimeError(f"{START_PG_HINT} ({exc})") from exc
        try:
            await conn.execute(f'CREATE DATABASE "{self.template}"')
        finally:
            await conn.close()
        upgrade(_pg_url(self.template))

    async def fresh(self) -> tuple[str, str]:
        name = f"{self.prefix}_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        finally:
            await conn.close()
        return name, _pg_url(name)

    async def drop(self, name: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def teardown(self) -> None:
        await self.drop(self.template)
