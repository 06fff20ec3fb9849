"""PgQueuer on asyncpg (its fastest driver): ``Queries.enqueue`` and ``PgQueuer.run`` with its
defaults (``batch_size=10``, no concurrency cap; LISTEN/NOTIFY wake-ups)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from . import record

NAME = "pgqueuer"
DIST = "pgqueuer"
BACKENDS = ("postgres",)
LOOPS = ("asyncio",)
ASYNC = True
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "asyncpg driver, PgQueuer.run() defaults (batch_size=10)"


async def _driver(env: Any) -> tuple[Any, Any]:
    import asyncpg
    from pgqueuer import AsyncpgDriver

    conn = await asyncpg.connect(env.url)
    return conn, AsyncpgDriver(conn)


async def setup(env: Any) -> None:
    from pgqueuer import Queries

    conn, driver = await _driver(env)
    await Queries(driver).install()
    await conn.close()


@asynccontextmanager
async def producer(env: Any) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
    from pgqueuer import Queries

    conn, driver = await _driver(env)
    queries = Queries(driver)

    async def enqueue(lat: int) -> None:
        await queries.enqueue("noop", b"1" if lat else b"0")

    try:
        yield enqueue
    finally:
        await conn.close()


async def serve(env: Any) -> None:
    from pgqueuer import PgQueuer
    from pgqueuer.models import Job

    _, driver = await _driver(env)
    pgq = PgQueuer(driver)

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        await record.hit(job.payload == b"1")

    await pgq.run()
