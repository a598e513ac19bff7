"""The examples run against a real server, and docs/client.md covers every client command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from pooldrop.cli import client_cmds
from pooldrop.client import Client
from tests.client.conftest import ServeProcess

ROOT = Path(__file__).resolve().parents[2]


def example(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLDROP_")}
    proc = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_client_app_and_aggregator_examples(serve: ServeProcess, tmp_path: Path) -> None:
    with Client(serve.url) as admin:
        admin.signup("admin", "correct horse battery")
        pool = admin.create_pool("examples", "1h", allowed_lateness="1h", min_contributors=2)
        token = admin.create_enrollment(pool.pool_id, "contributor", max_uses=2).token
        agg = admin.create_key(pool.pool_id, "averager", "aggregator").secret
        app = str(ROOT / "examples" / "client_app.py")
        for name in ("s1", "s2"):
            box = str(tmp_path / name)
            out = example(app, "--server", serve.url, "--token", token, "--name", name,
                          "--outbox", box, "--count", "1", "--size", "4")  # fmt: skip
            assert "delivered 1, pending 0, rejected 0" in out
        # Two contributors reached the quorum: the group is ready for the external server.
        out = example(str(ROOT / "examples" / "aggregator.py"), "run", "--server", serve.url,
                      "--key", agg, "--pool", pool.pool_id, "--once", "--wait", "5")  # fmt: skip
        assert out.startswith("published ")
        result = admin.latest_result(pool.pool_id)
        mean = json.loads(admin.download_result(result, tmp_path / "mean.json").read_text())
        readings = [
            json.loads(admin.download_upload(u, tmp_path / u.upload_id).read_text())
            for u in admin.iter_uploads(pool.pool_id)
        ]
        assert len(readings) == 2
        expected = [(a + b) / 2 for a, b in zip(*readings, strict=True)]
        assert mean == pytest.approx(expected)


def test_every_client_command_is_documented() -> None:
    app = typer.Typer()
    client_cmds.register(app)
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    groups = {g.name: g.typer_instance for g in app.registered_groups}
    docs = (ROOT / "docs" / "client.md").read_text()
    missing = [n for n in names if f"pooldrop {n}" not in docs]
    for group, sub in groups.items():
        assert sub is not None
        missing += [
            f"{group} {c.name}"
            for c in sub.registered_commands
            if f"pooldrop {group} {c.name}" not in docs
        ]
    assert missing == []
