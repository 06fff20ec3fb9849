"""The defaults of ``QueueBackend`` that a small custom backend inherits: polling updates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, aclosing

import anyio
import pytest

from jdobb_async_queue import Broadcaster, JobNotFoundError, JobQueue, JobStatus
from jdobb_async_queue._records import UpdateRecord
from jdobb_async_queue.backends import MemoryBackend, QueueBackend
from jdobb_async_queue.testing import MockClock

pytestmark = pytest.mark.anyio

WAIT = 5.0


class PollingBackend(MemoryBackend):
    """The memory backend with the contract's default, polling ``subscribe``."""

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[AsyncIterator[UpdateRecord]]:
        return QueueBackend.subscribe(self, job_id)


@pytest.fixture
async def queue() -> AsyncIterator[JobQueue]:
    q = JobQueue(backend=PollingBackend())
    yield q
    await q.close()


async def test_the_snapshot_is_yielded_once(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        with anyio.fail_after(WAIT):
            assert (await anext(updates)).status is JobStatus.PENDING
            await queue.claim()
            # Today's polling yielded the PENDING snapshot a second time here.
            assert (await anext(updates)).status is JobStatus.PROCESSING
            await queue.complete(job_id)
            assert (await anext(updates)).status is JobStatus.COMPLETE


async def test_a_job_that_goes_ends_the_subscription(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t", ttl=0)
    await queue.claim()
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        with anyio.fail_after(WAIT):
            assert (await anext(updates)).status is JobStatus.PROCESSING
            await queue.complete(job_id)  # ttl=0: gone before the next poll
            with pytest.raises(JobNotFoundError):
                await anext(updates)


async def test_polling_reads_the_queue_clock() -> None:
    """With a test clock, a job whose ttl ran out on that clock is gone for the poller too
    (it read the wall clock, for which the job was still alive)."""
    clock = MockClock(1_000_000.0)  # long ago: on the wall clock, every ttl has run out
    queue = JobQueue(backend=PollingBackend(), clock=clock)
    try:
        job_id = await queue.enqueue("t", ttl=3600)
        await queue.claim()
        async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
            with anyio.fail_after(WAIT):
                assert (await anext(updates)).status is JobStatus.PROCESSING
                await queue.update(job_id, progress=0.5)
                assert (await anext(updates)).progress == 0.5
                await queue.complete(job_id)
                assert (await anext(updates)).status is JobStatus.COMPLETE
    finally:
        await queue.close()
