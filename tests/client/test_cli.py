"""The client commands in-process (typer's runner) against a ``pooldrop serve`` subprocess."""

from __future__ import annotations

import itertools
import json
import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pooldrop.cli import app
from pooldrop.client import Client, Config
from tests.client.conftest import ServeProcess, free_port

PASSWORD = "correct horse battery"
_names = itertools.count(1)


class Cli:
    """Runs ``pooldrop ...`` with its own credentials file."""

    def __init__(self, url: str, config: Path) -> None:
        self.url = url
        self.config = config
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True, env: dict[str, str] | None = None) -> str:
        result = self.runner.invoke(
            app, list(args), env={"POOLDROP_CONFIG": str(self.config), **(env or {})}
        )
        assert "Traceback" not in result.output, result.output
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code == 1, result.output
        return result.output.strip()


@pytest.fixture
def admin(shared_serve: ServeProcess, tmp_path: Path) -> Cli:
    cli = Cli(shared_serve.url, tmp_path / "admin" / "config.json")
    name = f"admin{next(_names)}"
    cli("signup", "--server", shared_serve.url, "--username", name, "--password", PASSWORD)
    return cli


def test_login_logout_and_the_credentials_file(admin: Cli) -> None:
    mode = stat.S_IMODE(admin.config.stat().st_mode)
    assert mode == 0o600
    profile = Config.load(admin.config).profile()
    assert profile.server == admin.url and profile.token and profile.username
    name = profile.username
    assert admin("logout") == "logged out"
    out = admin("pool", "list", ok=False)
    assert out.startswith("error:") and "pooldrop login" in out and len(out.splitlines()) == 1
    admin("login", "--username", str(name), "--password", PASSWORD)
    assert admin("pool", "list", "--json") == "[]"
    wrong = admin("login", "--username", "x", "--password", "nope!", ok=False)
    assert wrong == "error: wrong username or password"


def test_pools_keys_enrolment_and_push(admin: Cli, tmp_path: Path) -> None:
    pool_id = admin("pool", "create", "demo", "--window", "1h", "--lateness", "1h")
    listed = json.loads(admin("pool", "list", "--json"))
    assert [p["pool_id"] for p in listed] == [pool_id] and listed[0]["window"] == "1h"
    assert json.loads(admin("pool", "show", pool_id, "--json"))["allowed_lateness"] == "1h"
    secret = admin("key", "create", "--pool", pool_id, "--name", "srv", "--role", "aggregator")
    assert secret.splitlines()[0].startswith("pdk_")
    token = admin("enrollment", "create", "--pool", pool_id, "--max-uses", "1")

    app_cli = Cli(admin.url, tmp_path / "app.json")
    assert pool_id in app_cli("enroll", "--server", admin.url, "--token", token, "--name", "a1")
    saved = Config.load(app_cli.config).profile()
    assert saved.api_key and saved.pool_id == pool_id and saved.role == "contributor"
    data = tmp_path / "reading.json"
    data.write_text("[1, 2, 3]")
    out = app_cli("push", str(data))  # ts: the file's mtime; pool: the enrolled key's
    assert out.startswith("reading.json -> ")
    late = app_cli("push", str(data), "--ts", "12", ok=False)
    assert late.startswith("error: the window") and late.endswith("(window_closed)")
    # The token was for one app only.
    other = Cli(admin.url, tmp_path / "other.json")
    used = other("enroll", "--server", admin.url, "--token", token, "--name", "a2", ok=False)
    assert "used up" in used
    with Client(admin.url, api_key=saved.api_key) as c:
        assert [u.name for u in c.iter_uploads(pool_id)] == ["reading.json"]


def test_push_through_the_outbox_while_offline(admin: Cli, tmp_path: Path) -> None:
    pool_id = admin("pool", "create", "off", "--window", "1h", "--lateness", "1h")
    secret = admin("key", "create", "--pool", pool_id, "--name", "app", "--role", "contributor")
    app_cli = Cli(admin.url, tmp_path / "app.json")
    env = {"POOLDROP_API_KEY": secret.splitlines()[0]}
    files = []
    for i in range(3):
        f = tmp_path / f"r{i}.json"
        f.write_text(f"[{i}]")
        files.append(str(f))
    box = str(tmp_path / "box")
    nowhere = f"http://127.0.0.1:{free_port()}"
    ts = str(time.time() - 5)
    out = app_cli(
        "push", *files, "--pool", pool_id, "--ts", ts, "--outbox", box, "--server", nowhere, env=env
    )
    assert "queued 3 file(s)" in out and "3 file(s) still queued" in out
    still = app_cli("flush", "--outbox", box, "--server", nowhere, env=env, ok=False)
    assert "outbox: 3 pending" in still
    sent = app_cli("flush", "--outbox", box, "--server", admin.url, env=env)
    assert sent.count("sent r") == 3 and "outbox: 0 pending, 3 delivered, 0 rejected" in sent
