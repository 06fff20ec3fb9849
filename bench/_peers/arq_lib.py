"""arq: ``ArqRedis.enqueue_job`` and an ``arq.worker.Worker(max_jobs=env.concurrency)``, its
other settings its defaults. Its worker polls on a fixed period (``poll_delay``, 0.5 s) instead
of being woken, so its idle latency is sampled at uniformly random phases of that period."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from . import record

NAME = "arq"
DIST = "arq"
BACKENDS = ("redis",)
LOOPS = ("asyncio",)
ASYNC = True
DEFAULT = False
POLL_PERIOD = 0.5  # arq's default poll_delay
SETTINGS = "Worker(max_jobs=50), poll_delay 0.5 s (default)"


async def noop(ctx: dict[str, Any], lat: int) -> None:
    await record.hit(lat)


def _settings(env: Any) -> Any:
    from arq.connections import RedisSettings

    return RedisSettings.from_dsn(env.url)


async def setup(env: Any) -> None:
    pass


@asynccontextmanager
async def producer(env: Any) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
    from arq import create_pool

    pool = await create_pool(_settings(env), default_queue_name=env.tag)

    async def enqueue(lat: int) -> None:
        await pool.enqueue_job("noop", lat)

    try:
        yield enqueue
    finally:
        await pool.aclose()


async def serve(env: Any) -> None:
    from arq.worker import Worker, func

    worker = Worker(
        functions=[func(noop, name="noop")],
        queue_name=env.tag,
        redis_settings=_settings(env),
        max_jobs=env.concurrency,
    )
    await worker.async_run()
