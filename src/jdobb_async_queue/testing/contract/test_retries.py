"""Retries: automatic ones with exponential backoff, and manual ``retry()`` (MockClock)."""

from __future__ import annotations

import pytest

from jdobb_async_queue import InvalidJobError, Job, JobQueue, JobStatus, QueueStats
from jdobb_async_queue.testing import MockClock

pytestmark = pytest.mark.anyio




async def _get(queue: JobQueue, job_id: str) -> Job:
    job = await queue.get(job_id)
    assert job is not None
    return job


async def _claim(queue: JobQueue, job_id: str) -> Job:
    job = await queue.claim()
    assert job is not None
    assert job.id == job_id
    return job


def _backoff(job: Job, now: float) -> float:
    assert job.execute_at is not None
    return job.execute_at.timestamp() - now


# -- automatic retries --------------------------------------------------------------------------


async def test_failed_attempt_with_retries_left_goes_back_to_pending(
    timed: JobQueue, clock: MockClock
) -> None:
    job_id = await timed.enqueue("t", max_retries=2, retry_delay=10)
    await _claim(timed, job_id)
    assert await timed.fail(job_id, "flaky") is True
    job = await _get(timed, job_id)
    assert job.status is JobStatus.PENDING
    assert job.error == "flaky"  # the last attempt's error, kept while it waits
    assert job.attempts == 1
    assert job.max_retries == 2
    assert job.retry_delay == 10
    assert job.is_done is False
    assert 10 <= _backoff(job, clock()) <= 11 + 1e-6
    assert await timed.stats() == QueueStats(pending=1, scheduled=1)


async def test_retry_is_not_claimable_before_its_backoff(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", max_retries=1, retry_delay=10)
    await _claim(timed, job_id)
    await timed.fail(job_id, "flaky")
    assert await timed.claim() is None
    clock.advance(9.9)
    assert await timed.claim() is None
    clock.advance(1.2)  # past the largest jitter (10%)
    job = await _claim(timed, job_id)
    assert job.attempts == 2
    assert job.status is JobStatus.PROCESSING


async def test_backoff_doubles_with_each_attempt(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", max_retries=3, retry_delay=2)
    expected = [2.0, 4.0, 8.0]
    for attempt, base in enumerate(expected, start=1):
        job = await _claim(timed, job_id)
        assert job.attempts == attempt
        await timed.fail(job_id, f"attempt {attempt}")
        job = await _get(timed, job_id)
        assert job.status is JobStatus.PENDING
        assert base <= _backoff(job, clock()) <= base * 1.1 + 1e-6
        clock.advance(base * 1.1 + 0.01)


async def test_backoff_is_capped_at_one_hour(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", max_retries=2, retry_delay=3000)
    await _claim(timed, job_id)
    await timed.fail(job_id, "first")
    clock.advance(3300.01)
    await _claim(timed, job_id)
    await timed.fail(job_id, "second")  # uncapped: 6000 s
    job = await _get(timed, job_id)
    assert 3600 <= _backoff(job, clock()) <= 3960 + 1e-6


async def test_zero_retry_delay_retries_at_once(timed: JobQueue) -> None:
    job_id = await timed.enqueue("t", max_retries=1, retry_delay=0)
    await _claim(timed, job_id)
    await timed.fail(job_id, "flaky")
    job = await _claim(timed, job_id)
    assert job.attempts == 2


async def test_job_fails_for_good_after_max_retries_plus_one_attempts(
    timed: JobQueue, clock: MockClock
) -> None:
    job_id = await timed.enqueue("t", max_retries=2, retry_delay=1)
    for attempt in (1, 2, 3):
        job = await _claim(timed, job_id)
        assert job.attempts == attempt
        assert await timed.fail(job_id, f"error {attempt}") is True
        clock.advance(10)
    job = await _get(timed, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == "error 3"
    assert job.attempts == 3
    assert job.is_done is True
    assert job.completed_at is not None
    assert await timed.claim() is None
    assert await timed.stats() == QueueStats(failed=1)


async def test_no_retries_by_default(timed: JobQueue) -> None:
    job_id = await timed.enqueue("t")
    job = await _get(timed, job_id)
    assert job.max_retries == 0
    await _claim(timed, job_id)
    assert await timed.fail(job_id, "boom") is True
    assert (await _get(timed, job_id)).status is JobStatus.FAILED


async def test_fail_without_retry_fails_for_good(timed: JobQueue) -> None:
    job_id = await timed.enqueue("t", max_retries=5)
    await _claim(timed, job_id)
    assert await timed.fail(job_id, "fatal", retry=False) is True
    job = await _get(timed, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == "fatal"
    assert job.attempts == 1


async def test_success_on_a_later_attempt(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", max_retries=2, retry_delay=1)
    await _claim(timed, job_id)
    await timed.fail(job_id, "flaky")
    clock.advance(2)
    await _claim(timed, job_id)
    assert await timed.complete(job_id, {"ok": True}) is True
    job = await _get(timed, job_id)
    assert job.status is JobStatus.COMPLETE
    assert job.results == {"ok": True}
    assert job.error is None  # cleared on completion
    assert job.attempts == 2


async def test_retried_job_keeps_its_place_in_line(timed: JobQueue, clock: MockClock) -> None:
    old = await timed.enqueue("t", max_retries=1, retry_delay=1)
    await _claim(timed, old)
    await timed.fail(old, "flaky")
    newer = await timed.enqueue("t")
    clock.advance(2)
    first = await timed.claim()
    second = await timed.claim()
    assert first is not None
    assert second is not None
    assert [first.id, second.id] == [old, newer]


async def test_started_at_and_duration(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", max_retries=1, retry_delay=1)
    job = await _get(timed, job_id)
    assert job.started_at is None
    assert job.duration is None

    first_start = clock()
    claimed = await _claim(timed, job_id)
    assert claimed.started_at is not None
    assert claimed.started_at.timestamp() == pytest.approx(first_start, abs=1e-3)
    assert claimed.duration is None
    await timed.fail(job_id, "flaky")
    assert (await _get(timed, job_id)).duration is None

    clock.advance(5)
    second_start = clock()
    await _claim(timed, job_id)
    job = await _get(timed, job_id)
    assert job.started_at is not None
    assert job.started_at.timestamp() == pytest.approx(second_start, abs=1e-3)
    assert job.duration is None
    clock.advance(7)
    await timed.complete(job_id)
    job = await _get(timed, job_id)
    assert job.duration == pytest.approx(7, abs=1e-3)


# -- manual retry -------------------------------------------------------------------------------


async def test_retry_sends_a_failed_job_back_to_pending_cleared(timed: JobQueue) -> None:
    job_id = await timed.enqueue("t", {"x": 1})
    await _claim(timed, job_id)
    await timed.update(job_id, progress=0.7, message="almost")
    await timed.fail(job_id, "boom")
    assert await timed.retry(job_id) is True
    job = await _get(timed, job_id)
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0
    assert job.error is None
    assert job.progress == 0.0
    assert job.message is None
    assert job.results is None
    assert job.completed_at is None
    assert job.execute_at is None
    assert job.data == {"x": 1}
    assert await timed.stats() == QueueStats(pending=1)
    claimed = await _claim(timed, job_id)
    assert claimed.attempts == 1


async def test_retry_sends_a_cancelled_job_back_to_pending(timed: JobQueue) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id)
    await timed.update(job_id, progress=0.4, message="working")
    await timed.cancel(job_id, "oops")
    assert await timed.retry(job_id) is True
    job = await _get(timed, job_id)
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0
    assert job.error is None
    assert job.progress == 0.0
    assert job.message is None
    assert job.results is None
    await _claim(timed, job_id)


async def test_retried_job_gets_its_full_retry_budget_again(
    timed: JobQueue, clock: MockClock
) -> None:
    job_id = await timed.enqueue("t", max_retries=1, retry_delay=1)
    for _ in range(2):
        await _claim(timed, job_id)
        await timed.fail(job_id, "boom")
        clock.advance(5)
    assert (await _get(timed, job_id)).status is JobStatus.FAILED
    assert await timed.retry(job_id) is True
    await _claim(timed, job_id)
    await timed.fail(job_id, "again")
    job = await _get(timed, job_id)
    assert job.status is JobStatus.PENDING  # one automatic retry left again


async def test_retry_with_delay(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id)
    await timed.fail(job_id, "boom")
    assert await timed.retry(job_id, delay=30) is True
    job = await _get(timed, job_id)
    assert job.status is JobStatus.PENDING
    assert job.execute_at is not None
    assert job.execute_at.timestamp() == pytest.approx(clock() + 30, abs=1e-3)
    assert await timed.claim() is None
    clock.advance(31)
    await _claim(timed, job_id)


async def test_retry_refused_for_unknown_and_live_or_complete_jobs(timed: JobQueue) -> None:
    assert await timed.retry("no-such-job") is False

    pending = await timed.enqueue("t", job_id="pending")
    before = (await _get(timed, pending)).model_dump()
    assert await timed.retry(pending) is False
    assert (await _get(timed, pending)).model_dump() == before

    processing = await timed.enqueue("t", job_id="processing")
    await timed.claim()  # "pending" (FIFO)
    await timed.claim()  # "processing"
    await timed.cancel(pending)
    before = (await _get(timed, processing)).model_dump()
    assert await timed.retry(processing) is False
    assert (await _get(timed, processing)).model_dump() == before

    await timed.complete(processing, {"r": 1})
    before = (await _get(timed, processing)).model_dump()
    assert await timed.retry(processing) is False
    after = await _get(timed, processing)
    assert after.model_dump() == before
    assert after.status is JobStatus.COMPLETE
    assert after.results == {"r": 1}


async def test_retry_negative_delay_raises(timed: JobQueue) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id)
    await timed.fail(job_id, "boom")
    with pytest.raises(InvalidJobError):
        await timed.retry(job_id, delay=-1)
    job = await _get(timed, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == "boom"
