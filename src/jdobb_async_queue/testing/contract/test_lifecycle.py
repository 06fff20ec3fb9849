"""Foundation: enqueue, get, claim, update, complete, fail, cancel, and refused transitions."""

from __future__ import annotations

import math
from datetime import timedelta

import anyio
import pytest

from jdobb_async_queue import (
    DuplicateJobError,
    InvalidJobError,
    Job,
    JobPriority,
    JobQueue,
    JobStatus,
    QueueStats,
)

from ._support import WAIT

pytestmark = pytest.mark.anyio


# -- enqueue and get ----------------------------------------------------------------------------


async def test_enqueue_stores_a_pending_job_with_its_fields(queue: JobQueue) -> None:
    job_id = await queue.enqueue(
        "email",
        {"to": "a@example.com", "n": [1, 2.5, None, True]},
        priority=JobPriority.HIGH,
        ttl=60,
        metadata={"user": "u1", "nested": {"k": "v"}},
    )
    assert isinstance(job_id, str)
    assert job_id

    job = await queue.get(job_id)
    assert isinstance(job, Job)
    assert job.id == job_id
    assert job.job_type == "email"
    assert job.data == {"to": "a@example.com", "n": [1, 2.5, None, True]}
    assert job.status is JobStatus.PENDING
    assert job.priority is JobPriority.HIGH
    assert job.ttl == 60
    assert job.metadata == {"user": "u1", "nested": {"k": "v"}}
    assert job.progress == 0.0
    assert job.message is None
    assert job.results is None
    assert job.error is None
    assert job.attempts == 0
    assert job.completed_at is None
    assert job.started_at is None
    assert job.is_done is False
    assert job.created_at.utcoffset() == timedelta(0)
    assert job.updated_at >= job.created_at


async def test_enqueue_defaults(queue: JobQueue) -> None:
    job_id = await queue.enqueue("plain")
    job = await queue.get(job_id)
    assert job is not None
    assert job.data == {}
    assert job.metadata == {}
    assert job.priority is JobPriority.NORMAL
    assert job.ttl is None
    assert job.execute_at is None
    assert job.depends_on == []
    assert job.unique_key is None


async def test_enqueue_returns_distinct_ids(queue: JobQueue) -> None:
    ids = [await queue.enqueue("t") for _ in range(10)]
    assert len(set(ids)) == 10
    assert (await queue.stats()).pending == 10


async def test_enqueue_with_custom_job_id(queue: JobQueue) -> None:
    assert await queue.enqueue("t", {"a": 1}, job_id="my-id") == "my-id"
    job = await queue.get("my-id")
    assert job is not None
    assert job.data == {"a": 1}


async def test_duplicate_job_id_raises_and_changes_nothing(queue: JobQueue) -> None:
    await queue.enqueue("t", {"v": 1}, job_id="dup", metadata={"m": 1})
    with pytest.raises(DuplicateJobError) as info:
        await queue.enqueue("other", {"v": 2}, job_id="dup", priority=JobPriority.HIGH)
    assert info.value.job_id == "dup"
    job = await queue.get("dup")
    assert job is not None
    assert job.job_type == "t"
    assert job.data == {"v": 1}
    assert job.metadata == {"m": 1}
    assert job.priority is JobPriority.NORMAL
    assert await queue.stats() == QueueStats(pending=1)


async def test_duplicate_id_of_a_finished_job_is_refused(queue: JobQueue) -> None:
    await queue.enqueue("t", job_id="done")
    await queue.claim()
    await queue.complete("done", {"r": 1})
    with pytest.raises(DuplicateJobError):
        await queue.enqueue("t", job_id="done")
    job = await queue.get("done")
    assert job is not None
    assert job.status is JobStatus.COMPLETE
    assert job.results == {"r": 1}
    assert await queue.stats() == QueueStats(complete=1)


async def test_get_unknown_job_returns_none(queue: JobQueue) -> None:
    assert await queue.get("no-such-job") is None


async def test_stored_payload_is_a_copy(queue: JobQueue) -> None:
    data = {"list": [1, 2]}
    metadata = {"tags": ["a"]}
    job_id = await queue.enqueue("t", data, metadata=metadata)
    data["list"].append(3)
    metadata["tags"].append("b")
    job = await queue.get(job_id)
    assert job is not None
    assert job.data == {"list": [1, 2]}
    assert job.metadata == {"tags": ["a"]}


# -- claim --------------------------------------------------------------------------------------


async def test_claim_returns_the_job_processing(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t", {"x": 1})
    job = await queue.claim()
    assert job is not None
    assert job.id == job_id
    assert job.status is JobStatus.PROCESSING
    assert job.data == {"x": 1}
    assert job.attempts == 1
    assert job.started_at is not None
    stored = await queue.get(job_id)
    assert stored is not None
    assert stored.status is JobStatus.PROCESSING
    assert stored.attempts == 1
    assert await queue.stats() == QueueStats(processing=1)


async def test_claim_on_empty_queue_returns_none(queue: JobQueue) -> None:
    assert await queue.claim() is None
    assert await queue.claim(["t"]) is None


async def test_claimed_job_is_not_claimed_again(queue: JobQueue) -> None:
    await queue.enqueue("t")
    assert await queue.claim() is not None
    assert await queue.claim() is None


async def test_claim_filters_by_job_types(queue: JobQueue) -> None:
    a = await queue.enqueue("a")
    b = await queue.enqueue("b")
    assert await queue.claim(["c"]) is None
    got_b = await queue.claim(["b"])
    assert got_b is not None
    assert got_b.id == b
    assert await queue.claim(["b"]) is None
    got_a = await queue.claim(["b", "a"])
    assert got_a is not None
    assert got_a.id == a


async def test_claim_with_no_job_types_claims_nothing(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    assert await queue.claim([]) is None
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING


async def test_claim_order_is_priority_then_fifo(queue: JobQueue) -> None:
    low1 = await queue.enqueue("t", priority=JobPriority.LOW)
    normal1 = await queue.enqueue("t", priority=JobPriority.NORMAL)
    high1 = await queue.enqueue("t", priority=JobPriority.HIGH)
    normal2 = await queue.enqueue("t")
    high2 = await queue.enqueue("t", priority=JobPriority.HIGH)
    low2 = await queue.enqueue("t", priority=JobPriority.LOW)
    order = []
    while (job := await queue.claim()) is not None:
        order.append(job.id)
    assert order == [high1, high2, normal1, normal2, low1, low2]


async def test_claim_order_holds_across_job_types(queue: JobQueue) -> None:
    low = await queue.enqueue("a", priority=JobPriority.LOW)
    high = await queue.enqueue("b", priority=JobPriority.HIGH)
    normal = await queue.enqueue("a")
    order = []
    while (job := await queue.claim(["a", "b"])) is not None:
        order.append(job.id)
    assert order == [high, normal, low]


async def test_priority_accepts_its_string_value(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t", priority="high")  # type: ignore[arg-type]
    job = await queue.get(job_id)
    assert job is not None
    assert job.priority is JobPriority.HIGH


async def test_concurrent_claims_never_hand_out_a_job_twice(queue: JobQueue) -> None:
    ids = {await queue.enqueue("t", {"i": i}) for i in range(20)}
    results: list[Job | None] = []

    async def claim() -> None:
        results.append(await queue.claim())

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(claim)

    claimed = [job.id for job in results if job is not None]
    assert len(results) == 50
    assert len(claimed) == 20
    assert set(claimed) == ids
    assert await queue.stats() == QueueStats(processing=20)


# -- update -------------------------------------------------------------------------------------


async def test_update_sets_progress_and_message(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    assert await queue.update(job_id, progress=0.25, message="quarter") is True
    job = await queue.get(job_id)
    assert job is not None
    assert job.progress == 0.25
    assert job.message == "quarter"
    # each argument left out is kept
    assert await queue.update(job_id, progress=0.5) is True
    assert await queue.update(job_id, message="half") is True
    job = await queue.get(job_id)
    assert job is not None
    assert job.progress == 0.5
    assert job.message == "half"
    assert job.status is JobStatus.PROCESSING


@pytest.mark.parametrize("progress", [-0.01, 1.01, 2, math.nan, math.inf])
async def test_update_progress_outside_0_1_raises(queue: JobQueue, progress: float) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    await queue.update(job_id, progress=0.3)
    with pytest.raises(InvalidJobError):
        await queue.update(job_id, progress=progress, message="nope")
    with pytest.raises(ValueError, match="progress"):
        await queue.update(job_id, progress=progress)
    job = await queue.get(job_id)
    assert job is not None
    assert job.progress == 0.3
    assert job.message is None


async def test_update_accepts_bounds(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    assert await queue.update(job_id, progress=0) is True
    assert await queue.update(job_id, progress=1) is True
    job = await queue.get(job_id)
    assert job is not None
    assert job.progress == 1.0


async def test_update_unknown_or_not_processing_returns_false(queue: JobQueue) -> None:
    assert await queue.update("no-such-job", progress=0.5) is False
    pending = await queue.enqueue("t")
    assert await queue.update(pending, progress=0.5, message="x") is False
    job = await queue.get(pending)
    assert job is not None
    assert job.progress == 0.0
    assert job.message is None

    await queue.claim()
    await queue.complete(pending)
    assert await queue.update(pending, progress=0.5) is False
    job = await queue.get(pending)
    assert job is not None
    assert job.progress == 1.0


# -- complete / fail / cancel -------------------------------------------------------------------


async def test_complete_stores_results(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    assert await queue.complete(job_id, {"answer": 42, "items": ["a"]}) is True
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETE
    assert job.results == {"answer": 42, "items": ["a"]}
    assert job.progress == 1.0
    assert job.error is None
    assert job.completed_at is not None
    assert job.is_done is True
    assert await queue.stats() == QueueStats(complete=1)


async def test_complete_without_results(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    assert await queue.complete(job_id) is True
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETE
    assert job.results is None


async def test_fail_marks_the_job_failed_with_its_error(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    assert await queue.fail(job_id, "disk full") is True
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error == "disk full"
    assert job.completed_at is not None
    assert job.is_done is True
    assert await queue.stats() == QueueStats(failed=1)


async def test_cancel_pending_job(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    assert await queue.cancel(job_id) is True
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED
    assert job.is_done is True
    assert await queue.claim() is None
    assert await queue.stats() == QueueStats(cancelled=1)


async def test_cancel_processing_job_records_the_reason(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    assert await queue.cancel(job_id, reason="user asked") is True
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED
    assert job.error == "user asked"
    # the cancelled claim can no longer report
    assert await queue.complete(job_id, {"late": True}) is False
    assert await queue.update(job_id, progress=0.5) is False
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED
    assert job.results is None


async def test_cancel_unknown_or_finished_returns_false(queue: JobQueue) -> None:
    assert await queue.cancel("no-such-job") is False
    done = await queue.enqueue("t")
    await queue.claim()
    await queue.complete(done, {"r": 1})
    assert await queue.cancel(done) is False
    job = await queue.get(done)
    assert job is not None
    assert job.status is JobStatus.COMPLETE
    assert job.results == {"r": 1}
    assert job.error is None

    cancelled = await queue.enqueue("t")
    assert await queue.cancel(cancelled, "first") is True
    assert await queue.cancel(cancelled, "second") is False
    job = await queue.get(cancelled)
    assert job is not None
    assert job.error == "first"


# -- refused transitions ------------------------------------------------------------------------


async def test_complete_pending_job_is_refused(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    assert await queue.complete(job_id, {"r": 1}) is False
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert job.results is None
    claimed = await queue.claim()  # still claimable
    assert claimed is not None
    assert claimed.id == job_id


async def test_fail_pending_job_is_refused(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    assert await queue.fail(job_id, "boom") is False
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert job.error is None


async def test_complete_twice_is_refused_the_second_time(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    assert await queue.complete(job_id, {"n": 1}) is True
    assert await queue.complete(job_id, {"n": 2}) is False
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETE
    assert job.results == {"n": 1}


async def test_fail_after_complete_is_refused(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    await queue.complete(job_id)
    assert await queue.fail(job_id, "late") is False
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETE
    assert job.error is None


async def test_complete_after_fail_is_refused(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    await queue.fail(job_id, "boom")
    assert await queue.complete(job_id, {"r": 1}) is False
    assert await queue.fail(job_id, "again") is False
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error == "boom"
    assert job.results is None


async def test_reports_on_unknown_jobs_return_false(queue: JobQueue) -> None:
    assert await queue.complete("no-such-job") is False
    assert await queue.fail("no-such-job", "x") is False
    assert await queue.stats() == QueueStats()


async def test_cancelled_pending_job_is_never_claimed(queue: JobQueue) -> None:
    first = await queue.enqueue("t")
    second = await queue.enqueue("t")
    await queue.cancel(first)
    job = await queue.claim()
    assert job is not None
    assert job.id == second
    assert await queue.claim() is None
