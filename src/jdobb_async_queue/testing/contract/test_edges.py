"""Issue 12 at the edges: one decision per attempt, update sequence numbers, subscriptions that
end when their job goes, poison jobs (``max_lost``), fenced notices, closed queues."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from jdobb_async_queue import (
    Broadcaster,
    InvalidJobError,
    JobNotFoundError,
    JobPriority,
    JobQueue,
    JobStatus,
    JobUpdate,
    PayloadTooLargeError,
    QueueClosedError,
    Worker,
)
from jdobb_async_queue.backends import Outcome, ProgressUpdate, lost_error
from jdobb_async_queue.testing import MockClock

from ._support import WAIT, running

pytestmark = pytest.mark.anyio




async def _next(updates: AsyncIterator[JobUpdate]) -> JobUpdate:
    with anyio.fail_after(WAIT):
        return await anext(updates)


async def _seq(queue: JobQueue, job_id: str) -> int:
    record = await queue.backend.get(job_id, now=queue.clock())
    assert record is not None
    return record.update_seq


# -- update sequence numbers -----------------------------------------------------------------


async def test_every_stored_change_bumps_the_update_seq(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    seqs = [await _seq(queue, job_id)]
    await queue.claim()
    seqs.append(await _seq(queue, job_id))
    await queue.update(job_id, progress=0.5)
    seqs.append(await _seq(queue, job_id))
    await queue.update(job_id, message="more")
    seqs.append(await _seq(queue, job_id))
    await queue.complete(job_id, {"ok": True})
    seqs.append(await _seq(queue, job_id))
    assert seqs == sorted(set(seqs)), seqs  # strictly rising
    assert seqs[0] >= 1


async def test_refused_changes_leave_the_update_seq_alone(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    before = await _seq(queue, job_id)
    assert not await queue.update(job_id, progress=0.5)  # not PROCESSING
    assert not await queue.complete(job_id)
    assert await _seq(queue, job_id) == before


async def test_each_update_is_delivered_once_in_order(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        first = await _next(updates)
        assert first.status is JobStatus.PENDING
        await queue.claim()
        # The snapshot is never delivered a second time (the SQLite file backend did).
        assert (await _next(updates)).status is JobStatus.PROCESSING
        await queue.update(job_id, progress=0.25)
        assert (await _next(updates)).progress == 0.25
        await queue.update(job_id, progress=0.75)
        assert (await _next(updates)).progress == 0.75
        await queue.complete(job_id, {"n": 1})
        final = await _next(updates)
        assert final.status is JobStatus.COMPLETE
        with anyio.fail_after(WAIT), pytest.raises(StopAsyncIteration):
            await anext(updates)


async def test_updates_from_a_host_whose_clock_is_behind_are_not_dropped(
    make_queue: Any,
) -> None:
    """A subscriber skipped updates stamped before its snapshot: a completion from a host a
    few seconds behind was dropped, and the subscriber waited forever."""
    ahead = MockClock(1_700_000_100.0)
    behind = MockClock(1_700_000_000.0)
    producer: JobQueue = make_queue(clock=ahead)
    worker_side: JobQueue = make_queue(clock=behind)
    job_id = await producer.enqueue("t")
    async with aclosing(Broadcaster(producer).subscribe(job_id)) as updates:
        assert (await _next(updates)).status is JobStatus.PENDING
        claimed = await worker_side.claim()
        assert claimed is not None and claimed.id == job_id
        assert (await _next(updates)).status is JobStatus.PROCESSING
        assert await worker_side.complete(job_id, {"done": 1})
        final = await _next(updates)
        assert final.status is JobStatus.COMPLETE
        assert final.results == {"done": 1}


# -- a watched job that goes ---------------------------------------------------------------


async def test_a_job_that_expires_at_its_end_still_delivers_its_end(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t", ttl=0)
    await queue.claim()
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        assert (await _next(updates)).status is JobStatus.PROCESSING
        await queue.complete(job_id, {"x": 1})
        with anyio.fail_after(WAIT):
            statuses = [u.status async for u in updates]
    # Either the completion arrived, or (a store that only polls) a clear end: never a hang.
    assert statuses in ([JobStatus.COMPLETE], [])


async def test_subscribing_to_a_purged_job_is_refused(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.cancel(job_id)
    assert await queue.purge() == 1
    with anyio.fail_after(WAIT), pytest.raises(JobNotFoundError):
        async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
            await anext(updates)


# -- one decision per attempt ----------------------------------------------------------------


async def test_retry_is_due_after_the_decided_delay(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", max_retries=1)
    job = await timed.claim()
    assert job is not None
    outcome = Outcome(job_id=job_id, kind="retry", fence=1, error="boom", delay=7.0)
    assert await timed.backend.finish(outcome, now=clock())
    record = await timed.backend.get(job_id, now=clock())
    assert record is not None
    assert record.status == "pending"
    assert record.error == "boom"
    assert record.execute_at == pytest.approx(clock() + 7.0)
    clock.advance(6.9)
    assert await timed.claim() is None
    clock.advance(0.2)
    assert await timed.claim() is not None


async def test_fail_kind_ends_the_job_whatever_retries_are_left(
    timed: JobQueue, clock: MockClock
) -> None:
    """The backend applies the decision; it does not re-decide from max_retries."""
    job_id = await timed.enqueue("t", max_retries=5)
    await timed.claim()
    outcome = Outcome(job_id=job_id, kind="fail", fence=1, error="no more")
    assert await timed.backend.finish(outcome, now=clock())
    job = await timed.get(job_id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error == "no more"


async def test_release_resets_the_attempt(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t")
    await timed.claim()
    await timed.update(job_id, progress=0.6, message="working")
    outcome = Outcome(job_id=job_id, kind="release", fence=1)
    assert await timed.backend.finish(outcome, now=clock())
    job = await timed.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0
    assert job.progress == 0.0
    assert job.message is None
    assert job.started_at is None


# -- poison jobs: max_lost --------------------------------------------------------------------


async def _lose(queue: JobQueue, clock: MockClock, job_id: str) -> None:
    job = await queue.claim(lease=5)
    assert job is not None and job.id == job_id
    clock.advance(6)
    assert job_id in await queue.backend.reclaim_expired(now=clock())


async def test_a_job_lost_more_than_max_lost_times_fails(
    timed: JobQueue, clock: MockClock
) -> None:
    job_id = await timed.enqueue("poison", max_lost=2)
    for _ in range(2):
        await _lose(timed, clock, job_id)
        job = await timed.get(job_id)
        assert job is not None and job.status is JobStatus.PENDING
    await _lose(timed, clock, job_id)
    job = await timed.get(job_id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.error == lost_error(3)
    assert job.completed_at is not None
    assert await timed.claim() is None


async def test_max_lost_zero_fails_at_the_first_loss(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("poison", max_lost=0)
    await _lose(timed, clock, job_id)
    job = await timed.get(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert "lost 1 times" in (job.error or "")


async def test_a_lost_poison_job_cancels_its_dependents(
    timed: JobQueue, clock: MockClock
) -> None:
    job_id = await timed.enqueue("poison", max_lost=0)
    child = await timed.enqueue("child", depends_on=[job_id])
    await _lose(timed, clock, job_id)
    job = await timed.get(child)
    assert job is not None and job.status is JobStatus.CANCELLED


async def test_an_explicit_retry_forgets_the_losses(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("poison", max_lost=0)
    await _lose(timed, clock, job_id)
    assert await timed.retry(job_id)
    await _lose(timed, clock, job_id)  # lost once again: the count started over
    job = await timed.get(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error == lost_error(1)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
async def test_max_lost_is_checked(queue: JobQueue, bad: object) -> None:
    with pytest.raises(InvalidJobError, match="max_lost"):
        await queue.enqueue("t", max_lost=bad)  # type: ignore[arg-type]
    assert await queue.list_jobs() == []


@pytest.mark.parametrize("option", ["max_retries", "max_lost", "ttl"])
async def test_counts_past_what_a_store_holds_are_refused(queue: JobQueue, option: str) -> None:
    # Every store holds a signed 32-bit count; past it, one typed error on every backend (not
    # a driver's overflow on some, a silent acceptance on others), and nothing is stored.
    for bad in (2**31, 2**63, 2**80):
        too_big: dict[str, Any] = {option: bad}
        with pytest.raises(InvalidJobError, match=option):
            await queue.enqueue("t", **too_big)
        with pytest.raises(InvalidJobError, match=option):
            await queue.enqueue_many([{"job_type": "t"}, {"job_type": "t", option: bad}])
    assert await queue.list_jobs() == []
    largest: dict[str, Any] = {option: 2**31 - 1}
    record = await queue.backend.get(await queue.enqueue("t", **largest), now=queue.clock())
    assert record is not None and getattr(record, option) == 2**31 - 1


async def test_an_outcome_label_comes_from_the_decision(queue: JobQueue) -> None:
    worker = Worker(queue, max_concurrent=1)
    seen: list[str] = []
    done = anyio.Event()

    @worker.handler("t")
    async def boom(ctx: Any) -> None:
        raise RuntimeError("boom")

    def hook(outcome: Any) -> None:
        seen.append(outcome.status)
        if outcome.status == "failed":
            done.set()

    worker.on_outcome(hook)
    await queue.enqueue("t", max_retries=1, retry_delay=0.0)
    async with running(worker):
        with anyio.fail_after(WAIT):
            await done.wait()
    assert seen == ["retrying", "failed"]


# -- list_jobs(limit=None), payload size -------------------------------------------------------


async def test_list_jobs_without_a_limit(queue: JobQueue) -> None:
    await queue.enqueue_many([{"job_type": "t"} for _ in range(130)])
    assert len(await queue.list_jobs(limit=None)) == 130
    assert len(await queue.list_jobs(limit=None, offset=100)) == 30


@pytest.mark.parametrize("bad", [-1, "10", 2.5, 2**63])
async def test_list_jobs_refuses_a_bad_limit(queue: JobQueue, bad: object) -> None:
    with pytest.raises(InvalidJobError, match="limit"):
        await queue.list_jobs(limit=bad)  # type: ignore[arg-type]


async def test_a_payload_over_the_limit_is_refused(make_queue: Any) -> None:
    queue: JobQueue = make_queue(max_payload_bytes=1000)
    with pytest.raises(PayloadTooLargeError) as caught:
        await queue.enqueue("t", {"blob": "x" * 2000})
    assert caught.value.limit == 1000
    with pytest.raises(PayloadTooLargeError):
        await queue.enqueue_many([{"job_type": "t"}, {"job_type": "t", "data": {"b": "y" * 999}}])
    assert await queue.list_jobs() == []
    assert await queue.enqueue("t", {"blob": "x" * 900})


# -- closed queues -----------------------------------------------------------------------------


async def test_calls_on_a_closed_queue_raise_at_once(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    job_id = await queue.enqueue("t")
    await queue.close()
    with anyio.fail_after(1):
        with pytest.raises(QueueClosedError):
            await queue.enqueue("t")
        with pytest.raises(QueueClosedError):
            await queue.get(job_id)
        with pytest.raises(QueueClosedError):
            await queue.claim()
    await queue.close()  # still safe twice


async def test_a_worker_whose_queue_is_closed_stops(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    worker = Worker(queue, max_concurrent=2, poll_interval=0.05, drain_timeout=1.0)
    started = anyio.Event()

    @worker.handler("t")
    async def slow(ctx: Any) -> None:
        started.set()
        await anyio.sleep(0.2)

    await queue.enqueue("t")
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                with pytest.raises(QueueClosedError):
                    await worker.run()

            tg.start_soon(run)
            await started.wait()
            await queue.close()
            with anyio.fail_after(worker.drain_timeout + 1.0):
                await worker.stop()


# -- notices carry the fence -------------------------------------------------------------------


async def test_a_cancel_notice_names_the_attempt(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    async with queue.backend.listen() as notices:
        claimed = await queue.claim()
        assert claimed is not None
        record = await queue.backend.get(job_id, now=queue.clock())
        assert record is not None
        await queue.cancel(job_id)
        with anyio.move_on_after(1.0) as waited:
            async for notice in notices:
                if notice.kind == "cancel":
                    assert notice.job_id == job_id
                    assert notice.fence == record.fence
                    break
    if waited.cancelled_caught:
        pytest.skip(f"the {type(queue.backend).__name__} pushes no notices")


async def test_progress_of_an_older_attempt_is_refused(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t")
    await timed.claim(lease=5)
    clock.advance(6)
    await timed.backend.reclaim_expired(now=clock())
    await timed.claim()
    stale = ProgressUpdate(job_id=job_id, progress=0.9, fence=1)
    assert not await timed.backend.update_progress(stale, now=clock())
    job = await timed.get(job_id)
    assert job is not None and job.progress == 0.0


async def test_an_id_used_again_after_a_purge_is_a_new_job(queue: JobQueue) -> None:
    """A store must not mix a purged job's leftovers (its place in the claim order, its due
    time, its lease) into a new job that reuses the id."""
    await queue.enqueue("t", job_id="reused", priority=JobPriority.HIGH)
    await queue.cancel("reused")
    assert await queue.purge() == 1
    await queue.enqueue("t", job_id="first")
    await queue.enqueue("t", job_id="reused", priority=JobPriority.LOW)
    claimed = await queue.claim()
    assert claimed is not None and claimed.id == "first"
    again = await queue.claim()
    assert again is not None and again.id == "reused" and again.priority is JobPriority.LOW
