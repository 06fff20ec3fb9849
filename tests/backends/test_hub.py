"""The in-process hub: a slow subscriber never blocks a publisher and never misses the end."""

from __future__ import annotations

import anyio
import pytest

from jdobb_async_queue import Broadcaster, JobQueue, JobStatus

pytestmark = pytest.mark.anyio


async def test_a_slow_subscriber_gets_the_final_update_and_blocks_nobody() -> None:
    queue = JobQueue()
    job_id = await queue.enqueue("t", {"payload": [1, 2, 3]})
    await queue.claim(["t"])
    updates = Broadcaster(queue).subscribe(job_id)
    first = await updates.__anext__()  # subscribed; now stop reading
    assert first.status is JobStatus.PROCESSING
    with anyio.fail_after(5):  # publishing never waits for the reader
        for i in range(10_000):
            assert await queue.update(job_id, progress=i / 10_000)
        assert await queue.complete(job_id, {"ok": True})
    received = [u async for u in updates]
    assert received[-1].status is JobStatus.COMPLETE
    assert received[-1].results == {"ok": True}
    assert len(received) < 10_000  # intermediate progress was dropped, the end was not


async def test_changing_a_returned_job_does_not_change_the_stored_one() -> None:
    queue = JobQueue()
    job_id = await queue.enqueue("t", {"items": [1]}, metadata={"m": 1})
    job = await queue.get(job_id)
    assert job is not None
    job.data["items"].append(2)
    job.metadata["m"] = 2
    again = await queue.get(job_id)
    assert again is not None
    assert again.data == {"items": [1]} and again.metadata == {"m": 1}


async def test_a_backend_without_push_gets_polled_updates() -> None:
    from jdobb_async_queue.backends.base import QueueBackend
    from jdobb_async_queue.backends.memory import MemoryBackend

    class Polling(MemoryBackend):
        subscribe = QueueBackend.subscribe  # the base class's default: polling get()

    queue = JobQueue(backend=Polling())
    job_id = await queue.enqueue("t")
    await queue.claim(["t"])
    updates = Broadcaster(queue).subscribe(job_id)
    assert (await updates.__anext__()).status is JobStatus.PROCESSING
    await queue.update(job_id, progress=0.5)
    await queue.complete(job_id, {"ok": True})
    with anyio.fail_after(5):
        rest = [u async for u in updates]
    assert rest[-1].status is JobStatus.COMPLETE
    assert rest[-1].results == {"ok": True}


async def test_a_worker_on_a_backend_without_push_polls() -> None:
    from jdobb_async_queue import JobContext, Worker
    from jdobb_async_queue.backends.base import QueueBackend
    from jdobb_async_queue.backends.memory import MemoryBackend

    class Silent(MemoryBackend):
        listen = QueueBackend.listen  # the base class's default: no notices at all

    queue = JobQueue(backend=Silent())
    worker = Worker(queue, poll_interval=0.05)
    done = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await queue.enqueue("t")  # found by the next poll, not by a wake-up
            await done.wait()
            await worker.stop()
