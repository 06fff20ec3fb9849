"""``enqueue_many``: one atomic call, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest

from jdobb_async_queue import (
    DuplicateJobError,
    InvalidJobError,
    JobPriority,
    JobQueue,
    JobStatus,
    QueueStats,
    SerializationError,
    UnknownDependencyError,
)
from jdobb_async_queue.testing import MockClock

from ._support import EMPTY

pytestmark = pytest.mark.anyio


async def test_returns_ids_in_order_and_stores_every_item(queue: JobQueue) -> None:
    ids = await queue.enqueue_many(
        [
            {"job_type": "a", "data": {"i": 0}},
            {"job_type": "b", "data": {"i": 1}, "priority": JobPriority.HIGH},
            {"job_type": "c", "job_id": "custom", "metadata": {"m": 1}},
        ]
    )
    assert len(ids) == 3
    assert ids[2] == "custom"
    assert len(set(ids)) == 3
    jobs = [await queue.get(i) for i in ids]
    assert [j.job_type if j else None for j in jobs] == ["a", "b", "c"]
    assert jobs[0] is not None
    assert jobs[0].data == {"i": 0}
    assert jobs[1] is not None
    assert jobs[1].priority is JobPriority.HIGH
    assert jobs[2] is not None
    assert jobs[2].metadata == {"m": 1}
    assert await queue.stats() == QueueStats(pending=3)


async def test_empty_batch_returns_empty_list(queue: JobQueue) -> None:
    assert await queue.enqueue_many([]) == []
    assert await queue.stats() == EMPTY


async def test_batch_keeps_fifo_order(queue: JobQueue) -> None:
    ids = await queue.enqueue_many([{"job_type": "t"} for _ in range(5)])
    claimed = []
    while (job := await queue.claim()) is not None:
        claimed.append(job.id)
    assert claimed == ids


async def test_options_apply_per_item(make_queue: Any) -> None:
    clock = MockClock()
    queue: JobQueue = make_queue(clock=clock)
    later, now = await queue.enqueue_many(
        [{"job_type": "t", "delay": 60}, {"job_type": "t", "max_retries": 2}]
    )
    assert await queue.stats() == QueueStats(pending=2, scheduled=1)
    job = await queue.claim()
    assert job is not None
    assert job.id == now
    assert job.max_retries == 2
    assert await queue.claim() is None
    clock.advance(61)
    job = await queue.claim()
    assert job is not None
    assert job.id == later


async def test_depends_on_may_name_earlier_items(queue: JobQueue) -> None:
    ids = await queue.enqueue_many(
        [
            {"job_type": "t", "job_id": "first"},
            {"job_type": "t", "depends_on": ["first"]},
        ]
    )
    assert ids[0] == "first"
    assert await queue.stats() == QueueStats(pending=2, waiting=1)
    job = await queue.claim()
    assert job is not None
    assert job.id == "first"
    assert await queue.claim() is None
    await queue.complete("first")
    job = await queue.claim()
    assert job is not None
    assert job.id == ids[1]


async def test_bad_data_in_one_item_stores_nothing(queue: JobQueue) -> None:
    with pytest.raises(SerializationError):
        await queue.enqueue_many(
            [
                {"job_type": "t", "job_id": "ok"},
                {"job_type": "t", "data": {"when": {1, 2}}},
            ]
        )
    assert await queue.get("ok") is None
    assert await queue.stats() == EMPTY


async def test_unknown_dependency_in_one_item_stores_nothing(queue: JobQueue) -> None:
    with pytest.raises(UnknownDependencyError):
        await queue.enqueue_many(
            [
                {"job_type": "t", "job_id": "ok"},
                {"job_type": "t", "depends_on": ["ghost"]},
            ]
        )
    assert await queue.get("ok") is None
    assert await queue.stats() == EMPTY


async def test_dependency_on_a_later_item_is_unknown(queue: JobQueue) -> None:
    with pytest.raises(UnknownDependencyError):
        await queue.enqueue_many(
            [
                {"job_type": "t", "depends_on": ["second"]},
                {"job_type": "t", "job_id": "second"},
            ]
        )
    assert await queue.stats() == EMPTY


async def test_taken_id_stores_nothing(queue: JobQueue) -> None:
    await queue.enqueue("t", {"v": "original"}, job_id="taken")
    with pytest.raises(DuplicateJobError):
        await queue.enqueue_many(
            [
                {"job_type": "t", "job_id": "new"},
                {"job_type": "t", "job_id": "taken", "data": {"v": "replacement"}},
            ]
        )
    assert await queue.get("new") is None
    job = await queue.get("taken")
    assert job is not None
    assert job.data == {"v": "original"}
    assert await queue.stats() == QueueStats(pending=1)


async def test_id_repeated_in_the_batch_stores_nothing(queue: JobQueue) -> None:
    with pytest.raises(DuplicateJobError):
        await queue.enqueue_many(
            [{"job_type": "t", "job_id": "twice"}, {"job_type": "t", "job_id": "twice"}]
        )
    assert await queue.get("twice") is None
    assert await queue.stats() == EMPTY


@pytest.mark.parametrize(
    "item",
    [{"data": {}}, {"job_type": ""}, {"job_type": "t", "priority": "urgent"}, "t", None],
    ids=repr,
)
async def test_malformed_item_raises_and_stores_nothing(queue: JobQueue, item: Any) -> None:
    with pytest.raises(InvalidJobError):
        await queue.enqueue_many([{"job_type": "t"}, item])
    assert await queue.stats() == EMPTY


async def test_unique_key_repeated_in_the_batch_stores_one_job(queue: JobQueue) -> None:
    ids = await queue.enqueue_many(
        [
            {"job_type": "t", "unique_key": "k", "data": {"n": 1}},
            {"job_type": "t", "unique_key": "k", "data": {"n": 2}},
        ]
    )
    assert ids[0] == ids[1]
    assert await queue.stats() == QueueStats(pending=1)
    job = await queue.get(ids[0])
    assert job is not None
    assert job.data == {"n": 1}


async def test_dependency_on_a_deduplicated_item_names_the_holder(queue: JobQueue) -> None:
    holder = await queue.enqueue("t", unique_key="k", job_id="holder")
    ids = await queue.enqueue_many(
        [
            {"job_type": "t", "unique_key": "k", "job_id": "dropped"},
            {"job_type": "t", "depends_on": ["dropped"], "job_id": "after"},
        ]
    )
    assert ids == [holder, "after"]
    assert await queue.get("dropped") is None
    job = await queue.get("after")
    assert job is not None
    assert job.depends_on == [holder]
    assert job.status is JobStatus.PENDING
    claimed = await queue.claim()
    assert claimed is not None
    assert claimed.id == holder
    assert await queue.claim() is None
    await queue.complete(holder)
    claimed = await queue.claim()
    assert claimed is not None
    assert claimed.id == "after"
