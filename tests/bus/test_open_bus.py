"""Choosing a backend by URL: the table, lazy imports, helpful errors, redaction."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pooldrop.bus import BACKENDS, Bus, open_bus
from pooldrop.bus.amqp import AmqpBus
from pooldrop.bus.base import redact_url
from pooldrop.bus.memory import MemoryBus
from pooldrop.bus.redis import RedisBus


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", MemoryBus),
        ("memory://named", MemoryBus),
        ("redis://127.0.0.1:6379/0", RedisBus),
        ("rediss://user:pw@cache.invalid:6380/2", RedisBus),
        ("redis+sentinel://sentinel-a.invalid:26379,sentinel-b.invalid:26379/mymaster/0", RedisBus),
        ("amqp://guest:guest@127.0.0.1:5672/?exchange=other", AmqpBus),
        ("amqps://u:p@mq.invalid/vhost", AmqpBus),
    ],
)
def test_scheme_picks_the_backend_without_connecting(url: str, kind: type[Bus]) -> None:
    bus = open_bus(url)  # hosts that resolve nowhere: constructing must not touch the network
    assert type(bus) is kind
    assert urlscheme(bus.url) == urlscheme(url)


def urlscheme(url: str) -> str:
    return url.partition("://")[0]


def test_unknown_scheme_names_the_supported_ones() -> None:
    with pytest.raises(ValueError) as caught:
        open_bus("kafka://user:hunter2-secret@127.0.0.1:9092/")
    message = str(caught.value)
    assert "'kafka'" in message
    for scheme in ("memory://", "redis://", "rediss://", "redis+sentinel://", "amqp://"):
        assert scheme in message
    assert "hunter2-secret" not in message
    assert set(BACKENDS) == {"memory", "redis", "rediss", "redis+sentinel", "amqp", "amqps"}


def test_every_backend_target_resolves() -> None:
    for target in set(BACKENDS.values()):
        module, _, name = target.partition(":")
        assert issubclass(getattr(__import__(module, fromlist=[name]), name), Bus)


def test_backends_are_imported_only_when_chosen() -> None:
    code = (
        "import sys; from pooldrop.bus import open_bus; open_bus('memory://');"
        "print(sorted(m for m in sys.modules if m in ('redis', 'aio_pika', 'aiormq')"
        " or m.startswith('pooldrop.bus.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == (
        "['pooldrop.bus.base', 'pooldrop.bus.memory', 'pooldrop.bus.subscription']"
    )


@pytest.mark.parametrize(
    "url",
    [
        "memory://?queue_size=0",
        "memory://?bogus=1",
        "redis://127.0.0.1/0?connect_timeout=soon",
        "redis+sentinel://127.0.0.1:26379/",
        "redis+sentinel://127.0.0.1:notaport/mymaster",
        "amqp://127.0.0.1/?queue_size=-5",
    ],
)
def test_bad_options_fail_at_configuration(url: str) -> None:
    with pytest.raises(ValueError):
        open_bus(url)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("redis://:pw@h:1/0", "redis://h:1/0"),
        ("redis://user:pw@h:1/0", "redis://user@h:1/0"),
        ("amqp://guest:guest@h/vh?exchange=x", "amqp://guest@h/vh?exchange=x"),
        (
            "redis+sentinel://u:pw@a:1,b:2/m/0?sentinel_password=spw&x=1",
            "redis+sentinel://u@a:1,b:2/m/0?x=1",
        ),
        ("memory://", "memory://"),
    ],
)
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe
