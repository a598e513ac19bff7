"""tune_gc: start-up objects frozen out of the collector's sight, a larger generation 0."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pooldrop.api.gc_tuning import GEN0_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_freezes_what_exists_and_raises_generation_0(restored_gc: None) -> None:
    survivor = [object() for _ in range(100)]
    tune_gc()
    assert gc.get_threshold()[0] == GEN0_THRESHOLD
    assert gc.get_freeze_count() >= len(survivor)
    tune_gc()  # calling again is harmless
    assert gc.get_threshold()[0] == GEN0_THRESHOLD
