"""The scenarios, in the order the suite runs them. Each module has ``run(ctx) -> Outcome``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.core import Context, Outcome
from bench.scenarios import archive, batch, download, fanout, large, small


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    target: str
    run: Callable[[Context], Outcome]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("large", "one 100 MiB upload, sha256 verified, durable", large.TARGET, large.run),
        Scenario(
            "small",
            "500 KB uploads, 16 keep-alive clients, 2,000 requests",
            small.TARGET,
            small.run,
        ),
        Scenario("batch", "one multipart batch of 200 x 200 KB files", batch.TARGET, batch.run),
        Scenario(
            "fanout",
            "10,000 subscribers (WebSocket + SSE), one result.published",
            fanout.TARGET,
            fanout.run,
        ),
        Scenario(
            "download",
            "1,000 concurrent clients fetch a 20 MB result",
            download.TARGET,
            download.run,
        ),
        Scenario(
            "archive",
            "stream a group of 1,000 x 500 KB files as tar",
            archive.TARGET,
            archive.run,
        ),
        Scenario("small-pg", "`small` on PostgreSQL", small.TARGET_PG, small.run_pg),
    )
}
