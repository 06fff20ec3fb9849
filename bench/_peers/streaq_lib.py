"""streaq: ``await task.enqueue()`` inside ``async with worker`` (its producer side) and
``Worker.run_async`` with ``concurrency=env.concurrency``, its other settings its defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from . import record

NAME = "streaq"
DIST = "streaq"
BACKENDS = ("redis",)
LOOPS = ("asyncio",)
ASYNC = True
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "Worker(concurrency=50)"


def _worker(env: Any) -> tuple[Any, Any]:
    from streaq import Worker

    worker = Worker(redis_url=env.url, queue_name=env.tag, concurrency=env.concurrency)

    @worker.task(name="noop")
    async def noop(lat: int) -> None:
        await record.hit(lat)

    return worker, noop


async def setup(env: Any) -> None:
    pass


@asynccontextmanager
async def producer(env: Any) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
    worker, noop = _worker(env)

    async def enqueue(lat: int) -> None:
        await noop.enqueue(lat)

    async with worker:
        yield enqueue


async def serve(env: Any) -> None:
    worker, _ = _worker(env)
    await worker.run_async()
