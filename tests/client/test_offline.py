"""The outbox across process boundaries: a server that goes away, a client killed mid-flush."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pooldrop.client import Client, Outbox, Uploader
from tests.client.conftest import ServeProcess
from tests.client.test_outbox import Clock

PASSWORD = "correct horse battery"


def contributor_key(url: str) -> tuple[str, str, str]:
    """(pool_id, contributor key, admin token) on a fresh server."""
    with Client(url) as admin:
        admin.signup("admin", PASSWORD)
        pool = admin.create_pool("offline", "1h", allowed_lateness="1h")
        key = admin.create_key(pool.pool_id, "app", "contributor")
        assert admin.credential is not None
        return pool.pool_id, key.secret, admin.credential


def stored_ids(url: str, token: str, pool_id: str) -> list[str]:
    with Client(url, token=token) as c:
        return [u.client_upload_id or "" for u in c.iter_uploads(pool_id)]


def test_outbox_drains_when_the_server_comes_back(serve: ServeProcess, tmp_path: Path) -> None:
    pool_id, key, admin = contributor_key(serve.url)
    serve.stop()
    clock = Clock(time.time())
    ts = time.time() - 5
    with Uploader(
        serve.url, pool_id, api_key=key, outbox=tmp_path / "box", clock=clock, batch_files=20
    ) as up:
        added = [up.add(b"[%d, %d]" % (i, i * i), ts=ts, name=f"r{i}.json") for i in range(50)]
        down = up.flush()
        assert down.error and "cannot reach" in down.error and down.pending == 50
        serve.start()
        clock.t += 3600  # past any backoff
        report = up.flush()
        assert report.error is None and report.pending == 0 and len(report.delivered) == 50
        assert up.outbox.counts() == {"pending": 0, "delivered": 50, "rejected": 0}
        assert list(up.outbox.files.iterdir()) == []
    assert sorted(stored_ids(serve.url, admin, pool_id)) == sorted(
        e.client_upload_id for e in added
    )


def flush_process(url: str, key: str, box: Path, tmp: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "POOLDROP_API_KEY": key, "POOLDROP_CONFIG": str(tmp / "cfg.json")}
    cmd = [sys.executable, "-m", "pooldrop", "flush", "--outbox", str(box), "--server", url]
    return subprocess.Popen([*cmd, "--batch-files", "3"], env=env, stdout=subprocess.DEVNULL)


def test_client_killed_mid_flush_delivers_every_file_once(
    serve: ServeProcess, tmp_path: Path
) -> None:
    pool_id, key, admin = contributor_key(serve.url)
    box = Outbox(tmp_path / "box")
    ts = time.time() - 5
    added = [
        box.add(os.urandom(256 * 1024), pool_id=pool_id, ts=ts, name=f"f{i}.bin") for i in range(45)
    ]
    child = flush_process(serve.url, key, tmp_path / "box", tmp_path)
    deadline = time.monotonic() + 60
    while len(stored_ids(serve.url, admin, pool_id)) < 9:
        assert child.poll() is None, "the flush finished before it could be killed"
        assert time.monotonic() < deadline, "the flush made no progress"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    pending = box.counts()["pending"]
    assert 0 < pending < 45, "the kill did not land mid-flush"

    again = flush_process(serve.url, key, tmp_path / "box", tmp_path)
    assert again.wait(120) == 0
    assert box.counts() == {"pending": 0, "delivered": 45, "rejected": 0}
    ids = stored_ids(serve.url, admin, pool_id)
    assert len(ids) == 45 and sorted(ids) == sorted(e.client_upload_id for e in added)
    with Client(serve.url, token=admin) as c:
        assert {e.upload_id for e in box.entries()} == {
            u.upload_id for u in c.iter_uploads(pool_id)
        }
