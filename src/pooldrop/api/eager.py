"""Start a coroutine in the caller's stack and give it a task only if it has to wait.

The hub hands one event to thousands of connections in one pass, and each connection's writer
nearly always finishes without waiting (the socket takes the bytes at once). A task per writer
and event cost as much as the writing. ``run_eagerly`` runs the writer now, like Python 3.12's
eager tasks, and moves it into a task only when it suspends (a client that reads slowly, a
database read), so one slow client never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("pooldrop.eager")


def run_eagerly(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
    """Run ``coro`` to its first suspension here; None if it finished, else the task that
    carries on with it. An exception it raises before suspending is logged, not raised."""
    try:
        waits_on = coro.send(None)
    except StopIteration:
        return None
    except Exception:
        log.exception("%s failed", name)
        return None
    return asyncio.get_running_loop().create_task(_carry_on(coro, waits_on), name=name)


async def _carry_on(coro: Coroutine[Any, Any, None], waits_on: Any) -> None:
    # What asyncio.Task does with a coroutine that yielded: wait for the future it yielded,
    # then resume it (it reads the future's outcome itself); a cancellation of this task is
    # passed on the same way, by cancelling that future and throwing into the coroutine.
    while True:
        try:
            if waits_on is None:
                await asyncio.sleep(0)  # a bare yield asks to be resumed on the next pass
            else:
                waits_on._asyncio_future_blocking = False
                if not waits_on.done():
                    await asyncio.wait((waits_on,))
        except asyncio.CancelledError as exc:
            if waits_on is not None:
                waits_on.cancel()
            try:
                waits_on = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            waits_on = coro.send(None)
        except StopIteration:
            return
