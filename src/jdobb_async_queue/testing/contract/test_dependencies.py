"""Dependencies: ``depends_on`` waits for COMPLETE; a failed or cancelled dependency cancels."""

from __future__ import annotations

import pytest

from jdobb_async_queue import Job, JobQueue, JobStatus, QueueStats, UnknownDependencyError

from ._support import EMPTY

pytestmark = pytest.mark.anyio


async def _get(queue: JobQueue, job_id: str) -> Job:
    job = await queue.get(job_id)
    assert job is not None
    return job


async def _run(queue: JobQueue, job_id: str) -> None:
    """Claim ``job_id`` (it must be the next claimable job)."""
    job = await queue.claim()
    assert job is not None
    assert job.id == job_id


async def test_dependent_waits_until_its_dependency_completes(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t", depends_on=[a])
    assert (await _get(queue, b)).depends_on == [a]
    assert await queue.stats() == QueueStats(pending=2, waiting=1)
    await _run(queue, a)
    assert await queue.claim() is None  # b still waits while a runs
    await queue.complete(a)
    assert await queue.stats() == QueueStats(pending=1, complete=1)
    await _run(queue, b)


async def test_dependent_waits_for_every_dependency(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t")
    c = await queue.enqueue("t", depends_on=[a, b])
    await _run(queue, a)
    await _run(queue, b)
    await queue.complete(a)
    assert await queue.claim() is None
    assert (await _get(queue, c)).status is JobStatus.PENDING
    await queue.complete(b)
    await _run(queue, c)


async def test_dependent_waits_for_a_retrying_dependency(queue: JobQueue) -> None:
    a = await queue.enqueue("t", max_retries=1, retry_delay=0)
    b = await queue.enqueue("t", depends_on=[a])
    await _run(queue, a)
    await queue.fail(a, "flaky")  # retried: not failed for good
    job = await _get(queue, b)
    assert job.status is JobStatus.PENDING
    await _run(queue, a)
    await queue.complete(a)
    await _run(queue, b)


async def test_failed_dependency_cancels_the_dependent(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t", depends_on=[a])
    await _run(queue, a)
    await queue.fail(a, "boom")
    job = await _get(queue, b)
    assert job.status is JobStatus.CANCELLED
    assert job.error == f"dependency {a} failed"
    assert await queue.claim() is None
    assert await queue.stats() == QueueStats(failed=1, cancelled=1)


async def test_cancelled_dependency_cancels_the_dependent(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t", depends_on=[a])
    assert await queue.cancel(a) is True
    job = await _get(queue, b)
    assert job.status is JobStatus.CANCELLED
    assert job.error == f"dependency {a} cancelled"
    assert await queue.claim() is None


async def test_cancellation_spreads_transitively(queue: JobQueue) -> None:
    a = await queue.enqueue("t", job_id="dep-a")
    b = await queue.enqueue("t", depends_on=[a], job_id="dep-b")
    c = await queue.enqueue("t", depends_on=[b], job_id="dep-c")
    other = await queue.enqueue("t", job_id="other")
    await _run(queue, a)
    await queue.fail(a, "boom")
    job_b = await _get(queue, b)
    job_c = await _get(queue, c)
    assert job_b.status is JobStatus.CANCELLED
    assert job_c.status is JobStatus.CANCELLED
    assert job_b.error == "dependency dep-a failed"
    assert job_c.error == "dependency dep-b cancelled"
    assert (await _get(queue, other)).status is JobStatus.PENDING
    assert await queue.stats() == QueueStats(pending=1, failed=1, cancelled=2)


async def test_one_failed_dependency_of_several_cancels(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t")
    c = await queue.enqueue("t", depends_on=[a, b])
    await _run(queue, a)
    await queue.complete(a)
    await _run(queue, b)
    await queue.fail(b, "boom", retry=False)
    job = await _get(queue, c)
    assert job.status is JobStatus.CANCELLED
    assert job.error == f"dependency {b} failed"


async def test_unknown_dependency_raises_and_stores_nothing(queue: JobQueue) -> None:
    with pytest.raises(UnknownDependencyError) as info:
        await queue.enqueue("t", depends_on=["ghost"], job_id="j")
    assert isinstance(info.value, LookupError)
    assert info.value.job_ids == ["ghost"]
    assert "ghost" in str(info.value)
    assert await queue.get("j") is None
    assert await queue.stats() == EMPTY


async def test_one_unknown_among_known_dependencies_stores_nothing(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    with pytest.raises(UnknownDependencyError):
        await queue.enqueue("t", depends_on=[a, "ghost"], job_id="j")
    assert await queue.get("j") is None
    assert await queue.stats() == QueueStats(pending=1)


async def test_complete_dependency_is_satisfied_at_once(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    await _run(queue, a)
    await queue.complete(a)
    b = await queue.enqueue("t", depends_on=[a])
    assert await queue.stats() == QueueStats(pending=1, complete=1)
    await _run(queue, b)


async def test_already_failed_dependency_cancels_the_new_job_at_once(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    await _run(queue, a)
    await queue.fail(a, "boom")
    b = await queue.enqueue("t", depends_on=[a])
    job = await _get(queue, b)
    assert job.status is JobStatus.CANCELLED
    assert job.error == f"dependency {a} failed"
    assert await queue.claim() is None


async def test_already_cancelled_dependency_cancels_the_new_job_at_once(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    await queue.cancel(a)
    b = await queue.enqueue("t", depends_on=[a])
    job = await _get(queue, b)
    assert job.status is JobStatus.CANCELLED
    assert job.error == f"dependency {a} cancelled"


async def test_waiting_job_can_be_cancelled_directly(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t", depends_on=[a])
    assert await queue.cancel(b) is True
    await _run(queue, a)
    await queue.complete(a)
    assert await queue.claim() is None
    assert (await _get(queue, b)).status is JobStatus.CANCELLED
    assert await queue.stats() == QueueStats(complete=1, cancelled=1)


async def test_dependency_of_another_type_is_honoured(queue: JobQueue) -> None:
    a = await queue.enqueue("fetch")
    b = await queue.enqueue("parse", depends_on=[a])
    assert await queue.claim(["parse"]) is None
    fetched = await queue.claim(["fetch"])
    assert fetched is not None
    await queue.complete(a)
    parsed = await queue.claim(["parse"])
    assert parsed is not None
    assert parsed.id == b


async def test_retry_does_not_revive_cancelled_dependents(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t", depends_on=[a])
    await _run(queue, a)
    await queue.fail(a, "boom")
    assert await queue.retry(a) is True
    assert (await _get(queue, b)).status is JobStatus.CANCELLED
    await _run(queue, a)
    await queue.complete(a)
    assert await queue.claim() is None
    assert (await _get(queue, b)).status is JobStatus.CANCELLED


async def test_retried_dependent_waits_for_its_retried_dependency(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t", depends_on=[a])
    await _run(queue, a)
    await queue.fail(a, "boom")
    assert await queue.retry(b) is True  # its dependency is still FAILED: b waits
    job = await _get(queue, b)
    assert job.status is JobStatus.PENDING
    assert job.error is None
    assert await queue.claim() is None
    assert await queue.stats() == QueueStats(pending=1, failed=1, waiting=1)
    assert await queue.retry(a) is True
    await _run(queue, a)
    assert await queue.claim() is None
    await queue.complete(a)
    await _run(queue, b)


async def test_retried_dependent_of_a_complete_dependency_is_claimable(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t", depends_on=[a])
    await queue.cancel(b)
    await _run(queue, a)
    await queue.complete(a)
    assert await queue.retry(b) is True
    await _run(queue, b)


async def test_retried_dependent_still_waits_for_every_dependency(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t")
    c = await queue.enqueue("t", depends_on=[a, b])
    await queue.cancel(c)
    assert await queue.retry(c) is True  # waits on a and b again (once each)
    await _run(queue, a)
    await queue.complete(a)
    assert await queue.stats() == QueueStats(pending=2, complete=1, waiting=1)
    await _run(queue, b)
    assert await queue.claim() is None  # c still waits for b
    await queue.complete(b)
    await _run(queue, c)


async def test_a_job_that_ended_while_waiting_leaves_no_edge_behind(queue: JobQueue) -> None:
    """A dependent cancelled while it waits, then purged, must not count its old dependency
    against a new job that reuses its id."""
    a = await queue.enqueue("t")
    await queue.enqueue("t", job_id="reused", depends_on=[a])
    assert await queue.cancel("reused") is True
    assert await queue.purge([JobStatus.CANCELLED]) == 1
    b = await queue.enqueue("t")
    await queue.enqueue("t", job_id="reused", depends_on=[b])
    await _run(queue, a)
    await queue.complete(a)  # completes nothing "reused" now waits on
    await _run(queue, b)
    assert await queue.claim() is None  # "reused" still waits for b
    assert (await _get(queue, "reused")).status is JobStatus.PENDING
    await queue.complete(b)
    await _run(queue, "reused")
