"""``Worker.on_outcome``: one call per attempt that ends, on every backend, asyncio and trio."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from jdobb_async_queue import (
    ConfigurationError,
    JobContext,
    JobOutcome,
    JobQueue,
    JobStatus,
    Worker,
)
from jdobb_async_queue.backends import Outcome

from ..conftest import QueueFactory

pytestmark = pytest.mark.anyio

WAIT = 10


def _worker(queue: JobQueue, **options: Any) -> tuple[Worker, list[JobOutcome]]:
    worker = Worker(queue, poll_interval=0.05, **options)
    seen: list[JobOutcome] = []
    worker.on_outcome(seen.append)
    return worker, seen


def _blocking(worker: Worker) -> anyio.Event:
    """Register a handler for "t" that never returns; the event is set once it runs."""
    started = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        started.set()
        await anyio.sleep_forever()

    return started


async def test_complete_retrying_failed_and_timed_out(make_queue: QueueFactory) -> None:
    queue = make_queue()
    worker, seen = _worker(queue)

    @worker.handler("ok")
    async def ok(ctx: JobContext) -> dict[str, Any]:
        return {"n": 1}

    @worker.handler("flaky")
    async def flaky(ctx: JobContext) -> None:
        raise ValueError("boom")

    @worker.handler("slow")
    async def slow(ctx: JobContext) -> None:
        await anyio.sleep_forever()

    done = await queue.enqueue("ok")
    failing = await queue.enqueue("flaky", max_retries=1, retry_delay=0)
    late = await queue.enqueue("slow", timeout=0.05)
    with anyio.fail_after(WAIT):
        await worker.run(burst=True)

    by_job: dict[str, list[JobOutcome]] = {}
    for outcome in seen:
        by_job.setdefault(outcome.job.id, []).append(outcome)
    assert [o.status for o in by_job[done]] == ["complete"]
    assert by_job[done][0].results == {"n": 1} and by_job[done][0].error is None
    assert by_job[done][0].job.job_type == "ok"
    assert [o.status for o in by_job[failing]] == ["retrying", "failed"]
    assert [o.job.attempts for o in by_job[failing]] == [1, 2]
    assert {o.error for o in by_job[failing]} == {"ValueError: boom"}
    assert [o.status for o in by_job[late]] == ["failed"]
    assert by_job[late][0].error == "timed out after 0.05s"
    assert by_job[late][0].duration >= 0.05
    assert all(o.job.status is JobStatus.PROCESSING for o in seen)  # as each attempt claimed it
    assert len(seen) == 4


async def test_a_job_cancelled_while_it_runs_is_lost(make_queue: QueueFactory) -> None:
    queue = make_queue()
    worker, seen = _worker(queue)
    started, told = _blocking(worker), anyio.Event()
    worker.on_outcome(lambda outcome: told.set())

    job_id = await queue.enqueue("t")
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            assert await queue.cancel(job_id, "no longer needed") is True
            await told.wait()
            await worker.stop()
    assert [(o.job.id, o.status, o.error) for o in seen] == [(job_id, "lost", None)]


async def test_a_hard_stop_releases(make_queue: QueueFactory) -> None:
    queue = make_queue()
    worker, seen = _worker(queue, drain_timeout=0)
    started = _blocking(worker)

    job_id = await queue.enqueue("t")
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            await worker.stop()
    assert [(o.job.id, o.status) for o in seen] == [(job_id, "released")]
    job = await queue.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING


async def test_process_one_tells_the_callbacks_too(make_queue: QueueFactory) -> None:
    queue = make_queue()
    worker, seen = _worker(queue)

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        return None

    job_id = await queue.enqueue("t")
    assert await worker.process_one() is True
    assert [(o.job.id, o.status, o.results) for o in seen] == [(job_id, "complete", None)]


async def test_a_callback_that_raises_is_logged_and_changes_nothing(
    make_queue: QueueFactory, caplog: pytest.LogCaptureFixture
) -> None:
    queue = make_queue()
    worker = Worker(queue, poll_interval=0.05)
    after: list[str] = []

    @worker.on_outcome
    def broken(outcome: JobOutcome) -> None:
        raise RuntimeError("metrics are down")

    worker.on_outcome(lambda outcome: after.append(outcome.status))

    @worker.handler("t")
    async def handle(ctx: JobContext) -> dict[str, Any]:
        return {"ok": True}

    job_id = await queue.enqueue("t")
    with caplog.at_level(logging.ERROR, logger="jdobb_async_queue.worker"):
        with anyio.fail_after(WAIT):
            await worker.run(burst=True)
    job = await queue.get(job_id)
    assert job is not None and job.status is JobStatus.COMPLETE and job.results == {"ok": True}
    assert after == ["complete"]  # the next callback still ran
    assert f"an on_outcome callback failed for job {job_id}" in caplog.text
    assert "metrics are down" in caplog.text


async def test_on_outcome_takes_plain_functions_only(make_queue: QueueFactory) -> None:
    worker = Worker(make_queue())

    async def coroutine_function(outcome: JobOutcome) -> None:
        return None

    class AsyncCallable:
        async def __call__(self, outcome: JobOutcome) -> None:
            return None

    for bad in (coroutine_function, AsyncCallable(), "not callable", None):
        with pytest.raises(ConfigurationError, match="on_outcome"):
            worker.on_outcome(bad)  # type: ignore[type-var]


# -- an outcome the store refuses is logged -----------------------------------------------------

REFUSED = "outcome of job {} was not stored: the job is no longer this attempt's"


async def test_process_one_logs_an_outcome_the_store_refuses(
    make_queue: QueueFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """``process_one`` hears no cancellation, so a job cancelled while it runs still reaches its
    end; the store refuses the completion (the job stays CANCELLED) and a warning says so."""
    queue = make_queue()
    worker, seen = _worker(queue)

    @worker.handler("t")
    async def handle(ctx: JobContext) -> dict[str, Any]:
        assert await queue.cancel(ctx.id, "changed my mind")
        return {"ok": True}

    job_id = await queue.enqueue("t")
    with caplog.at_level(logging.WARNING, logger="jdobb_async_queue.worker"):
        with anyio.fail_after(WAIT):
            assert await worker.process_one() is True
    job = await queue.get(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED and job.results is None
    assert [o.status for o in seen] == ["complete"]  # counted before the store refused it
    assert f"the complete {REFUSED.format(job_id)}" in caplog.text


async def test_the_reporter_logs_an_outcome_the_store_refuses(
    make_queue: QueueFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A running worker's reporter: the job was ended elsewhere under the worker's feet (here
    straight through the backend, so no cancel notice reaches the worker); the worker's failure
    is refused, logged, and the job keeps the end it was given."""
    queue = make_queue()
    worker = Worker(queue, poll_interval=0.05)
    told = anyio.Event()
    worker.on_outcome(lambda outcome: told.set())

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        ended = Outcome(job_id=ctx.id, kind="complete", results={"by": "someone else"})
        assert await queue.backend.finish(ended, now=queue.clock())
        raise ValueError("too late")

    job_id = await queue.enqueue("t")
    with caplog.at_level(logging.WARNING, logger="jdobb_async_queue.worker"):
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await told.wait()
                await worker.stop()
    job = await queue.get(job_id)
    assert job is not None and job.status is JobStatus.COMPLETE
    assert job.results == {"by": "someone else"}
    assert f"the fail {REFUSED.format(job_id)}" in caplog.text
