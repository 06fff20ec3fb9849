"""Worker targets for tests/test_cli.py, imported by ``jdobb-queue worker`` from this directory.

The queue comes from the same environment variables the CLI reads, so a test points both the
CLI and its worker at one store with ``JDOBB_QUEUE_URL`` and ``JDOBB_QUEUE_NAMESPACE``.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import anyio.lowlevel

from jdobb_async_queue import JobContext, JobQueue, Worker


def _queue() -> JobQueue:
    return JobQueue(
        backend=os.environ["JDOBB_QUEUE_URL"],
        namespace=os.environ.get("JDOBB_QUEUE_NAMESPACE", "default"),
    )


def make_worker() -> Worker:
    """A worker with every handler the tests use, polling often (SQLite has no push)."""
    worker = Worker(_queue(), poll_interval=0.05, lease=10.0)

    @worker.handler("add")
    async def add(ctx: JobContext) -> dict[str, Any]:
        await ctx.update(progress=0.5, message="adding")
        return {"sum": ctx.data["a"] + ctx.data["b"]}

    @worker.handler("boom")
    async def boom(ctx: JobContext) -> None:
        raise ValueError("boom")

    @worker.handler("sleep")
    async def sleep(ctx: JobContext) -> dict[str, Any]:
        await ctx.update(progress=0.1, message="sleeping")
        await anyio.sleep(float(ctx.data["seconds"]))
        return {"slept": ctx.data["seconds"]}

    return worker


async def make_worker_async() -> Worker:
    """The same worker, from an async factory (awaited by the CLI inside the event loop)."""
    await anyio.lowlevel.checkpoint()
    return make_worker()


def not_a_worker() -> str:
    """A factory that returns the wrong thing."""
    return "nope"
