"""The external server's loop: claim a group, fetch its files, compute, publish one result.

``Aggregator.run_once`` claims the oldest ready group (long-polling up to ``wait`` seconds),
streams its archive to a temporary directory, extracts it safely, checks every file against the
manifest's sha256, and hands a :class:`Job` to your handler while a background thread heartbeats
the lease. The handler writes ``job.output``; that file is uploaded as the group's result. If the
handler fails, the lease is released at once so the group can be retried (the server counts the
attempt); if the lease is lost meanwhile, nothing is uploaded.

:class:`CommandHandler` runs a shell command instead of Python code (``pooldrop aggregate
--exec``), and stops it when the lease is lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pooldrop.client._client import Client
from pooldrop.client._content import CHUNK_SIZE
from pooldrop.client._download import Progress
from pooldrop.client._errors import IntegrityError, JobFailed, LeaseLost, PooldropError
from pooldrop.client._models import Claim, Group, Result

log = logging.getLogger("pooldrop.client.aggregator")


@dataclass
class Job:
    """One claimed group, unpacked and ready to compute on."""

    claim: Claim
    workdir: Path
    """A private temporary directory, removed after the job."""
    input_dir: Path
    """The directory holding the extracted files (``files/<upload_id>/<name>``)."""
    inputs: list[Path]
    """The group's files, in the manifest's order (by event time)."""
    manifest: dict[str, Any]
    """``manifest.json`` from the archive: ``group`` and ``uploads`` (ts, name, sha256...)."""
    manifest_path: Path
    output: Path
    """Where the handler writes the result (a handler may return another path instead)."""
    lease_lost: threading.Event = field(default_factory=threading.Event)
    """Set when the heartbeat learns the lease is gone: stop, nothing will be accepted."""

    @property
    def group(self) -> Group:
        return self.claim.group


Handler = Callable[[Job], "Path | str | None"]
"""Compute the result of a :class:`Job`: write ``job.output`` (or return another path)."""


class Heartbeat:
    """Extends a lease every ``interval`` seconds in a thread until stopped or the lease is lost."""

    def __init__(self, client: Client, claim: Claim, interval: float, lost: threading.Event):
        self.client = client
        self.claim = claim
        self.interval = interval
        self.lost = lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pooldrop-heartbeat", daemon=True)
        self.beats = 0

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.claim = self.client.heartbeat(self.claim)
                self.beats += 1
            except LeaseLost:
                log.warning("lease on group %s lost", self.claim.group.group_id)
                self.lost.set()
                return
            except PooldropError as e:
                # Keep trying: the lease may still be alive when the network comes back.
                log.warning("heartbeat failed (%s); retrying", e)


def heartbeat_interval(claim: Claim) -> float:
    """A third of the lease, so two beats may fail before it expires."""
    seconds = claim.lease_seconds
    if seconds is None:
        seconds = (claim.lease_expires_at - datetime.now(UTC)).total_seconds()
    return max(0.2, seconds / 3)


class Aggregator:
    """Claims groups of ``pool_id`` and publishes what ``handler`` computes for each."""

    def __init__(
        self,
        client: Client,
        pool_id: str,
        handler: Handler,
        *,
        wait: float = 30.0,
        result_name: str | Callable[[Job], str] = "result.bin",
        workdir: str | Path | None = None,
        heartbeat_every: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.client = client
        self.pool_id = pool_id
        self.handler = handler
        self.wait = wait
        self.result_name = result_name
        self.workdir = Path(workdir) if workdir else None
        self.heartbeat_every = heartbeat_every
        self.progress = progress

    def run(self, *, stop: threading.Event | None = None, once: bool = False) -> int:
        """Process groups until ``stop`` is set (or one group, with ``once``); returns how many
        results were published. A failed group is logged, released, and the loop goes on."""
        stop = stop or threading.Event()
        published = 0
        while not stop.is_set():
            try:
                result = self.run_once()
            except PooldropError as e:
                if once:
                    raise
                log.error("group failed: %s", e)
                stop.wait(1.0)
                continue
            if result is not None:
                published += 1
                if once:
                    break
        return published

    def run_once(self, *, wait: float | None = None) -> Result | None:
        """Claim one ready group (waiting up to ``wait`` seconds) and process it; ``None`` if
        no group became ready."""
        claim = self.client.claim(self.pool_id, wait=self.wait if wait is None else wait)
        if claim is None:
            return None
        return self.process(claim)

    def process(self, claim: Claim) -> Result:
        """Fetch, compute and publish one claimed group; releases the lease if anything fails."""
        workdir = Path(tempfile.mkdtemp(prefix="pooldrop-group-", dir=self.workdir))
        lost = threading.Event()
        interval = self.heartbeat_every or heartbeat_interval(claim)
        try:
            with Heartbeat(self.client, claim, interval, lost):
                job = self._unpack(claim, workdir, lost)
                produced = self.handler(job)
                if lost.is_set():
                    raise LeaseLost(f"lease on group {claim.group.group_id} lost during compute")
                output = Path(produced) if produced is not None else job.output
                if not output.is_file():
                    raise JobFailed(f"the handler wrote no result file at {output}")
                name = self.result_name(job) if callable(self.result_name) else self.result_name
                return self.client.put_result(claim, output, name=name)
        except BaseException:
            if not lost.is_set():
                _release_quietly(self.client, claim)
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _unpack(self, claim: Claim, workdir: Path, lost: threading.Event) -> Job:
        tar_path = workdir / "archive.tar"
        self.client.download_archive(claim, tar_path, progress=self.progress)
        input_dir = workdir / "group"
        input_dir.mkdir()
        with tarfile.open(tar_path) as tar:
            # The "data" filter refuses absolute paths, links out of the tree and devices.
            tar.extractall(input_dir, filter="data")
        tar_path.unlink()
        manifest_path = input_dir / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        inputs = []
        for u in manifest.get("uploads", []):
            path = input_dir / u["path"]
            if _sha256(path) != u["sha256"]:
                raise IntegrityError(f"{u['path']}: content does not match the manifest sha256")
            inputs.append(path)
        (workdir / "out").mkdir()
        return Job(
            claim=claim,
            workdir=workdir,
            input_dir=input_dir,
            inputs=inputs,
            manifest=manifest,
            manifest_path=manifest_path,
            output=workdir / "out" / "result",
            lease_lost=lost,
        )


def _release_quietly(client: Client, claim: Claim) -> None:
    try:
        client.release(claim)
    except PooldropError as e:
        log.warning("could not release group %s: %s", claim.group.group_id, e)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
    return h.hexdigest()


class CommandHandler:
    """A handler that runs a shell command with placeholders filled in:

    - ``{inputs}``: the group's files, shell-quoted, space-separated, in event-time order;
    - ``{input_dir}``: the directory holding them (and ``manifest.json``);
    - ``{manifest}``: the path of ``manifest.json``;
    - ``{output}``: the path the command must write the result to;
    - ``{group_id}``, ``{pool_id}``, ``{window_start}``, ``{window_end}``.

    Other braces are left alone (``awk '{print}'`` works). A non-zero exit fails the group; if
    the lease is lost the command is terminated.
    """

    def __init__(self, command: str, *, poll: float = 0.2) -> None:
        self.command = command
        self.poll = poll

    def render(self, job: Job) -> str:
        g = job.group
        values = {
            "inputs": " ".join(shlex.quote(str(p)) for p in job.inputs),
            "input_dir": shlex.quote(str(job.input_dir)),
            "manifest": shlex.quote(str(job.manifest_path)),
            "output": shlex.quote(str(job.output)),
            "group_id": shlex.quote(g.group_id),
            "pool_id": shlex.quote(g.pool_id),
            "window_start": shlex.quote(g.window_start.isoformat()),
            "window_end": shlex.quote(g.window_end.isoformat()),
        }
        out = self.command
        for key, value in values.items():
            out = out.replace("{" + key + "}", value)
        return out

    def __call__(self, job: Job) -> Path:
        # A shell on purpose: the command is the operator's own; every path in it is quoted.
        proc = subprocess.Popen(self.render(job), shell=True, cwd=job.workdir)
        while proc.poll() is None:
            if job.lease_lost.is_set():
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise LeaseLost("lease lost; the command was stopped")
            time.sleep(self.poll)
        if proc.returncode != 0:
            raise JobFailed(f"the command exited with status {proc.returncode}")
        return job.output
