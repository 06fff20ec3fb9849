"""Unique jobs: while a PENDING/PROCESSING job holds a key, enqueue returns the holder."""

from __future__ import annotations

import anyio
import pytest

from jdobb_async_queue import JobQueue, JobStatus, QueueStats

from ._support import WAIT

pytestmark = pytest.mark.anyio


async def test_pending_holder_is_returned_and_nothing_stored(queue: JobQueue) -> None:
    first = await queue.enqueue("t", {"v": 1}, unique_key="k")
    second = await queue.enqueue("t", {"v": 2}, unique_key="k", job_id="would-be")
    assert second == first
    assert await queue.get("would-be") is None
    assert await queue.stats() == QueueStats(pending=1)
    job = await queue.get(first)
    assert job is not None
    assert job.data == {"v": 1}
    assert job.unique_key == "k"


async def test_processing_holder_is_returned(queue: JobQueue) -> None:
    first = await queue.enqueue("t", unique_key="k")
    await queue.claim()
    assert await queue.enqueue("t", unique_key="k") == first
    assert await queue.stats() == QueueStats(processing=1)


@pytest.mark.parametrize("end", ["complete", "fail", "cancel"])
async def test_key_is_free_once_the_holder_ends(queue: JobQueue, end: str) -> None:
    first = await queue.enqueue("t", unique_key="k")
    await queue.claim()
    if end == "complete":
        await queue.complete(first)
    elif end == "fail":
        await queue.fail(first, "boom")
    else:
        await queue.cancel(first)
    second = await queue.enqueue("t", unique_key="k")
    assert second != first
    job = await queue.get(second)
    assert job is not None
    assert job.status is JobStatus.PENDING
    # and the new job holds the key now
    assert await queue.enqueue("t", unique_key="k") == second


async def test_key_held_by_a_retrying_job_stays_held(queue: JobQueue) -> None:
    first = await queue.enqueue("t", unique_key="k", max_retries=1, retry_delay=60)
    await queue.claim()
    await queue.fail(first, "flaky")  # back to PENDING: still the holder
    assert await queue.enqueue("t", unique_key="k") == first


async def test_different_keys_are_independent(queue: JobQueue) -> None:
    a = await queue.enqueue("t", unique_key="a")
    b = await queue.enqueue("t", unique_key="b")
    c = await queue.enqueue("t")
    d = await queue.enqueue("t")
    assert len({a, b, c, d}) == 4
    assert await queue.stats() == QueueStats(pending=4)


async def test_key_is_shared_across_job_types(queue: JobQueue) -> None:
    first = await queue.enqueue("a", unique_key="k")
    assert await queue.enqueue("b", unique_key="k") == first
    assert await queue.stats() == QueueStats(pending=1)


async def test_concurrent_enqueues_with_one_key_store_one_job(queue: JobQueue) -> None:
    ids: list[str] = []

    async def enqueue(i: int) -> None:
        ids.append(await queue.enqueue("t", {"i": i}, unique_key="once"))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(enqueue, i)

    assert len(ids) == 20
    assert len(set(ids)) == 1
    assert await queue.stats() == QueueStats(pending=1)
    job = await queue.get(ids[0])
    assert job is not None
    assert job.unique_key == "once"


async def test_retry_refused_while_another_job_holds_the_key(queue: JobQueue) -> None:
    first = await queue.enqueue("t", unique_key="k")
    await queue.claim()
    await queue.fail(first, "boom")
    second = await queue.enqueue("t", unique_key="k")
    assert second != first
    assert await queue.retry(first) is False
    job = await queue.get(first)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error == "boom"


async def test_retry_takes_the_key_back_when_free(queue: JobQueue) -> None:
    first = await queue.enqueue("t", unique_key="k")
    await queue.cancel(first)
    assert await queue.retry(first) is True
    assert await queue.enqueue("t", unique_key="k") == first
    assert await queue.stats() == QueueStats(pending=1)
