"""jdobb-async-queue itself, on each of its stores: ``JobQueue(backend=..., url=...,
namespace=...)``, single ``enqueue`` calls, one ``Worker(max_concurrent=env.concurrency)``.
SQLite polls for other processes' commits every ``env.poll`` seconds (its URL option
``poll_interval``), as every SQLite peer is set to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from . import record

NAME = "jdobb"
DIST = "jdobb-async-queue"
BACKENDS = ("sqlite", "redis", "postgres")
LOOPS = ("asyncio", "trio")
ASYNC = True
DEFAULT = True
POLL_PERIOD = None
SETTINGS = {
    "sqlite": "Worker(max_concurrent=50), URL sqlite:///FILE?poll_interval=0.01",
    "redis": "Worker(max_concurrent=50), its own RESP transport",
    "postgres": "Worker(max_concurrent=50), JobQueue(backend='postgres', url=..., namespace=...)",
}


def unavailable(backend: str) -> str | None:
    """Why jdobb cannot run on ``backend`` in this checkout, or ``None``."""
    try:
        from jdobb_async_queue.backends import BACKEND_NAMES
    except ImportError as exc:
        return f"jdobb_async_queue does not import ({exc})"
    if backend not in BACKEND_NAMES:
        return f"backend={backend!r} is not available in this checkout yet"
    if backend == "postgres":
        try:
            from jdobb_async_queue.backends.postgres import PostgresBackend  # noqa: F401
        except ImportError as exc:
            return f"backend='postgres' is not available in this checkout yet ({exc})"
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "backend='postgres' needs psycopg: pip install -e '.[postgres]'"
    return None


def _queue(env: Any) -> Any:
    from jdobb_async_queue import JobQueue

    if env.backend == "sqlite":
        return JobQueue(backend="sqlite", url=f"sqlite:///{env.url}?poll_interval={env.poll:g}")
    return JobQueue(backend=env.backend, url=env.url, namespace=env.tag)


async def setup(env: Any) -> None:
    pass


@asynccontextmanager
async def producer(env: Any) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
    queue = _queue(env)

    async def enqueue(lat: int) -> None:
        await queue.enqueue("noop", {"lat": lat})

    try:
        yield enqueue
    finally:
        await queue.close()


async def serve(env: Any) -> None:
    from jdobb_async_queue import JobContext, Worker

    queue = _queue(env)
    worker = Worker(queue, max_concurrent=env.concurrency)

    @worker.handler("noop")
    async def noop(ctx: JobContext) -> None:
        await record.hit(ctx.data["lat"])

    await worker.run()
