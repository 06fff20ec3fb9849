"""Broadcaster: the current state first, then every change, until the job ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import anyio
import pytest

from jdobb_async_queue import (
    Broadcaster,
    InvalidJobError,
    JobNotFoundError,
    JobQueue,
    JobStatus,
    JobUpdate,
    QueueClosedError,
    SerializationError,
)

from ._support import WAIT

pytestmark = pytest.mark.anyio


async def _next(updates: AsyncIterator[JobUpdate]) -> JobUpdate:
    with anyio.fail_after(WAIT):
        return await anext(updates)


async def _ended(updates: AsyncIterator[JobUpdate]) -> None:
    with anyio.fail_after(WAIT), pytest.raises(StopAsyncIteration):
        await anext(updates)


async def _next_with(updates: AsyncIterator[JobUpdate], status: JobStatus) -> JobUpdate:
    """Skip intermediate updates until one with ``status`` (a slow reader may see fewer)."""
    while (update := await _next(updates)).status is not status:
        assert not update.status.is_terminal, update
    return update


async def test_first_update_is_the_current_state(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    await queue.update(job_id, progress=0.3, message="started")
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        first = await _next(updates)
        assert first.job_id == job_id
        assert first.status is JobStatus.PROCESSING
        assert first.progress == 0.3
        assert first.message == "started"
        assert first.data is None
        await queue.cancel(job_id)


async def test_progress_updates_then_completion_ends_the_stream(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        first = await _next(updates)
        assert first.status is JobStatus.PROCESSING

        await queue.update(job_id, progress=0.5, message="half")
        update = await _next(updates)
        assert update.status is JobStatus.PROCESSING
        assert update.progress == 0.5
        assert update.message == "half"

        await queue.update(job_id, progress=0.9)
        update = await _next(updates)
        assert update.progress == 0.9
        assert update.message == "half"

        await queue.complete(job_id, {"answer": 42})
        final = await _next(updates)
        assert final.status is JobStatus.COMPLETE
        assert final.results == {"answer": 42}
        assert final.progress == 1.0
        await _ended(updates)


async def test_subscriber_sees_the_claim(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        assert (await _next(updates)).status is JobStatus.PENDING
        await queue.claim()
        assert (await _next(updates)).status is JobStatus.PROCESSING
        await queue.cancel(job_id)
        assert (await _next_with(updates, JobStatus.CANCELLED)).status is JobStatus.CANCELLED
        await _ended(updates)


async def test_failure_ends_the_stream_with_the_error(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        await _next(updates)
        await queue.fail(job_id, "kaput")
        final = await _next_with(updates, JobStatus.FAILED)
        assert final.error == "kaput"
        await _ended(updates)


async def test_retry_is_not_the_end(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t", max_retries=1, retry_delay=0)
    await queue.claim()
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        await _next(updates)
        await queue.fail(job_id, "flaky")
        assert (await _next(updates)).status is JobStatus.PENDING
        await queue.claim()
        await queue.complete(job_id, {"ok": 1})
        final = await _next_with(updates, JobStatus.COMPLETE)
        assert final.results == {"ok": 1}
        await _ended(updates)


async def test_cancellation_ends_the_stream(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        await _next(updates)
        await queue.cancel(job_id, "stop")
        final = await _next(updates)
        assert final.status is JobStatus.CANCELLED
        assert final.error == "stop"
        await _ended(updates)


async def test_dependent_cancelled_by_its_dependency_ends_its_stream(queue: JobQueue) -> None:
    a = await queue.enqueue("t")
    b = await queue.enqueue("t", depends_on=[a])
    async with aclosing(Broadcaster(queue).subscribe(b)) as updates:
        assert (await _next(updates)).status is JobStatus.PENDING
        await queue.cancel(a)
        final = await _next(updates)
        assert final.status is JobStatus.CANCELLED
        assert final.error is not None
        assert a in final.error
        await _ended(updates)


@pytest.mark.parametrize("end", ["complete", "fail", "cancel"])
async def test_finished_job_yields_its_final_state_only(queue: JobQueue, end: str) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    if end == "complete":
        await queue.complete(job_id, {"r": 1})
    elif end == "fail":
        await queue.fail(job_id, "boom")
    else:
        await queue.cancel(job_id)
    seen = []
    with anyio.fail_after(WAIT):
        async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
            async for update in updates:
                seen.append(update)
    assert len(seen) == 1
    assert seen[0].status.is_terminal
    job = await queue.get(job_id)
    assert job is not None
    assert seen[0].status is job.status
    assert seen[0].results == job.results
    assert seen[0].error == job.error


async def test_unknown_job_raises(queue: JobQueue) -> None:
    async def follow() -> None:
        async with aclosing(Broadcaster(queue).subscribe("no-such-job")) as updates:
            async for _ in updates:
                pass

    with anyio.fail_after(WAIT), pytest.raises(JobNotFoundError) as info:
        await follow()
    assert info.value.job_id == "no-such-job"


async def test_two_subscribers_both_see_the_end(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    broadcaster = Broadcaster(queue)
    async with (
        aclosing(broadcaster.subscribe(job_id)) as first,
        aclosing(Broadcaster(queue).subscribe(job_id)) as second,
    ):
        await _next(first)
        await _next(second)
        await queue.update(job_id, progress=0.5)
        await queue.complete(job_id, {"done": True})
        for updates in (first, second):
            final = await _next_with(updates, JobStatus.COMPLETE)
            assert final.results == {"done": True}
            await _ended(updates)


async def test_concurrent_subscriber_task_collects_until_the_end(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    statuses: list[JobStatus] = []
    subscribed = anyio.Event()

    async def follow() -> None:
        async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
            async for update in updates:
                statuses.append(update.status)
                subscribed.set()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await subscribed.wait()
            await queue.update(job_id, progress=0.5)
            await queue.complete(job_id)
    assert statuses[0] is JobStatus.PROCESSING
    assert statuses[-1] is JobStatus.COMPLETE


# -- send ---------------------------------------------------------------------------------------


async def test_send_reaches_subscribers_with_its_data(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    broadcaster = Broadcaster(queue)
    async with aclosing(broadcaster.subscribe(job_id)) as updates:
        await _next(updates)
        assert await broadcaster.send(job_id, message="hello", data={"step": 3}) is True
        update = await _next(updates)
        assert update.job_id == job_id
        assert update.data == {"step": 3}
        assert update.message == "hello"
        assert update.status is JobStatus.PROCESSING
        await queue.complete(job_id)
        assert (await _next_with(updates, JobStatus.COMPLETE)).data is None
        await _ended(updates)


async def test_send_stores_nothing(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    await queue.update(job_id, progress=0.1, message="real")
    assert await Broadcaster(queue).send(job_id, progress=0.8, message="custom") is True
    job = await queue.get(job_id)
    assert job is not None
    assert job.progress == 0.1
    assert job.message == "real"


async def test_send_to_a_pending_job(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    assert await Broadcaster(queue).send(job_id, data={"queued": True}) is True


async def test_send_to_unknown_or_finished_job_returns_false(queue: JobQueue) -> None:
    broadcaster = Broadcaster(queue)
    assert await broadcaster.send("no-such-job", message="x") is False
    job_id = await queue.enqueue("t")
    await queue.cancel(job_id)
    assert await broadcaster.send(job_id, message="x", data={"a": 1}) is False


async def test_send_validates_its_arguments(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    broadcaster = Broadcaster(queue)
    with pytest.raises(InvalidJobError):
        await broadcaster.send(job_id, progress=1.5)
    with pytest.raises(SerializationError):
        await broadcaster.send(job_id, data={"s": {1, 2}})


async def test_closing_the_queue_ends_a_subscription_with_queue_closed_error(
    queue: JobQueue,
) -> None:
    """A subscriber waiting on a job that will now never change learns at once that the queue
    closed (every backend alike): it neither hangs nor ends as if the job had finished."""
    job_id = await queue.enqueue("t")
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        assert (await _next(updates)).status is JobStatus.PENDING
        async with anyio.create_task_group() as tg:
            tg.start_soon(queue.close)
            with pytest.raises(QueueClosedError):
                await _next(updates)
