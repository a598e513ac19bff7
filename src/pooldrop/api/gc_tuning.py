"""Garbage-collector settings for a long-running server process.

CPython's cyclic collector runs a generation-0 pass every 700 container allocations, and every
tenth of those walks generation 1, and so on into the oldest generation, which holds everything
imported or built at start-up (the app, SQLAlchemy's mappers, pydantic models...). A request
allocates thousands of short-lived containers (ASGI messages, tasks, futures, ORM rows), so a
busy server spent a large share of its time re-walking objects that will never be garbage.

``tune_gc`` moves what exists after start-up out of the collector's sight (``gc.freeze``) and
lets generation 0 grow larger before a pass. Reference counting still frees almost everything
at once; only cycles wait a little longer.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 20


def tune_gc() -> None:
    """Call once, after start-up finished and before serving. Safe to call again."""
    gc.collect()  # garbage from start-up is freed now rather than frozen with the rest
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
