"""A Worker on every backend: results, errors, timeouts, cancellation, wake-ups (real time)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from jdobb_async_queue import Job, JobContext, JobQueue, JobStatus, Worker

from ._support import WAIT, finished, running

pytestmark = pytest.mark.anyio


async def _get(queue: JobQueue, job_id: str) -> Job:
    job = await queue.get(job_id)
    assert job is not None
    return job


async def test_handler_result_becomes_the_job_results(queue: JobQueue) -> None:
    worker = Worker(queue, poll_interval=0.05)
    seen: list[tuple[str, str, dict[str, Any], dict[str, Any], int]] = []

    @worker.handler("double")
    async def double(ctx: JobContext) -> dict[str, Any]:
        seen.append((ctx.id, ctx.job_type, ctx.data, ctx.metadata, ctx.job.attempts))
        await ctx.update(progress=0.5, message="halfway")
        return {"value": ctx.data["x"] * 2}

    job_id = await queue.enqueue("double", {"x": 21}, metadata={"who": "test"})
    async with running(worker):
        final = await finished(queue, job_id)
    assert final.status is JobStatus.COMPLETE
    assert final.results == {"value": 42}
    assert seen == [(job_id, "double", {"x": 21}, {"who": "test"}, 1)]
    job = await _get(queue, job_id)
    assert job.status is JobStatus.COMPLETE
    assert job.results == {"value": 42}
    assert job.message == "halfway"
    assert job.progress == 1.0
    assert job.duration is not None
    assert job.duration >= 0


async def test_worker_processes_many_jobs(queue: JobQueue) -> None:
    worker = Worker(queue, poll_interval=0.05, max_concurrent=3)

    @worker.handler("t")
    async def handle(ctx: JobContext) -> dict[str, Any]:
        return {"i": ctx.data["i"]}

    ids = await queue.enqueue_many([{"job_type": "t", "data": {"i": i}} for i in range(10)])
    async with running(worker):
        for i, job_id in enumerate(ids):
            final = await finished(queue, job_id)
            assert final.results == {"i": i}
    stats = await queue.stats()
    assert stats.complete == 10
    assert stats.pending == stats.processing == 0


async def test_handler_exception_fails_the_job_with_its_text(queue: JobQueue) -> None:
    worker = Worker(queue, poll_interval=0.05)

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        raise RuntimeError("kaboom: bad input")

    job_id = await queue.enqueue("t")
    async with running(worker):
        final = await finished(queue, job_id)
    assert final.status is JobStatus.FAILED
    job = await _get(queue, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert "kaboom: bad input" in job.error
    assert job.attempts == 1


async def test_failing_attempt_is_retried_by_the_worker(queue: JobQueue) -> None:
    worker = Worker(queue, poll_interval=0.05)
    attempts: list[int] = []

    @worker.handler("t")
    async def handle(ctx: JobContext) -> dict[str, Any]:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ValueError("first try fails")
        return {"attempt": ctx.attempt}

    job_id = await queue.enqueue("t", max_retries=2, retry_delay=0)
    async with running(worker):
        final = await finished(queue, job_id)
    assert final.status is JobStatus.COMPLETE
    assert final.results == {"attempt": 2}
    assert attempts == [1, 2]
    job = await _get(queue, job_id)
    assert job.attempts == 2
    assert job.error is None


async def test_timeout_fails_the_attempt(queue: JobQueue) -> None:
    worker = Worker(queue, poll_interval=0.05)
    never = anyio.Event()

    @worker.handler("slow")
    async def slow(ctx: JobContext) -> None:
        await never.wait()

    job_id = await queue.enqueue("slow", timeout=0.2)
    async with running(worker):
        final = await finished(queue, job_id)
    assert final.status is JobStatus.FAILED
    job = await _get(queue, job_id)
    assert job.error is not None
    assert "timed out" in job.error
    assert job.attempts == 1


async def test_timed_out_attempt_is_retried(queue: JobQueue) -> None:
    worker = Worker(queue, poll_interval=0.05)
    never = anyio.Event()
    calls: list[int] = []

    @worker.handler("slow")
    async def slow(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        await never.wait()

    job_id = await queue.enqueue("slow", timeout=0.2, max_retries=1, retry_delay=0)
    async with running(worker):
        final = await finished(queue, job_id)
    assert final.status is JobStatus.FAILED
    assert calls == [1, 2]
    job = await _get(queue, job_id)
    assert job.attempts == 2
    assert job.error is not None
    assert "timed out" in job.error


async def test_cancelling_a_running_job_stops_its_handler(queue: JobQueue) -> None:
    worker = Worker(queue, poll_interval=0.05)
    started = anyio.Event()
    never = anyio.Event()
    handler_cancelled = anyio.Event()

    @worker.handler("block")
    async def block(ctx: JobContext) -> None:
        started.set()
        try:
            await never.wait()
        except anyio.get_cancelled_exc_class():
            handler_cancelled.set()
            raise

    @worker.handler("quick")
    async def quick(ctx: JobContext) -> dict[str, Any]:
        return {"ok": True}

    blocked = await queue.enqueue("block")
    async with running(worker):
        with anyio.fail_after(WAIT):
            await started.wait()
        assert await queue.cancel(blocked, "no longer needed") is True
        with anyio.fail_after(WAIT):
            await handler_cancelled.wait()
        # the worker goes on with the next job
        nxt = await queue.enqueue("quick")
        final = await finished(queue, nxt)
        assert final.status is JobStatus.COMPLETE
    job = await _get(queue, blocked)
    assert job.status is JobStatus.CANCELLED
    assert job.error == "no longer needed"


async def test_idle_worker_wakes_up_for_a_new_job(queue: JobQueue) -> None:
    worker = Worker(queue, poll_interval=10)
    done = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        done.set()

    async with running(worker):
        # Give the worker time to find the queue empty and go to sleep for poll_interval; no
        # event says "idle", and if it is not asleep yet the test is merely easier.
        await anyio.sleep(0.2)
        job_id = await queue.enqueue("t")
        with anyio.fail_after(WAIT):
            await done.wait()
        final = await finished(queue, job_id)
    assert final.status is JobStatus.COMPLETE


async def test_idle_worker_wakes_up_for_a_scheduled_job(queue: JobQueue) -> None:
    worker = Worker(queue, poll_interval=10)
    done = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        done.set()

    async with running(worker):
        await anyio.sleep(0.2)  # as above: let the worker go idle
        job_id = await queue.enqueue("t", delay=0.2)
        with anyio.fail_after(WAIT):
            await done.wait()
        final = await finished(queue, job_id)
    assert final.status is JobStatus.COMPLETE


async def test_dependent_job_runs_after_its_dependency_with_its_results(
    queue: JobQueue,
) -> None:
    worker = Worker(queue, poll_interval=0.05)
    seen: dict[str, Any] = {}

    @worker.handler("fetch")
    async def fetch(ctx: JobContext) -> dict[str, Any]:
        return {"rows": ctx.data["n"]}

    @worker.handler("sum")
    async def total(ctx: JobContext) -> dict[str, Any]:
        seen.update(ctx.dependency_results)
        return {"total": sum(r["rows"] for r in ctx.dependency_results.values() if r)}

    a = await queue.enqueue("fetch", {"n": 2})
    b = await queue.enqueue("fetch", {"n": 3})
    c = await queue.enqueue("sum", depends_on=[a, b])
    async with running(worker):
        final = await finished(queue, c)
    assert final.status is JobStatus.COMPLETE
    assert final.results == {"total": 5}
    assert seen == {a: {"rows": 2}, b: {"rows": 3}}


async def test_worker_only_takes_its_job_types(queue: JobQueue) -> None:
    worker = Worker(queue, poll_interval=0.05)

    @worker.handler("mine")
    async def mine(ctx: JobContext) -> None:
        return None

    other = await queue.enqueue("theirs")
    job_id = await queue.enqueue("mine")
    async with running(worker):
        final = await finished(queue, job_id)
    assert final.status is JobStatus.COMPLETE
    assert (await _get(queue, other)).status is JobStatus.PENDING


async def test_an_error_text_that_is_not_valid_unicode_still_fails_the_job(queue: JobQueue) -> None:
    """A lone surrogate (bytes decoded with ``surrogateescape``) in an exception's text: the job
    is FAILED with an escaped copy, and the worker goes on to the next job."""
    worker = Worker(queue, poll_interval=0.05)

    @worker.handler("t")
    async def handle(ctx: JobContext) -> dict[str, Any]:
        if ctx.data.get("bad"):
            raise ValueError(b"caf\xe9".decode("utf-8", "surrogateescape"))
        return {"ok": True}

    bad = await queue.enqueue("t", {"bad": True})
    good = await queue.enqueue("t")
    async with running(worker):
        final = await finished(queue, bad)
        assert final.status is JobStatus.FAILED
        assert final.error is not None and "caf\\udce9" in final.error
        assert (await finished(queue, good)).status is JobStatus.COMPLETE
