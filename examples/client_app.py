"""A minimal pooldrop client app: it measures numbers, and its readings reach the pool even when
the network does not cooperate.

Each reading is a JSON array of numbers stamped with the time it was taken. Readings go into a
durable local outbox first (so a crash or an outage loses nothing) and a background thread sends
them in batches whenever the server is reachable.

First run (enrols with a token an admin gave you and remembers the key)::

    python examples/client_app.py --server http://127.0.0.1:8000 \\
        --token <enrolment token> --name sensor-1 --outbox ./sensor-1 --count 5

Later runs need only ``--server`` and ``--outbox``; or pass a key directly with ``--key pdk_...
--pool <pool_id>``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from pooldrop.client import Client, Uploader, enroll


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    """(key, pool_id): from the flags, from an earlier enrolment, or by enrolling now."""
    saved = args.outbox / "app-key.json"
    if args.key:
        if not args.pool:
            sys.exit("--key needs --pool")
        return args.key, args.pool
    if saved.exists():
        data = json.loads(saved.read_text())
        return data["secret"], data["pool_id"]
    if not (args.token and args.name):
        sys.exit("first run: pass --token and --name to enrol (or --key and --pool)")
    key = enroll(args.server, args.token, args.name)
    args.outbox.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps({"secret": key.secret, "pool_id": key.pool_id}))
    saved.chmod(0o600)
    print(f"enrolled {args.name} in pool {key.pool_id}")
    return key.secret, key.pool_id


def measure(size: int) -> list[float]:
    """Stand-in for real work: a few numbers."""
    return [round(random.uniform(0, 100), 3) for _ in range(size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--outbox", type=Path, required=True, help="local outbox directory")
    parser.add_argument("--token", help="enrolment token (first run)")
    parser.add_argument("--name", help="this app's name (first run)")
    parser.add_argument("--key", help="a pool key instead of enrolling")
    parser.add_argument("--pool", help="the pool of --key")
    parser.add_argument("--count", type=int, default=3, help="readings to take (0: forever)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument("--size", type=int, default=8, help="numbers per reading")
    args = parser.parse_args()

    key, pool_id = credentials(args)
    with (
        Client(args.server, api_key=key) as client,
        Uploader(client, pool_id, outbox=args.outbox / "outbox") as uploader,
    ):
        uploader.start()  # sends in the background, retrying with backoff while offline
        taken = 0
        while args.count == 0 or taken < args.count:
            reading = json.dumps(measure(args.size)).encode()
            entry = uploader.add(reading, ts=time.time(), name=f"reading-{taken}.json")
            print(f"queued {entry.name} ({entry.client_upload_id})")
            taken += 1
            if args.count == 0 or taken < args.count:
                time.sleep(args.interval)
        # Give the flusher a moment to deliver before exiting; anything left is sent next run.
        deadline = time.monotonic() + 30
        while uploader.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        counts = uploader.outbox.counts()
        print(
            f"delivered {counts['delivered']}, pending {counts['pending']}, "
            f"rejected {counts['rejected']}"
        )
        for entry in uploader.rejected():
            print(f"rejected {entry.name}: {entry.error} ({entry.error_code})")


if __name__ == "__main__":
    main()
