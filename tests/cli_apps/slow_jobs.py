"""Worker target for tests/test_cli_signals.py: ``jdobb-queue worker slow_jobs:make_worker``.

The queue comes from ``JDOBB_QUEUE_URL`` / ``JDOBB_QUEUE_NAMESPACE``; ``SLOW_JOBS_DRAIN`` sets
the worker's ``drain_timeout`` (seconds). ``short`` sleeps ``data["seconds"]`` and returns;
``long`` sleeps ``data["seconds"]`` too (the tests give it far more than the drain timeout).
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from jdobb_async_queue import JobContext, JobQueue, Worker


def make_worker() -> Worker:
    queue = JobQueue(
        backend=os.environ["JDOBB_QUEUE_URL"],
        namespace=os.environ.get("JDOBB_QUEUE_NAMESPACE", "default"),
    )
    worker = Worker(
        queue,
        max_concurrent=4,
        poll_interval=0.05,
        lease=10.0,
        drain_timeout=float(os.environ.get("SLOW_JOBS_DRAIN", "2.0")),
    )

    @worker.handler("short")
    async def short(ctx: JobContext) -> dict[str, Any]:
        await anyio.sleep(float(ctx.data["seconds"]))
        return {"by": "cli"}

    @worker.handler("long")
    async def long(ctx: JobContext) -> dict[str, Any]:
        await anyio.sleep(float(ctx.data["seconds"]))
        return {"by": "cli"}

    return worker
