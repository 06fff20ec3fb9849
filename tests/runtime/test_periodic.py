"""``Worker.every``: periodic jobs on every backend, under asyncio and trio.

Occurrences fall on whole multiples of the interval since the epoch and are stored under ids
made from the schedule's name and time, so several workers store each one once. The intervals
here are short (0.2 s) and every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest

import jdobb_async_queue._worker as worker_module
from jdobb_async_queue import (
    BackendUnavailable,
    ConfigurationError,
    InvalidJobError,
    Job,
    JobContext,
    JobQueue,
    JobStatus,
    MissingDependencyError,
    SerializationError,
    TaskArgumentError,
    Worker,
    current_job,
)
from jdobb_async_queue._records import JobRecord
from jdobb_async_queue._runtime.periodic import Schedule
from jdobb_async_queue.backends.memory import MemoryBackend

from ..conftest import QueueFactory

pytestmark = pytest.mark.anyio

WAIT = 15
TICK = 0.2


def _ms(job_id: str) -> int:
    assert job_id.startswith("every:")
    return int(job_id.rsplit(":", 1)[1])


def _ticks(worker: Worker, enough: int) -> tuple[list[str], anyio.Event]:
    """Register a "tick" handler: the ids it ran, and an event set once it ran ``enough``."""
    ran: list[str] = []
    done = anyio.Event()

    @worker.handler("tick")
    async def tick(ctx: JobContext) -> None:
        ran.append(ctx.id)
        if len(ran) == enough:
            done.set()

    return ran, done


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
    assert len(dues) == len(set(dues))  # one job per occurrence
    for job in ran:
        assert job.execute_at is not None
        assert round(job.execute_at.timestamp() * 1000) == _ms(job.id)
        assert job.started_at is not None and job.started_at >= job.execute_at


async def test_an_offset_shifts_every_occurrence(make_queue: QueueFactory) -> None:
    queue = make_queue()
    worker = Worker(queue, poll_interval=0.05)
    ran, done = _ticks(worker, 2)

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
    for interval in (0, -1, 0.0005, math.nan, math.inf, "5", True, timedelta(0)):
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


async def test_a_tasks_unique_key_and_arguments_apply_to_its_schedule(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()

    @queue.task(delay=60, unique_key=lambda region: f"sync:{region}")
    async def sync_region(region: str) -> str:
        return region

    worker = Worker(queue)
    with pytest.raises(TaskArgumentError):
        worker.every(60, sync_region)  # the task needs an argument
    with pytest.raises(TaskArgumentError):
        worker.every(60, sync_region, {"args": ["eu", "us"]})
    worker.every(60, sync_region, {"args": ["eu"]})  # the task's own delay is the schedule's
    (schedule,) = worker._schedules.values()
    assert schedule.options == {"unique_key": "sync:eu"}
    assert schedule.data == {"args": ["eu"]}


def test_occurrences_are_counted_in_whole_steps() -> None:
    """Float division may put a due time back in its own step: the actor counts steps, so the
    next occurrence is always a step further, and every step has an id of its own."""
    rng = random.Random(7)
    for _ in range(2000):
        interval = rng.uniform(0.001, 5000)
        offset = rng.uniform(0, interval) if rng.random() < 0.5 else 0.0
        schedule = Schedule("s", "t", interval, offset=offset)
        occurrence = schedule.next(rng.uniform(1.7e9, 1.8e9))
        step, due = occurrence.step, occurrence.due
        assert schedule.step_after(due - interval / 2) == step  # due lies in its own step
        assert schedule.step_after(due) in (step, step + 1)  # never skips one
        following = schedule.next(due, occurrence)
        assert following.step == step + 1 and following.job_id != occurrence.job_id
    sticky = Schedule("s", "t", 0.105)
    first = sticky.step_after(1.7e9)
    landed_back = [
        k for k in range(first, first + 2000) if sticky.step_after(sticky.occurrence(k).due) == k
    ]
    assert landed_back  # why next() takes a step past the previous one, not step_after alone


class FlakyEnqueue(MemoryBackend):
    """The memory backend; enqueues of schedule occurrences fail as ``errors`` says, in turn."""

    def __init__(self, errors: Sequence[Exception]) -> None:
        super().__init__()
        self.errors = list(errors)

    async def enqueue_many(self, records: Sequence[JobRecord], *, now: float) -> list[str]:
        if self.errors and records[0].id.startswith("every:"):
            raise self.errors.pop(0)
        return await super().enqueue_many(records, now=now)


async def test_an_outage_is_retried_and_other_errors_skip_one_occurrence(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FlakyEnqueue([BackendUnavailable("down for a moment"), InvalidJobError("refused")])
    queue = JobQueue(backend=backend)
    worker = Worker(queue, poll_interval=0.05)
    ran, done = _ticks(worker, 2)

    worker.every(TICK, "tick")
    with caplog.at_level(logging.WARNING, logger="jdobb_async_queue.worker"):
        await _run_until([worker], done)
    await queue.close()
    assert "down for a moment" in caplog.text  # retried within the same occurrence...
    assert "skipped" in caplog.text and "refused" in caplog.text  # ...the next one skipped
    assert len(set(ran)) == 2 and not backend.errors


# -- cron -----------------------------------------------------------------------------------------


def test_cron_occurrences_follow_the_expression_in_its_time_zone() -> None:
    riga = ZoneInfo("Europe/Riga")
    schedule = Schedule("backup", "t", expression="30 3 * * MON-FRI", tz=riga)
    friday_noon = datetime(2026, 3, 27, 12, 0, tzinfo=riga).timestamp()
    monday = schedule.next(friday_noon)  # the weekend is skipped; DST began on the Sunday
    assert datetime.fromtimestamp(monday.due, riga) == datetime(2026, 3, 30, 3, 30, tzinfo=riga)
    assert monday.job_id == f"cron:backup:{round(monday.due * 1000)}"
    tuesday = schedule.next(monday.due - 1, monday)  # after the previous one, whatever the clock
    assert tuesday.due - monday.due == 24 * 3600
    every_second = Schedule("s", "t", expression="* * * * * *")
    moment = 1_800_000_000.25
    assert every_second.next(moment).due == 1_800_000_001.0


async def test_a_cron_schedule_runs_once_per_match(make_queue: QueueFactory) -> None:
    queue = make_queue()
    workers = [Worker(queue, poll_interval=0.05) for _ in range(2)]
    ran: list[Job] = []
    done = anyio.Event()
    for worker in workers:

        @worker.handler("pulse")
        async def pulse(ctx: JobContext) -> None:
            ran.append(ctx.job)
            if len(ran) == 2:
                done.set()

        worker.cron("* * * * * *", "pulse", {"from": "cron"}, ttl=60)  # every second
    await _run_until(workers, done)
    ids = [job.id for job in ran]
    assert len(ids) == len(set(ids)) and all(i.startswith("cron:pulse:") for i in ids)
    for job in ran:
        assert job.execute_at is not None and job.execute_at.microsecond == 0
        assert job.data == {"from": "cron"} and job.ttl == 60


async def test_bad_cron_schedules_are_refused(
    make_queue: QueueFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = make_queue()
    worker = Worker(queue)
    for expression in ("not cron", "61 * * * *", "* * *", "", 5):
        with pytest.raises(ConfigurationError, match="cron expression"):
            worker.cron(expression, "t")  # type: ignore[arg-type]
    for never in ("0 0 30 2 *", "0 0 1 1 * 0 2001"):  # February 30; a year long gone
        with pytest.raises(ConfigurationError, match="never matches"):
            worker.cron(never, "t")
    with pytest.raises(ConfigurationError, match="tz"):
        worker.cron("0 * * * *", "t", tz="Europe/Riga")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="decides"):
        worker.cron("0 * * * *", "t", delay=5)  # type: ignore[call-arg]
    worker.cron("0 * * * *", "t")
    with pytest.raises(ConfigurationError, match="already exists"):
        worker.every(60, "t")  # one name space for both kinds

    def missing() -> None:
        raise ImportError("No module named 'croniter'")

    monkeypatch.setattr(worker_module, "load_croniter", missing)
    with pytest.raises(MissingDependencyError, match=r"jdobb-async-queue\[cron\]"):
        worker.cron("0 * * * *", "t", name="other")
    assert await queue.list_jobs() == []
