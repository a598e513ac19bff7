"""A real S3-speaking server for tests: moto's standalone server in a child process.

A child process rather than moto's in-process thread: it does not share the test process's GIL
(the machine has two cores) nor its warning filters (``filterwarnings = error`` would turn a
deprecation warning inside moto's request handling into a failed request).

Moto keeps everything in memory and accepts any credentials. It enforces S3's 5 MiB minimum for
non-last multipart parts, like real S3.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import httpx

ACCESS_KEY_ID = "pooldrop-test"
SECRET_ACCESS_KEY = "pooldrop-test-secret"
REGION = "us-east-1"

_START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_s3_server() -> tuple[str, Callable[[], None]]:
    """Start moto on a free loopback port; returns ``(endpoint_url, stop)``.

    Raises ``RuntimeError`` with moto's output if it does not answer within 30 seconds.
    """
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()

    deadline = time.monotonic() + _START_TIMEOUT
    with httpx.Client(timeout=1.0) as client:
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                output = log.read().decode(errors="replace")[-4000:]
                stop()
                raise RuntimeError(
                    "the moto S3 server did not start (is `moto[server]` installed? "
                    f"`pip install -e '.[test]'`); its output:\n{output}"
                )
            try:
                client.get(f"{endpoint}/moto-api/data.json")
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            return endpoint, stop


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create a bucket on the moto server (moto does not check signatures, so plain PUT works)."""
    response = httpx.put(f"{endpoint}/{bucket}", timeout=10.0)
    response.raise_for_status()


def s3_url(endpoint: str, bucket: str, prefix: str, **options: str) -> str:
    """An ``s3://`` storage URL for the test server, credentials included."""
    query = {
        "endpoint": endpoint,
        "region": REGION,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        **options,
    }
    return f"s3://{bucket}/{prefix}?" + "&".join(f"{k}={v}" for k, v in query.items())
