"""SAQ: ``Queue.enqueue`` and a ``saq.Worker(concurrency=env.concurrency)``, its other settings
its defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from . import record

NAME = "saq"
DIST = "saq"
BACKENDS = ("redis",)
LOOPS = ("asyncio",)
ASYNC = True
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "Worker(concurrency=50)"


async def noop(ctx: Any, *, lat: int) -> None:
    await record.hit(lat)


async def setup(env: Any) -> None:
    pass


@asynccontextmanager
async def producer(env: Any) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
    from saq import Queue

    queue = Queue.from_url(env.url, name=env.tag)
    await queue.connect()

    async def enqueue(lat: int) -> None:
        await queue.enqueue("noop", lat=lat)

    try:
        yield enqueue
    finally:
        await queue.disconnect()


async def serve(env: Any) -> None:
    from saq import Queue, Worker

    queue = Queue.from_url(env.url, name=env.tag)
    await queue.connect()
    await Worker(queue, functions=[("noop", noop)], concurrency=env.concurrency).start()
