"""Fixtures of the SDK tests.

``serve`` / ``shared_serve``: real ``pooldrop serve`` processes for tests where a process boundary
matters. Each runs the embedded default (SQLite, local disk, memory bus) on a free loopback port
with its own data directory, so it can be stopped and started again with its state intact.

``pool``: a pool on the in-test server with a contributor, a listener and an aggregator, and a way
to play one group's whole life (upload, claim, result).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import START
from tests.support.api import Actor, Api

START_TIMEOUT = 30.0
CYCLE = ["group.ready", "group.claimed", "result.published"]
"""The events every member hears for one group's life."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLDROP_")}
    env.update(
        POOLDROP_ENVIRONMENT="test",
        # Cheap hashes keep logins fast; production cost is the default.
        POOLDROP_PASSWORD_TIME_COST="1",
        POOLDROP_PASSWORD_MEMORY_KIB="1024",
        POOLDROP_SCHEDULER_INTERVAL="0.2",
        POOLDROP_LOG_LEVEL="warning",
        **extra,
    )
    return env


@dataclass
class ServeProcess:
    """``pooldrop serve`` in a child process; ``start``/``stop`` keep port and data."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=server_env)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / f"serve-{self.port}.log"

    def start(self) -> ServeProcess:
        assert self.proc is None, "already running"
        cmd = [sys.executable, "-m", "pooldrop", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pooldrop serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pooldrop serve did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    """A running ``pooldrop serve`` (SQLite) in a child process, stopped after the test."""
    srv = ServeProcess(tmp_path / "server-data").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def shared_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One ``pooldrop serve`` for a whole module (tests in it must not depend on each other)."""
    srv = ServeProcess(tmp_path_factory.mktemp("shared-serve") / "data").start()
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Pool:
    id: str
    admin: Actor
    contributor: Actor
    listener: Actor
    aggregator: Actor

    async def cycle(self, minute: int, result: bytes = b"result") -> None:
        """One group's life: an upload, closed, claimed, a result published."""
        ts = START + timedelta(minutes=minute, seconds=5)
        base = f"/api/v1/pools/{self.id}"
        r = await self.contributor.client.post(
            f"{base}/uploads", params={"ts": ts.isoformat(), "name": "f.bin"}, content=b"x"
        )
        assert r.status_code == 201, r.text
        r = await self.aggregator.client.post(f"{base}/groups/{r.json()['group_id']}/claim")
        assert r.status_code == 200, r.text
        claim = r.json()
        r = await self.aggregator.client.put(
            f"{base}/groups/{claim['group']['group_id']}/result",
            params={"lease_id": claim["lease_id"], "name": "r.bin"},
            content=result,
        )
        assert r.status_code == 201, r.text


@pytest.fixture
async def pool(api: Api) -> Pool:
    admin = await api.user()
    pid = (await api.pool(admin, window="1m", allowed_lateness="1h"))["pool_id"]
    return Pool(
        pid,
        admin,
        await api.key(admin, pid, "contributor"),
        await api.key(admin, pid, "listener"),
        await api.key(admin, pid, "aggregator"),
    )
