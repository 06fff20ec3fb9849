"""Riding out a backend outage: retry transient failures with capped exponential backoff.

Only :class:`~jdobb_async_queue.BackendUnavailable` is transient (a Redis server restarting, a
SQLite file locked beyond its busy timeout). Anything else is a bug and propagates out of
``Worker.run()``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from .._errors import BackendUnavailable

__all__ = ["BURST_OUTAGE_LIMIT", "logger", "retrying"]

logger = logging.getLogger("jdobb_async_queue.worker")

T = TypeVar("T")

FIRST_DELAY = 0.05
MAX_DELAY = 2.0
#: Seconds a burst (``Worker.run(burst=True)``) or ``Worker.process_one()`` rides out an outage
#: before it raises :class:`BackendUnavailable`; a worker that is not in a burst never gives up.
BURST_OUTAGE_LIMIT = 30.0


async def retrying(
    operation: Callable[[], Awaitable[T]], what: str, *, give_up_after: float | None = None
) -> T:
    """Run ``operation`` until it does not raise :class:`BackendUnavailable`.

    :param what: names the operation in log messages
    :param give_up_after: seconds after which the last error is raised (None: never give up)
    :raises BackendUnavailable: once ``give_up_after`` has passed
    """
    delay = FIRST_DELAY
    deadline = None if give_up_after is None else anyio.current_time() + give_up_after
    while True:
        try:
            return await operation()
        except BackendUnavailable as exc:
            if deadline is not None and anyio.current_time() + delay > deadline:
                raise
            logger.warning("%s failed, retrying in %.2fs: %s", what, delay, exc)
        await anyio.sleep(delay * (0.5 + random.random() / 2))
        delay = min(delay * 2, MAX_DELAY)
