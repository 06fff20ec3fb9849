"""``Worker.every``: periodic jobs on every backend, under asyncio and trio.

Occurrences fall on whole multiples of the interval since the epoch and are stored under ids
made from the schedule's name and time, so several workers store each one once. The intervals
here are short (0.2 s) and every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import anyio
import pytest

from jdobb_async_queue import (
    ConfigurationError,
    InvalidJobError,
    Job,
    JobContext,
    JobStatus,
    SerializationError,
    Worker,
    current_job,
)

from ..conftest import QueueFactory

pytestmark = pytest.mark.anyio

WAIT = 15
TICK = 0.2


def _ms(job_id: str) -> int:
    assert job_id.startswith("every:")
    return int(job_id.rsplit(":", 1)[1])


async def _run_until(workers: list[Worker], done: anyio.Event) -> None:
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for worker in workers:
                tg.start_soon(worker.run)
            await done.wait()
            for worker in workers:
                await worker.stop()


async def test_occurrences_fall_on_multiples_of_the_interval(make_queue: QueueFactory) -> None:
    queue = make_queue()
    worker = Worker(queue, poll_interval=0.05)
    ran: list[Job] = []
    done = anyio.Event()

    @worker.handler("tick")
    async def tick(ctx: JobContext) -> dict[str, Any]:
        ran.append(ctx.job)
        if len(ran) == 3:
            done.set()
        return {"n": len(ran)}

    worker.every(TICK, "tick", {"source": "schedule"}, max_retries=2)
    await _run_until([worker], done)

    first = ran[0]
    assert first.data == {"source": "schedule"} and first.max_retries == 2
    dues = [_ms(job.id) for job in ran]
    assert all(ms % round(TICK * 1000) == 0 for ms in dues)
    assert dues == sorted(set(dues))  # one job per occurrence, in order
    for job in ran:
        assert job.execute_at is not None
        assert round(job.execute_at.timestamp() * 1000) == _ms(job.id)
        assert job.started_at is not None and job.started_at >= job.execute_at


async def test_an_offset_shifts_every_occurrence(make_queue: QueueFactory) -> None:
    queue = make_queue()
    worker = Worker(queue, poll_interval=0.05)
    ran: list[str] = []
    done = anyio.Event()

    @worker.handler("tick")
    async def tick(ctx: JobContext) -> None:
        ran.append(ctx.id)
        if len(ran) == 2:
            done.set()

    worker.every(TICK, "tick", offset=timedelta(milliseconds=50))
    await _run_until([worker], done)
    assert [_ms(job_id) % round(TICK * 1000) for job_id in ran] == [50, 50]


async def test_several_workers_store_each_occurrence_once(make_queue: QueueFactory) -> None:
    queue = make_queue()
    ran: list[str] = []
    done = anyio.Event()
    workers = [Worker(queue, poll_interval=0.05) for _ in range(3)]
    for worker in workers:

        @worker.handler("tick")
        async def tick(ctx: JobContext) -> None:
            ran.append(ctx.id)
            if len(ran) == 4:
                done.set()

        worker.every(TICK, "tick")
    await _run_until(workers, done)

    assert len(ran) == len(set(ran))  # no occurrence ran twice
    stored = await queue.list_jobs(job_type="tick", limit=100)
    dues = [_ms(job.id) for job in stored]
    assert len(dues) == len(set(dues)) >= 4  # one job per occurrence, whoever enqueued it


async def test_a_task_runs_on_a_schedule(make_queue: QueueFactory) -> None:
    queue = make_queue()
    done = anyio.Event()
    seen: list[str] = []

    @queue.task(name="reports.hourly", ttl=60)
    async def hourly() -> str:
        seen.append(current_job().id)
        done.set()
        return "sent"

    worker = Worker(queue, poll_interval=0.05)
    worker.every(timedelta(seconds=TICK), hourly)
    await _run_until([worker], done)
    job = await queue.get(seen[0])
    assert job is not None
    assert job.job_type == "reports.hourly" and job.ttl == 60  # the task's own options
    assert job.id.startswith("every:reports.hourly:")
    assert job.status is JobStatus.COMPLETE and job.results == {"result": "sent"}


async def test_a_unique_key_skips_an_occurrence_while_the_last_one_runs(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()
    worker = Worker(queue, poll_interval=0.05, max_concurrent=2)
    first_started, release = anyio.Event(), anyio.Event()
    started: list[str] = []

    @worker.handler("sync")
    async def sync(ctx: JobContext) -> None:
        started.append(ctx.id)
        first_started.set()
        await release.wait()

    worker.every(TICK / 2, "sync", unique_key="sync")
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await first_started.wait()
            # Several occurrences fall due while the first runs: each finds the key held.
            await anyio.sleep(TICK * 2)
            assert len(started) == 1
            assert [j.id for j in await queue.list_jobs(job_type="sync")] == started
            release.set()
            await worker.stop()


async def test_burst_and_process_one_keep_no_schedule(make_queue: QueueFactory) -> None:
    queue = make_queue()
    worker = Worker(queue, poll_interval=0.05)

    @worker.handler("tick")
    async def tick(ctx: JobContext) -> None:
        return None

    @worker.handler("work")
    async def work(ctx: JobContext) -> None:
        await anyio.sleep(0.1)  # a job that takes a while: ten occurrences would fall due

    worker.every(0.01, "tick")
    only = await queue.enqueue("work")
    with anyio.fail_after(WAIT):
        await worker.run(burst=True)
    assert await worker.process_one() is False
    assert [job.id for job in await queue.list_jobs()] == [only]


async def test_bad_schedules_are_refused_and_store_nothing(make_queue: QueueFactory) -> None:
    queue = make_queue()
    worker = Worker(queue)
    for interval in (0, -1, math.nan, math.inf, "5", True, timedelta(0)):
        with pytest.raises(ConfigurationError, match="interval"):
            worker.every(interval, "tick")  # type: ignore[arg-type]
    for offset in (-1, TICK * 5, 1.0, "5", math.nan):
        with pytest.raises(ConfigurationError, match="offset"):
            worker.every(1, "tick", offset=offset)  # type: ignore[arg-type]
    for fixed in ({"job_id": "x"}, {"delay": 5}, {"depends_on": ["a"]}):
        with pytest.raises(ConfigurationError, match="decides"):
            worker.every(1, "tick", **fixed)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError):
        worker.every(1, "tick", priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError):
        worker.every(1, "")
    with pytest.raises(SerializationError):
        worker.every(1, "tick", {"when": object()})
    with pytest.raises(ConfigurationError, match="name"):
        worker.every(1, "tick", name="")
    worker.every(1, "tick")
    with pytest.raises(ConfigurationError, match="already exists"):
        worker.every(60, "tick")
    worker.every(60, "tick", name="tick-hourly")  # another name: fine
    assert await queue.list_jobs() == []
