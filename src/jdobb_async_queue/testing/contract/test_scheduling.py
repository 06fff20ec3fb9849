"""Scheduling: ``delay`` and ``execute_at`` keep a job unclaimable until its time (MockClock)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from jdobb_async_queue import InvalidJobError, JobPriority, JobQueue, JobStatus, QueueStats
from jdobb_async_queue.testing import MockClock

from ._support import EMPTY, aware

pytestmark = pytest.mark.anyio




async def test_delay_in_seconds_holds_the_job_until_due(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", delay=30)
    assert await timed.claim() is None
    assert await timed.stats() == QueueStats(pending=1, scheduled=1)
    clock.advance(29.5)
    assert await timed.claim() is None
    clock.advance(1)
    job = await timed.claim()
    assert job is not None
    assert job.id == job_id
    assert await timed.stats() == QueueStats(processing=1)


async def test_delay_as_timedelta(timed: JobQueue, clock: MockClock) -> None:
    start = clock()
    job_id = await timed.enqueue("t", delay=timedelta(minutes=2))
    job = await timed.get(job_id)
    assert job is not None
    assert job.execute_at is not None
    assert job.execute_at.timestamp() == pytest.approx(start + 120, abs=1e-3)
    clock.advance(119)
    assert await timed.claim() is None
    clock.advance(2)
    claimed = await timed.claim()
    assert claimed is not None
    assert claimed.id == job_id


async def test_fractional_delay(timed: JobQueue, clock: MockClock) -> None:
    await timed.enqueue("t", delay=0.5)
    assert await timed.claim() is None
    clock.advance(0.6)
    assert await timed.claim() is not None


async def test_execute_at_aware_datetime(timed: JobQueue, clock: MockClock) -> None:
    when = aware(clock() + 3600)
    job_id = await timed.enqueue("t", execute_at=when)
    job = await timed.get(job_id)
    assert job is not None
    assert job.execute_at is not None
    assert job.execute_at.utcoffset() == timedelta(0)
    assert job.execute_at.timestamp() == pytest.approx(when.timestamp(), abs=1e-3)
    clock.advance(3599)
    assert await timed.claim() is None
    clock.advance(2)
    claimed = await timed.claim()
    assert claimed is not None
    assert claimed.id == job_id


async def test_execute_at_in_another_timezone_is_the_same_instant(
    timed: JobQueue, clock: MockClock
) -> None:
    when = aware(clock() + 600).astimezone(timezone(timedelta(hours=5, minutes=30)))
    job_id = await timed.enqueue("t", execute_at=when)
    job = await timed.get(job_id)
    assert job is not None
    assert job.execute_at is not None
    assert job.execute_at.utcoffset() == timedelta(0)
    assert job.execute_at.timestamp() == pytest.approx(when.timestamp(), abs=1e-3)
    clock.advance(599)
    assert await timed.claim() is None
    clock.advance(2)
    assert await timed.claim() is not None


async def test_naive_execute_at_is_local_time(timed: JobQueue, clock: MockClock) -> None:
    naive = datetime.fromtimestamp(clock() + 90)  # local wall time, no tzinfo
    assert naive.tzinfo is None
    job_id = await timed.enqueue("t", execute_at=naive)
    job = await timed.get(job_id)
    assert job is not None
    assert job.execute_at is not None
    assert job.execute_at.utcoffset() == timedelta(0)
    assert job.execute_at.timestamp() == pytest.approx(naive.timestamp(), abs=1e-3)
    clock.advance(89)
    assert await timed.claim() is None
    clock.advance(2)
    assert await timed.claim() is not None


async def test_execute_at_in_the_past_is_claimable_at_once(
    timed: JobQueue, clock: MockClock
) -> None:
    job_id = await timed.enqueue("t", execute_at=aware(clock() - 60))
    job = await timed.claim()
    assert job is not None
    assert job.id == job_id


async def test_immediate_job_has_no_execute_at(timed: JobQueue) -> None:
    now_id = await timed.enqueue("t")
    zero_id = await timed.enqueue("t", delay=0)
    for job_id in (now_id, zero_id):
        job = await timed.get(job_id)
        assert job is not None
        assert job.execute_at is None
    assert await timed.stats() == QueueStats(pending=2)


async def test_execute_at_is_reported_in_utc(timed: JobQueue, clock: MockClock) -> None:
    start = clock()
    job_id = await timed.enqueue("t", delay=45)
    job = await timed.get(job_id)
    assert job is not None
    assert job.execute_at is not None
    assert job.execute_at.tzinfo is not None
    assert job.execute_at.utcoffset() == timedelta(0)
    assert job.execute_at.timestamp() == pytest.approx(start + 45, abs=1e-3)


async def test_scheduled_job_does_not_block_ready_ones(timed: JobQueue, clock: MockClock) -> None:
    await timed.enqueue("t", priority=JobPriority.HIGH, delay=10)
    low = await timed.enqueue("t", priority=JobPriority.LOW)
    job = await timed.claim()
    assert job is not None
    assert job.id == low
    assert await timed.claim() is None


async def test_due_jobs_are_claimed_by_priority(timed: JobQueue, clock: MockClock) -> None:
    normal = await timed.enqueue("t", delay=5)
    high = await timed.enqueue("t", priority=JobPriority.HIGH, delay=20)
    clock.advance(30)
    first = await timed.claim()
    second = await timed.claim()
    assert first is not None
    assert second is not None
    assert [first.id, second.id] == [high, normal]


async def test_scheduled_job_can_be_cancelled(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", delay=10)
    assert await timed.cancel(job_id) is True
    clock.advance(20)
    assert await timed.claim() is None
    job = await timed.get(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED


@pytest.mark.parametrize(
    "options",
    [
        {"delay": 10, "execute_at": datetime(2030, 1, 1, tzinfo=timezone.utc)},
        {"delay": 0, "execute_at": datetime(2030, 1, 1, tzinfo=timezone.utc)},
        {"delay": -1},
        {"delay": -0.001},
        {"delay": timedelta(seconds=-5)},
        {"delay": math.nan},
        {"delay": math.inf},
        {"delay": "10"},
        {"execute_at": 1_900_000_000.0},
        {"execute_at": "2030-01-01T00:00:00Z"},
    ],
    ids=repr,
)
async def test_bad_schedule_raises_value_error_and_stores_nothing(
    timed: JobQueue, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidJobError) as info:
        await timed.enqueue("t", job_id="j", **options)
    assert isinstance(info.value, ValueError)
    assert await timed.get("j") is None
    assert await timed.stats() == EMPTY
