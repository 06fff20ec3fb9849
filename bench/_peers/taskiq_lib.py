"""taskiq with taskiq-redis: ``ListQueueBroker`` (a plain Redis list, at-most-once, like huey's
default Redis storage; no result backend, taskiq's default) and the receiver with
``max_async_tasks=env.concurrency``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from . import record

NAME = "taskiq"
DIST = "taskiq"
BACKENDS = ("redis",)
LOOPS = ("asyncio",)
ASYNC = True
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "taskiq-redis ListQueueBroker, max_async_tasks=50, no result backend"


def _broker(env: Any) -> tuple[Any, Any]:
    from taskiq_redis import ListQueueBroker

    broker = ListQueueBroker(env.url, queue_name=env.tag)

    @broker.task(task_name="noop")
    async def noop(lat: int) -> None:
        await record.hit(lat)

    return broker, noop


async def setup(env: Any) -> None:
    pass


@asynccontextmanager
async def producer(env: Any) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
    broker, noop = _broker(env)
    await broker.startup()

    async def enqueue(lat: int) -> None:
        await noop.kiq(lat)

    try:
        yield enqueue
    finally:
        await broker.shutdown()


async def serve(env: Any) -> None:
    from taskiq.api import run_receiver_task

    broker, _ = _broker(env)
    broker.is_worker_process = True
    await broker.startup()
    await run_receiver_task(broker, max_async_tasks=env.concurrency)
