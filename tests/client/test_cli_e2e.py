"""The whole story with real processes: a server, an admin, five contributor apps (two of them
offline through the outbox), an external server running a command, five listeners that receive
and verify the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.client.conftest import ServeProcess, free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PASSWORD = "correct horse battery"


def pooldrop(config: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """Start ``pooldrop ARGS`` with its own credentials file."""
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("POOLDROP_")},
        "POOLDROP_CONFIG": str(config),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pooldrop", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def done(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """Wait for success; the command's standard output."""
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{proc.args!r} failed:\n{stdout}\n{stderr}"
    assert "Traceback" not in stderr
    return stdout.strip()


def run(config: Path, *args: str, **env: str) -> str:
    return done(pooldrop(config, *args, **env))


def test_pool_life_from_the_command_line(serve: ServeProcess, tmp_path: Path) -> None:
    url = serve.url
    admin = tmp_path / "admin.json"
    run(admin, "signup", "--server", url, "--username", "ada", POOLDROP_PASSWORD=PASSWORD)
    pool = run(admin, "pool", "create", "demo", "--window", "1h", "--lateness", "1h",
               "--min-contributors", "5")  # fmt: skip
    contributors = run(admin, "enrollment", "create", "--pool", pool, "--max-uses", "5")
    listeners = run(admin, "enrollment", "create", "--pool", pool, "--max-uses", "5",
                    "--role", "listener")  # fmt: skip
    agg_key = run(admin, "key", "create", "--pool", pool, "--name", "srv", "--role", "aggregator")

    apps = [tmp_path / f"app{i}.json" for i in range(5)]
    ears = [tmp_path / f"listener{i}.json" for i in range(5)]
    enrolling = [
        pooldrop(cfg, "enroll", "--server", url, "--token", token, "--name", cfg.stem)
        for cfgs, token in ((apps, contributors), (ears, listeners))
        for cfg in cfgs
    ]
    for proc in enrolling:
        done(proc)

    watchers = [
        pooldrop(cfg, "watch", "--download-to", str(tmp_path / f"got{i}"), "--count", "1")
        for i, cfg in enumerate(ears)
    ]

    ts = str(time.time() - 5)  # one window for all five
    nowhere = f"http://127.0.0.1:{free_port()}"
    pushes = []
    for i, cfg in enumerate(apps):
        data = tmp_path / f"reading{i}.json"
        data.write_text(json.dumps([i, 2 * i, 3 * i]))
        if i < 3:
            pushes.append(pooldrop(cfg, "push", str(data), "--ts", ts))
        else:
            # Offline: the push only reaches the outbox; a later flush delivers it.
            box = str(tmp_path / f"box{i}")
            queued = done(pooldrop(cfg, "push", str(data), "--ts", ts, "--outbox", box,
                                   "--server", nowhere))  # fmt: skip
            assert queued == ""  # nothing was sent: the queue report goes to stderr
            pushes.append(pooldrop(cfg, "flush", "--outbox", box))
    outputs = [done(p) for p in pushes]
    assert all("->" in o for o in outputs[:3])
    assert all("outbox: 0 pending, 1 delivered" in o for o in outputs[3:])

    command = (
        f"{sys.executable} {EXAMPLES / 'aggregator.py'} compute --output {{output}} {{inputs}}"
    )
    published = run(admin, "aggregate", "--pool", pool, "--once", "--wait", "10",
                    "--result-name", "mean.json", "--exec", command,
                    POOLDROP_API_KEY=agg_key)  # fmt: skip
    assert published.startswith("published ")

    for i, watcher in enumerate(watchers):
        said = done(watcher)
        assert "sha256 ok" in said
        (result,) = (tmp_path / f"got{i}").glob("*-mean.json")
        assert json.loads(result.read_text()) == [2.0, 4.0, 6.0]
