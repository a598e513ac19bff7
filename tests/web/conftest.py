"""The console is static files over the same app: one stack (the embedded default) is enough."""

from __future__ import annotations

import pytest

from tests.conftest import STACKS, Stack


@pytest.fixture
def stack() -> Stack:
    # Overrides the suite's per-backend parametrization: nothing here touches the backends.
    return STACKS["sqlite"]
