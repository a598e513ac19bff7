"""`pooldrop serve` as a process: the embedded default, refusals and fast failures."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.api import Api
from tests.support.databases import PostgresTemplates
from tests.uploads.test_memory import free_port


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pooldrop", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_serve_creates_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pooldrop", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "POOLDROP_LOG_LEVEL": "warning"},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not start")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        data = tmp_path / "pooldrop-data"
        assert (data / "pooldrop.db").is_file()
        assert stat.S_IMODE((data / "secret.key").stat().st_mode) == 0o600
        import sqlite3

        db = sqlite3.connect(data / "pooldrop.db")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() is not None
        db.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_migrate_alone(tmp_path: Path) -> None:
    r = run_cli("migrate", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "pooldrop.db").is_file()


def test_workers_refused_on_memory_bus(tmp_path: Path) -> None:
    r = run_cli("serve", "--workers", "2", "--data-dir", str(tmp_path))
    assert r.returncode == 2
    assert "needs a shared bus" in r.stderr


def test_unreachable_backends_fail_fast_without_passwords(tmp_path: Path) -> None:
    closed = str(free_port())
    cases = {
        "POOLDROP_DATABASE_URL": f"postgresql+asyncpg://me:hunter2pw@127.0.0.1:{closed}/x",
        "POOLDROP_BUS_URL": f"redis://:hunter2pw@127.0.0.1:{closed}/0",
        "POOLDROP_STORAGE_URL": f"s3://AKID:hunter2pw@bucket/p?endpoint=http://127.0.0.1:{closed}&region=us-east-1",
    }
    for var, url in cases.items():
        started = time.monotonic()
        r = run_cli("serve", "--data-dir", str(tmp_path), env={var: url})
        assert r.returncode == 1, (var, r.stderr)
        assert time.monotonic() - started < 30
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "hunter2pw" not in r.stderr, (var, r.stderr)
        assert f"127.0.0.1:{closed}" in last, last


async def test_readyz_reports_every_backend(api: Api) -> None:
    r = await api.anon.get("/readyz")
    assert r.status_code == 200
    checks = r.json()["checks"]
    assert set(checks) == {"database", "storage", "bus"}
    assert all(c["ok"] for c in checks.values())
    assert (await api.anon.get("/healthz")).json() == {"status": "ok"}
    metrics = await api.anon.get("/metrics")
    assert metrics.status_code == 200 and "python_info" in metrics.text
    assert "pooldrop_event_subscribers 0.0" in metrics.text
    assert "pooldrop_hub_serialized_total" in metrics.text


async def test_openapi_describes_every_route(api: Api) -> None:
    spec = (await api.anon.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/api/v1/auth/signup",
        "/api/v1/pools",
        "/api/v1/pools/{pool_id}/uploads",
        "/api/v1/enroll",
        "/auth/login/{user_name}",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path


def test_workers_run_several_processes_on_a_shared_bus(
    tmp_path: Path, pg_templates: PostgresTemplates
) -> None:
    import asyncio

    import psutil

    name, db_url = asyncio.run(pg_templates.fresh())
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pooldrop",
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ],
        env={
            **os.environ,
            "POOLDROP_DATABASE_URL": db_url,
            "POOLDROP_BUS_URL": "redis://127.0.0.1:6379/15",
            "POOLDROP_LOG_LEVEL": "warning",
        },
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("workers did not start")
        workers = [
            c
            for c in psutil.Process(proc.pid).children(recursive=True)
            if "multiprocessing" in " ".join(c.cmdline()) or "pooldrop" in " ".join(c.cmdline())
        ]
        assert len(workers) >= 2, [c.cmdline() for c in workers]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        asyncio.run(pg_templates.drop(name))
