"""``list_jobs`` order and filters, and ``stats`` counts (MockClock for distinct times)."""

from __future__ import annotations

from typing import Any

import pytest

from jdobb_async_queue import JobPriority, JobQueue, JobStatus, QueueStats
from jdobb_async_queue.testing import MockClock

from ._support import EMPTY

pytestmark = pytest.mark.anyio




async def _ids(queue: JobQueue, *args: Any, **kwargs: Any) -> list[str]:
    return [job.id for job in await queue.list_jobs(*args, **kwargs)]


async def _finish(queue: JobQueue, clock: MockClock, job_id: str) -> None:
    """Claim ``job_id`` (the next claimable job) and complete it one second later."""
    job = await queue.claim()
    assert job is not None
    assert job.id == job_id
    clock.advance(1)
    await queue.complete(job_id)
    clock.advance(1)


async def test_pending_jobs_come_in_claim_order(timed: JobQueue, clock: MockClock) -> None:
    low = await timed.enqueue("t", priority=JobPriority.LOW)
    normal1 = await timed.enqueue("t")
    high = await timed.enqueue("t", priority=JobPriority.HIGH)
    normal2 = await timed.enqueue("t")
    late = await timed.enqueue("t", delay=20, priority=JobPriority.HIGH)
    soon = await timed.enqueue("t", delay=10, priority=JobPriority.LOW)
    waiting = await timed.enqueue("t", depends_on=[normal1], priority=JobPriority.HIGH)

    expected = [high, normal1, normal2, low, soon, late, waiting]
    assert await _ids(timed, JobStatus.PENDING) == expected
    assert await _ids(timed, "pending") == expected

    claimed = []
    while (job := await timed.claim()) is not None:
        claimed.append(job.id)
    assert claimed == expected[:4]


async def test_pending_order_follows_the_clock(timed: JobQueue, clock: MockClock) -> None:
    later = await timed.enqueue("t", delay=10, priority=JobPriority.LOW)
    ready = await timed.enqueue("t", priority=JobPriority.LOW)
    assert await _ids(timed, "pending") == [ready, later]
    urgent = await timed.enqueue("t", delay=5, priority=JobPriority.HIGH)
    clock.advance(30)  # both scheduled jobs are due now: claimable, by priority then age
    assert await _ids(timed, "pending") == [urgent, later, ready]


async def test_other_statuses_most_recently_updated_first(
    timed: JobQueue, clock: MockClock
) -> None:
    a = await timed.enqueue("t")
    b = await timed.enqueue("t")
    c = await timed.enqueue("t")
    for job_id in (a, b, c):
        await _finish(timed, clock, job_id)
    assert await _ids(timed, JobStatus.COMPLETE) == [c, b, a]


async def test_progress_counts_as_an_update(timed: JobQueue, clock: MockClock) -> None:
    a = await timed.enqueue("t")
    b = await timed.enqueue("t")
    await timed.claim()
    clock.advance(1)
    await timed.claim()
    assert await _ids(timed, "processing") == [b, a]
    clock.advance(1)
    await timed.update(a, progress=0.5)
    assert await _ids(timed, "processing") == [a, b]


async def test_failed_and_cancelled_lists(timed: JobQueue, clock: MockClock) -> None:
    f1 = await timed.enqueue("t")
    x1 = await timed.enqueue("t")
    f2 = await timed.enqueue("t")
    await timed.claim()
    clock.advance(1)
    await timed.fail(f1, "boom")
    clock.advance(1)
    await timed.cancel(x1)
    clock.advance(1)
    await timed.claim()
    clock.advance(1)
    await timed.fail(f2, "boom")
    assert await _ids(timed, JobStatus.FAILED) == [f2, f1]
    assert await _ids(timed, JobStatus.CANCELLED) == [x1]
    assert await _ids(timed, JobStatus.PENDING) == []


async def test_no_status_lists_every_job_most_recently_updated_first(
    timed: JobQueue, clock: MockClock
) -> None:
    a = await timed.enqueue("t")
    clock.advance(1)
    b = await timed.enqueue("t")
    clock.advance(1)
    await timed.claim()  # a
    clock.advance(1)
    c = await timed.enqueue("t")
    assert await _ids(timed) == [c, a, b]


async def test_job_type_filter(timed: JobQueue, clock: MockClock) -> None:
    a1 = await timed.enqueue("a")
    await timed.enqueue("b")
    a2 = await timed.enqueue("a")
    assert await _ids(timed, "pending", job_type="a") == [a1, a2]
    assert await _ids(timed, "pending", job_type="nope") == []
    assert len(await timed.list_jobs(job_type="b")) == 1


async def test_limit_and_offset_page_through_the_order(timed: JobQueue) -> None:
    ids = [await timed.enqueue("t", {"i": i}) for i in range(7)]
    assert await _ids(timed, "pending", limit=3) == ids[:3]
    assert await _ids(timed, "pending", limit=3, offset=3) == ids[3:6]
    assert await _ids(timed, "pending", limit=3, offset=6) == ids[6:]
    assert await _ids(timed, "pending", offset=7) == []
    assert await _ids(timed, "pending", limit=0) == []


async def test_default_limit_is_100(timed: JobQueue) -> None:
    await timed.enqueue_many([{"job_type": "t"} for _ in range(105)])
    assert len(await timed.list_jobs("pending")) == 100
    assert len(await timed.list_jobs("pending", limit=200)) == 105


async def test_listed_jobs_carry_their_fields(timed: JobQueue) -> None:
    job_id = await timed.enqueue("t", {"x": 1}, metadata={"m": 2})
    (job,) = await timed.list_jobs("pending")
    assert job.id == job_id
    assert job.data == {"x": 1}
    assert job.metadata == {"m": 2}
    assert job.status is JobStatus.PENDING


async def test_stats_on_an_empty_queue(timed: JobQueue) -> None:
    assert await timed.stats() == EMPTY
    assert await timed.list_jobs() == []


async def test_stats_count_every_status(timed: JobQueue, clock: MockClock) -> None:
    done = await timed.enqueue("t")
    await _finish(timed, clock, done)
    failed = await timed.enqueue("t")
    await timed.claim()
    await timed.fail(failed, "boom")
    cancelled = await timed.enqueue("t")
    await timed.cancel(cancelled)
    running = await timed.enqueue("t")
    await timed.claim()
    await timed.enqueue("t")
    await timed.enqueue("t", delay=10)
    await timed.enqueue("t", depends_on=[running])

    assert await timed.stats() == QueueStats(
        pending=3, processing=1, complete=1, failed=1, cancelled=1, scheduled=1, waiting=1
    )
    clock.advance(11)
    assert await timed.stats() == QueueStats(
        pending=3, processing=1, complete=1, failed=1, cancelled=1, scheduled=0, waiting=1
    )
    await timed.complete(running)
    assert await timed.stats() == QueueStats(
        pending=3, processing=0, complete=2, failed=1, cancelled=1, scheduled=0, waiting=0
    )


async def test_stats_scheduled_includes_retry_backoff(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", max_retries=1, retry_delay=10)
    await timed.claim()
    await timed.fail(job_id, "flaky")
    assert await timed.stats() == QueueStats(pending=1, scheduled=1)
    assert await _ids(timed, "pending") == [job_id]
    clock.advance(12)
    assert await timed.stats() == QueueStats(pending=1)
