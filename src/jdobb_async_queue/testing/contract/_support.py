"""Helpers shared by the contract tests (no fixtures: those live in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from datetime import datetime, timezone

import anyio

from jdobb_async_queue import Broadcaster, JobQueue, JobUpdate, QueueStats, Worker

__all__ = ["EMPTY", "WAIT", "aware", "finished", "running"]

#: Stats of a store holding no job at all.
EMPTY = QueueStats()
#: Upper bound, in seconds, of every wait in the suite.
WAIT = 5.0


def aware(ts: float) -> datetime:
    """Seconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, timezone.utc)


async def finished(queue: JobQueue, job_id: str) -> JobUpdate:
    """Follow the job through the Broadcaster until it ends; return its final update."""
    last: JobUpdate | None = None
    with anyio.fail_after(WAIT):
        async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
            async for update in updates:
                last = update
    assert last is not None
    assert last.status.is_terminal, last
    return last


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` in a task group for the body, then stop it (bounded)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield worker
        finally:
            with anyio.fail_after(WAIT):
                await worker.stop()  # returns once run() has returned
            tg.cancel_scope.cancel()  # in case run() had not even started
