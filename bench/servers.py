"""The two servers under test, each a child process on its own 127.0.0.1 port and temp folder.

``NginxServer`` is the yardstick: one worker, PUT to disk through the DAV module and static files
with ``sendfile``. ``PooldropServer`` is ``pooldrop serve`` (one process) with its own data dir.
Both are started and stopped by the benchmark; neither needs the network.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

NGINX_INSTALL_HINT = "apt-get update && apt-get install -y nginx libnginx-mod-http-dav-ext wrk"
DAV_EXT_MODULE = Path("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so")
START_TIMEOUT = 60.0


class ServerError(RuntimeError):
    """A server did not start or died; the message carries the tail of its log."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, read from /proc (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ServerError(f"no VmRSS for pid {pid}")


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except FileNotFoundError:
        return "(no log)"


class _Child:
    """A child process with a log file, stopped with SIGTERM then SIGKILL."""

    name = "server"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.log_path = root / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError(f"{self.name} is not running")
        return self.proc.pid

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
            )

    def wait_ready(self, probe_path: str = "/healthz") -> None:
        """Block until the server answers ``probe_path`` (both servers have ``/healthz``)."""
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise ServerError(
                        f"{self.name} exited with {self.proc.returncode}:\n{_tail(self.log_path)}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.url + probe_path).status_code < 500:
                        return
                time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} did not answer within {START_TIMEOUT}s")

    def log_tail(self) -> str:
        return _tail(self.log_path)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class NginxServer(_Child):
    """nginx, one worker: ``PUT /dav/<name>`` stores a file, ``GET /static/<name>`` serves one."""

    name = "nginx"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.www = root / "www"
        self.dav_dir = self.www / "dav"
        self.static_dir = self.www / "static"

    @staticmethod
    def binary() -> str | None:
        return shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )

    def _config(self) -> str:
        temp = self.root / "temp"
        load = f"load_module {DAV_EXT_MODULE};\n" if DAV_EXT_MODULE.exists() else ""
        # As root the master would hand the worker to "nobody", who cannot write our folders.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
        return f"""{load}{user}daemon off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {self.root}/nginx.pid;
error_log {self.root}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    types {{ application/octet-stream bin; }}
    default_type application/octet-stream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{self.port} backlog=16384;
        root {self.www};
        location /dav/ {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw;
            client_max_body_size 16g;
            client_body_buffer_size 1m;
        }}
        location /static/ {{ }}
        location = /healthz {{ return 200 "ok"; }}
    }}
}}
"""

    def start(self) -> None:
        """Spawn nginx without waiting for it (``wait_ready`` does)."""
        binary = self.binary()
        if binary is None:
            raise ServerError(f"nginx is not installed; install it with: {NGINX_INSTALL_HINT}")
        for d in (self.dav_dir, self.static_dir, self.root / "temp"):
            d.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nginx.conf"
        conf.write_text(self._config())
        self._spawn([binary, "-p", str(self.root), "-c", str(conf), "-e", str(self.log_path)])

    def __enter__(self) -> NginxServer:
        self.start()
        self.wait_ready()
        return self

    def clear_dav(self) -> None:
        """Remove uploaded files between runs so every run writes into an empty folder."""
        shutil.rmtree(self.dav_dir, ignore_errors=True)
        self.dav_dir.mkdir(parents=True, exist_ok=True)


class PooldropServer(_Child):
    """``pooldrop serve`` as one process; ``database_url`` empty means the embedded SQLite."""

    name = "pooldrop"

    def __init__(
        self, root: Path, database_url: str = "", extra_env: dict[str, str] | None = None
    ) -> None:
        super().__init__(root)
        self.data_dir = root / "data"
        self.database_url = database_url
        self.extra_env = extra_env or {}

    def start(self) -> None:
        """Spawn ``pooldrop serve`` without waiting for it (``wait_ready`` does)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("POOLDROP_")}
        # Access logs off on both sides (nginx: access_log off): a log line per request is
        # measured nowhere else, and the benchmark compares serving, not logging.
        env.update(POOLDROP_LOG_LEVEL="warning", POOLDROP_ENVIRONMENT="development")
        if self.database_url:
            env["POOLDROP_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        argv = [
            sys.executable,
            "-c",
            "from pooldrop.cli import main; main()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        self._spawn(argv, env)

    def __enter__(self) -> PooldropServer:
        self.start()
        self.wait_ready()
        return self

    def rss(self) -> int:
        return rss_bytes(self.pid)
