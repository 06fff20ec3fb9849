"""procrastinate on its psycopg 3 connector: ``task.defer_async`` and ``App.run_worker_async``
with ``concurrency=env.concurrency``, other settings its defaults (LISTEN/NOTIFY wake-ups, a
5 s polling fallback)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from . import record

NAME = "procrastinate"
DIST = "procrastinate"
BACKENDS = ("postgres",)
LOOPS = ("asyncio",)
ASYNC = True
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "PsycopgConnector, run_worker_async(concurrency=50)"


def _app(env: Any) -> tuple[Any, Any]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=env.url))

    @app.task(name="noop")
    async def noop(lat: int) -> None:
        await record.hit(lat)

    return app, noop


async def setup(env: Any) -> None:
    app, _ = _app(env)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


@asynccontextmanager
async def producer(env: Any) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
    app, noop = _app(env)

    async def enqueue(lat: int) -> None:
        await noop.defer_async(lat=lat)

    async with app.open_async():
        yield enqueue


async def serve(env: Any) -> None:
    import logging

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    app, _ = _app(env)
    async with app.open_async():
        await app.run_worker_async(concurrency=env.concurrency, install_signal_handlers=False)
