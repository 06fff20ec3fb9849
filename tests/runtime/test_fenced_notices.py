"""A cancellation notice stops only the attempt it names (issue 12, fenced notices).

The notice arrives through the worker's own listener, as a store would push it: a late notice
about an earlier attempt (fence 1) must leave the attempt now running (fence 2) alone, and one
naming the running attempt must stop it.
"""

from __future__ import annotations

import anyio
import pytest

from jdobb_async_queue import JobContext, JobQueue, JobStatus, Worker
from jdobb_async_queue.backends import MemoryBackend, Notice
from jdobb_async_queue.testing import MockClock

pytestmark = pytest.mark.anyio

WAIT = 5.0


class Announcer(MemoryBackend):
    """The memory store, plus a way to push a notice to its listening workers."""

    def announce(self, notice: Notice) -> None:
        self._hub.notify(notice)


async def _second_attempt(queue: JobQueue, clock: MockClock) -> str:
    """A job whose first attempt (fence 1) was lost: it waits PENDING for its second."""
    job_id = await queue.enqueue("t")
    first = await queue.claim(lease=10)
    assert first is not None and first.id == job_id
    clock.advance(11)
    assert await queue.backend.reclaim_expired(now=clock()) == [job_id]
    return job_id


@pytest.mark.parametrize(("named_fence", "ends"), [(1, JobStatus.COMPLETE), (2, None)])
async def test_a_cancel_notice_stops_only_the_attempt_it_names(
    named_fence: int, ends: JobStatus | None
) -> None:
    clock = MockClock()
    backend = Announcer()
    queue = JobQueue(backend=backend, clock=clock)
    job_id = await _second_attempt(queue, clock)
    worker = Worker(queue, poll_interval=0.05, lease=60)
    running, release, stopped = anyio.Event(), anyio.Event(), anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> dict[str, int]:
        running.set()
        try:
            await release.wait()
        except anyio.get_cancelled_exc_class():
            stopped.set()
            raise
        return {"attempt": ctx.job.attempts}

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(WAIT):
            await running.wait()
        backend.announce(Notice("cancel", job_id, named_fence))
        if ends is None:  # it names the running attempt: the handler is stopped
            with anyio.fail_after(WAIT):
                await stopped.wait()
        else:  # a late notice about attempt 1: attempt 2 runs on and completes
            for _ in range(20):
                await anyio.lowlevel.checkpoint()  # give a wrong stop every chance to happen
            assert not stopped.is_set()
            release.set()
            with anyio.fail_after(WAIT):
                while (await queue.get(job_id)).status is not ends:  # type: ignore[union-attr]
                    await anyio.sleep(0.01)
        with anyio.fail_after(WAIT):
            await worker.stop()
    job = await queue.get(job_id)
    assert job is not None
    if ends is JobStatus.COMPLETE:
        assert job.results == {"attempt": 2}
    else:
        assert stopped.is_set()
    await queue.close()
