"""dbjobq: its SQLAlchemy storage on ``sqlite+aiosqlite`` (the async driver it requires),
``JobQueue.enqueue`` and a ``dbjobq.Worker`` polling every ``env.poll`` seconds (no backoff),
which runs one job at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from . import record

NAME = "dbjobq"
DIST = "dbjobq"
BACKENDS = ("sqlite",)
LOOPS = ("asyncio",)
ASYNC = True
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "SQLAlchemyStorage(sqlite+aiosqlite), Worker(poll_interval=0.01, max=0.01)"
JOB = "_peers.dbjobq_lib.noop"


async def noop(data: dict[str, Any]) -> None:
    """The job dbjobq imports by name."""
    await record.hit(data["lat"])


def _queue(env: Any) -> Any:
    from dbjobq import JobQueue
    from dbjobq.storage.sqlalchemy_storage import SQLAlchemyStorage

    return JobQueue(SQLAlchemyStorage(f"sqlite+aiosqlite:///{env.url}"))


async def setup(env: Any) -> None:
    queue = _queue(env)
    await queue.storage.initialize()
    await queue.storage.close()


@asynccontextmanager
async def producer(env: Any) -> AsyncIterator[Callable[[int], Awaitable[Any]]]:
    queue = _queue(env)

    async def enqueue(lat: int) -> None:
        await queue.enqueue(JOB, {"lat": lat})

    try:
        yield enqueue
    finally:
        await queue.storage.close()


async def serve(env: Any) -> None:
    import asyncio

    from dbjobq import Worker

    worker = Worker(_queue(env), poll_interval=env.poll, max_poll_interval=env.poll)
    await worker.start()
    await asyncio.Event().wait()  # until the process is terminated
