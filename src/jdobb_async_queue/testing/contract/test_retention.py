"""Retention: ``ttl`` / ``default_ttl`` from the terminal state, and ``purge`` (MockClock)."""

from __future__ import annotations

from typing import Any

import pytest

from jdobb_async_queue import (
    InvalidJobError,
    JobQueue,
    JobStatus,
    QueueStats,
    UnknownDependencyError,
)
from jdobb_async_queue.testing import MockClock

from ._support import EMPTY, aware

pytestmark = pytest.mark.anyio




async def _claim(queue: JobQueue, job_id: str) -> None:
    job = await queue.claim()
    assert job is not None
    assert job.id == job_id


# -- ttl ----------------------------------------------------------------------------------------


async def test_ttl_counts_from_the_terminal_state(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", ttl=10)
    clock.advance(100)  # pending: never expires
    assert await timed.get(job_id) is not None
    await _claim(timed, job_id)
    clock.advance(100)  # processing: never expires
    assert await timed.get(job_id) is not None
    await timed.complete(job_id, {"r": 1})
    clock.advance(9)
    job = await timed.get(job_id)
    assert job is not None
    assert job.results == {"r": 1}
    clock.advance(2)
    assert await timed.get(job_id) is None
    assert await timed.stats() == EMPTY
    assert await timed.list_jobs() == []
    assert await timed.list_jobs(JobStatus.COMPLETE) == []


@pytest.mark.parametrize("end", ["fail", "cancel-pending", "cancel-processing"])
async def test_ttl_applies_to_every_terminal_state(
    timed: JobQueue, clock: MockClock, end: str
) -> None:
    job_id = await timed.enqueue("t", ttl=5)
    if end == "fail":
        await _claim(timed, job_id)
        await timed.fail(job_id, "boom")
    elif end == "cancel-pending":
        await timed.cancel(job_id)
    else:
        await _claim(timed, job_id)
        await timed.cancel(job_id)
    clock.advance(4)
    assert await timed.get(job_id) is not None
    clock.advance(2)
    assert await timed.get(job_id) is None
    assert await timed.stats() == EMPTY


async def test_pending_job_with_ttl_never_expires(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", ttl=1)
    clock.advance(10_000)
    job = await timed.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert await timed.stats() == QueueStats(pending=1)
    await _claim(timed, job_id)


async def test_retry_backoff_does_not_start_the_ttl(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", ttl=1, max_retries=1, retry_delay=100)
    await _claim(timed, job_id)
    await timed.fail(job_id, "flaky")  # PENDING again, not terminal
    clock.advance(150)
    assert await timed.get(job_id) is not None
    await _claim(timed, job_id)


async def test_no_ttl_keeps_finished_jobs(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id)
    await timed.complete(job_id)
    clock.advance(10 * 365 * 86400)
    assert await timed.get(job_id) is not None


async def test_default_ttl_of_the_queue(make_queue: Any, clock: MockClock) -> None:
    queue: JobQueue = make_queue(clock=clock, default_ttl=30)
    job_id = await queue.enqueue("t")
    job = await queue.get(job_id)
    assert job is not None
    assert job.ttl == 30
    await _claim(queue, job_id)
    await queue.complete(job_id)
    clock.advance(29)
    assert await queue.get(job_id) is not None
    clock.advance(2)
    assert await queue.get(job_id) is None


async def test_explicit_ttl_overrides_default_ttl(make_queue: Any, clock: MockClock) -> None:
    queue: JobQueue = make_queue(clock=clock, default_ttl=30)
    job_id = await queue.enqueue("t", ttl=300)
    await _claim(queue, job_id)
    await queue.complete(job_id)
    clock.advance(100)
    job = await queue.get(job_id)
    assert job is not None
    assert job.ttl == 300


async def test_expired_job_cannot_be_a_dependency(timed: JobQueue, clock: MockClock) -> None:
    dep = await timed.enqueue("t", ttl=1)
    await _claim(timed, dep)
    await timed.complete(dep)
    clock.advance(2)
    with pytest.raises(UnknownDependencyError):
        await timed.enqueue("t", depends_on=[dep])
    assert await timed.stats() == EMPTY


async def test_expired_job_cannot_be_retried(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", ttl=1)
    await timed.cancel(job_id)
    clock.advance(2)
    assert await timed.retry(job_id) is False
    assert await timed.get(job_id) is None


async def test_retry_clears_the_expiry(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", ttl=5)
    await timed.cancel(job_id)
    clock.advance(3)
    assert await timed.retry(job_id) is True
    clock.advance(100)  # pending again: the old expiry no longer applies
    job = await timed.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING


# -- purge --------------------------------------------------------------------------------------


async def _one_of_each(queue: JobQueue, clock: MockClock) -> dict[str, str]:
    ids = {}
    ids["complete"] = await queue.enqueue("t")
    await _claim(queue, ids["complete"])
    await queue.complete(ids["complete"])
    clock.advance(1)
    ids["failed"] = await queue.enqueue("t")
    await _claim(queue, ids["failed"])
    await queue.fail(ids["failed"], "boom")
    clock.advance(1)
    ids["cancelled"] = await queue.enqueue("t")
    await queue.cancel(ids["cancelled"])
    clock.advance(1)
    ids["processing"] = await queue.enqueue("t")
    await _claim(queue, ids["processing"])
    ids["pending"] = await queue.enqueue("t")
    return ids


async def test_purge_deletes_every_finished_job_by_default(
    timed: JobQueue, clock: MockClock
) -> None:
    ids = await _one_of_each(timed, clock)
    assert await timed.purge() == 3
    for status in ("complete", "failed", "cancelled"):
        assert await timed.get(ids[status]) is None
    assert await timed.get(ids["pending"]) is not None
    assert await timed.get(ids["processing"]) is not None
    assert await timed.stats() == QueueStats(pending=1, processing=1)
    assert await timed.purge() == 0


async def test_purge_only_the_given_statuses(timed: JobQueue, clock: MockClock) -> None:
    ids = await _one_of_each(timed, clock)
    assert await timed.purge([JobStatus.FAILED, "cancelled"]) == 2
    assert await timed.get(ids["failed"]) is None
    assert await timed.get(ids["cancelled"]) is None
    assert await timed.get(ids["complete"]) is not None
    assert await timed.stats() == QueueStats(pending=1, processing=1, complete=1)


async def test_purge_before(timed: JobQueue, clock: MockClock) -> None:
    old = await timed.enqueue("t")
    await _claim(timed, old)
    await timed.complete(old)
    clock.advance(100)
    cutoff = aware(clock())
    clock.advance(100)
    new = await timed.enqueue("t")
    await _claim(timed, new)
    await timed.complete(new)
    assert await timed.purge(before=cutoff) == 1
    assert await timed.get(old) is None
    assert await timed.get(new) is not None


async def test_purge_by_job_type(timed: JobQueue, clock: MockClock) -> None:
    a = await timed.enqueue("a")
    b = await timed.enqueue("b")
    await timed.cancel(a)
    await timed.cancel(b)
    assert await timed.purge(job_type="a") == 1
    assert await timed.get(a) is None
    assert await timed.get(b) is not None


@pytest.mark.parametrize(
    "statuses",
    [[JobStatus.PENDING], ["processing"], [JobStatus.COMPLETE, JobStatus.PENDING]],
    ids=repr,
)
async def test_purge_of_live_statuses_raises_and_deletes_nothing(
    timed: JobQueue, clock: MockClock, statuses: list[Any]
) -> None:
    ids = await _one_of_each(timed, clock)
    with pytest.raises(InvalidJobError, match="finished jobs only") as info:
        await timed.purge(statuses)
    assert isinstance(info.value, ValueError)
    for job_id in ids.values():
        assert await timed.get(job_id) is not None
    assert await timed.stats() == QueueStats(
        pending=1, processing=1, complete=1, failed=1, cancelled=1
    )


async def test_purge_refuses_an_unknown_status(timed: JobQueue) -> None:
    job_id = await timed.enqueue("t")
    await timed.cancel(job_id)
    with pytest.raises(ValueError, match="status"):
        await timed.purge(["done"])
    assert await timed.get(job_id) is not None


async def test_purged_job_id_is_unknown(timed: JobQueue) -> None:
    a = await timed.enqueue("t")
    await timed.cancel(a)
    await timed.purge()
    assert await timed.retry(a) is False
    assert await timed.cancel(a) is False
    with pytest.raises(UnknownDependencyError):
        await timed.enqueue("t", depends_on=[a])


# -- deleting a dependency that a retried job waits on -------------------------------------------


async def _retried_chain(queue: JobQueue) -> tuple[str, str, str]:
    """``a`` FAILED (ttl 10); ``b`` depends on ``a``, was cancelled with it, then retried by
    hand, so it waits for ``a`` to be retried and complete; ``c`` waits for ``b``."""
    a = await queue.enqueue("t", ttl=10)
    b = await queue.enqueue("t", depends_on=[a])
    await _claim(queue, a)
    await queue.fail(a, "boom")
    assert await queue.retry(b) is True
    c = await queue.enqueue("t", depends_on=[b])
    stats = await queue.stats()
    assert (stats.pending, stats.waiting, stats.failed) == (2, 2, 1)
    return a, b, c


async def _assert_orphans_cancelled(queue: JobQueue, a: str, b: str, c: str) -> None:
    """``a`` is gone, so ``b`` can never run: it is cancelled, and ``c`` with it.

    ``stats`` comes first: expired jobs are deleted by the backend's housekeeping, which a
    read of one job does not run (it only hides them)."""
    assert await queue.stats() == QueueStats(cancelled=2)
    assert await queue.get(a) is None
    job_b, job_c = await queue.get(b), await queue.get(c)
    assert job_b is not None and job_c is not None
    assert job_b.status is JobStatus.CANCELLED
    assert job_b.error == f"dependency {a} deleted"
    assert job_c.status is JobStatus.CANCELLED
    assert job_c.error == f"dependency {b} cancelled"
    assert await queue.claim() is None


async def test_purging_a_dependency_cancels_the_jobs_still_waiting_on_it(
    timed: JobQueue,
) -> None:
    a, b, c = await _retried_chain(timed)
    assert await timed.purge([JobStatus.FAILED]) == 1
    await _assert_orphans_cancelled(timed, a, b, c)


async def test_expiry_of_a_dependency_cancels_the_jobs_still_waiting_on_it(
    timed: JobQueue, clock: MockClock
) -> None:
    a, b, c = await _retried_chain(timed)
    clock.advance(11)
    await _assert_orphans_cancelled(timed, a, b, c)


async def test_a_purge_keeps_the_jobs_it_cancels(timed: JobQueue) -> None:
    """A purge deletes the jobs that had ended when it began; those it cancels on the way stay,
    their error saying why, until the next purge."""
    a, b, c = await _retried_chain(timed)
    assert await timed.purge() == 1
    await _assert_orphans_cancelled(timed, a, b, c)
    assert await timed.purge() == 2
    assert await timed.stats() == EMPTY


async def test_purge_with_many_jobs_cancels_only_the_orphans(timed: JobQueue) -> None:
    """More deleted jobs than one lookup takes; only the one a retried job waits on matters."""
    ended = await timed.enqueue_many([{"job_type": "other"} for _ in range(900)])
    for job_id in ended:
        assert await timed.cancel(job_id) is True
    a, b, c = await _retried_chain(timed)
    assert await timed.purge([JobStatus.CANCELLED, JobStatus.FAILED]) == 901
    await _assert_orphans_cancelled(timed, a, b, c)


async def test_a_dependency_already_gone_counts_as_met_when_a_job_is_retried(
    timed: JobQueue, clock: MockClock
) -> None:
    """Its outcome is unknown (most often it completed and expired): the retry runs the job."""
    a = await timed.enqueue("t", ttl=5)
    b = await timed.enqueue("t", depends_on=[a], max_retries=0)
    await _claim(timed, a)
    await timed.complete(a)
    await _claim(timed, b)
    await timed.fail(b, "its own failure")
    clock.advance(6)
    assert await timed.get(a) is None
    assert await timed.retry(b) is True
    await _claim(timed, b)


async def test_a_purge_keeps_the_jobs_its_own_expiry_step_cancels(
    timed: JobQueue, clock: MockClock
) -> None:
    """The purge is the first call after ``a`` expired: deleting it (not counted) cancels ``b``
    and ``c``, which had not ended when the purge began."""
    a, b, c = await _retried_chain(timed)
    clock.advance(11)
    assert await timed.purge() == 0
    await _assert_orphans_cancelled(timed, a, b, c)


async def test_an_expired_broken_dependency_counts_as_met_when_a_job_is_retried(
    timed: JobQueue, clock: MockClock
) -> None:
    """Expired is gone, even before housekeeping has deleted it: the retry runs the job."""
    a = await timed.enqueue("t", ttl=5)
    b = await timed.enqueue("t", depends_on=[a])
    await _claim(timed, a)
    await timed.fail(a, "boom")  # b is cancelled with it
    clock.advance(6)
    assert await timed.retry(b) is True
    await _claim(timed, b)


async def test_a_workers_lease_check_deletes_expired_jobs(
    timed: JobQueue, clock: MockClock
) -> None:
    """Housekeeping runs on every lease check, so a queue with only workers running cancels the
    orphans of an expired dependency too."""
    a, b, c = await _retried_chain(timed)
    clock.advance(11)
    assert await timed.backend.reclaim_expired(now=timed.clock()) == []
    job_b = await timed.get(b)
    assert job_b is not None and job_b.status is JobStatus.CANCELLED
    await _assert_orphans_cancelled(timed, a, b, c)
