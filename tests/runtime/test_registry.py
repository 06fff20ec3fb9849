"""The worker registry: running workers register, refresh and leave; dead ones drop out."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from jdobb_async_queue import JobQueue, Worker
from jdobb_async_queue._records import WorkerRecord
from jdobb_async_queue.backends.base import WORKER_TTL
from jdobb_async_queue.testing import MockClock

from ..contract._support import WAIT, running

pytestmark = pytest.mark.anyio


async def test_a_running_worker_is_listed_until_it_stops(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    worker = Worker(queue, max_concurrent=3, poll_interval=0.05, worker_id="w-1")
    started = anyio.Event()
    release = anyio.Event()

    @worker.handler("t")
    async def t(ctx: Any) -> None:
        started.set()
        await release.wait()

    assert await queue.workers() == []
    async with running(worker):
        with anyio.fail_after(WAIT):
            while not await queue.workers():
                await anyio.sleep(0.01)
        (info,) = await queue.workers()
        assert info.id == "w-1"
        assert info.concurrency == 3
        assert info.job_types == ["t"]
        assert info.pid > 0 and info.host
        assert info.started_at <= info.heartbeat_at
        release.set()
    assert await queue.workers() == []


async def test_a_dead_worker_drops_out_after_the_ttl(make_queue: Any) -> None:
    clock = MockClock(1_700_000_000.0)
    queue: JobQueue = make_queue(clock=clock)
    record = WorkerRecord(id="dead", host="h", pid=1, started_at=clock(), concurrency=1)
    await queue.backend.register_worker(record, now=clock())
    assert [w.id for w in await queue.workers()] == ["dead"]
    clock.advance(WORKER_TTL - 1)
    assert [w.id for w in await queue.workers()] == ["dead"]
    clock.advance(2)
    assert await queue.workers() == []


async def test_workers_are_listed_oldest_first(make_queue: Any) -> None:
    clock = MockClock(1_700_000_000.0)
    queue: JobQueue = make_queue(clock=clock)
    for name, age in (("young", 0.0), ("old", -5.0)):
        record = WorkerRecord(
            id=name, host="h", pid=1, started_at=clock() + age, concurrency=2, job_types=["a"]
        )
        await queue.backend.register_worker(record, now=clock())
    assert [w.id for w in await queue.workers()] == ["old", "young"]
    await queue.backend.remove_worker("old")
    await queue.backend.remove_worker("unknown")
    assert [w.id for w in await queue.workers()] == ["young"]
