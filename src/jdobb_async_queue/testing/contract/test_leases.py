"""Leases and fences: expired claims are recovered, stale reports change nothing (MockClock).

These drive ``queue.backend`` directly for what a worker does (renew, reclaim, fenced reports).
"""

from __future__ import annotations

import pytest

from jdobb_async_queue import Job, JobQueue, JobStatus, QueueStats
from jdobb_async_queue.backends import Lease, Outcome, ProgressUpdate
from jdobb_async_queue.testing import MockClock

pytestmark = pytest.mark.anyio




async def _claim(queue: JobQueue, job_id: str, lease: float = 30.0) -> Job:
    job = await queue.claim(lease=lease)
    assert job is not None
    assert job.id == job_id
    return job


async def _fence(queue: JobQueue, job_id: str) -> int:
    record = await queue.backend.get(job_id, now=queue.clock())
    assert record is not None
    return record.fence


async def _get(queue: JobQueue, job_id: str) -> Job:
    job = await queue.get(job_id)
    assert job is not None
    return job


async def test_claim_sets_the_lease(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t")
    start = clock()
    job = await _claim(timed, job_id, lease=12)
    assert job.lease_expires_at is not None
    assert job.lease_expires_at.timestamp() == pytest.approx(start + 12, abs=1e-3)
    assert job.worker_id
    await timed.complete(job_id)
    done = await _get(timed, job_id)
    assert done.worker_id is None
    assert done.lease_expires_at is None


async def test_every_claim_bumps_the_fence(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", max_retries=1, retry_delay=0)
    await _claim(timed, job_id)
    first = await _fence(timed, job_id)
    await timed.fail(job_id, "flaky")
    await _claim(timed, job_id)
    assert await _fence(timed, job_id) > first


async def test_expired_lease_sends_the_job_back_to_pending(
    timed: JobQueue, clock: MockClock
) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id, lease=5)
    clock.advance(6)
    assert await timed.backend.reclaim_expired(now=clock()) == [job_id]
    job = await _get(timed, job_id)
    assert job.status is JobStatus.PENDING
    assert job.attempts == 1  # the lost attempt still counts
    assert job.worker_id is None
    assert job.lease_expires_at is None
    assert await timed.stats() == QueueStats(pending=1)

    again = await _claim(timed, job_id)
    assert again.attempts == 2
    assert again.status is JobStatus.PROCESSING


async def test_reclaimed_job_is_due_at_once(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t", delay=50)
    clock.advance(60)
    await _claim(timed, job_id, lease=5)
    clock.advance(6)
    await timed.backend.reclaim_expired(now=clock())
    await _claim(timed, job_id)


async def test_lease_expiry_does_not_use_up_retries(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t")  # max_retries=0
    for _ in range(3):
        await _claim(timed, job_id, lease=5)
        clock.advance(6)
        assert await timed.backend.reclaim_expired(now=clock()) == [job_id]
    job = await _get(timed, job_id)
    assert job.status is JobStatus.PENDING
    assert job.attempts == 3


async def test_live_lease_is_not_reclaimed(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id, lease=5)
    clock.advance(4)
    assert await timed.backend.reclaim_expired(now=clock()) == []
    job = await _get(timed, job_id)
    assert job.status is JobStatus.PROCESSING
    assert await timed.claim() is None


async def test_finished_jobs_are_not_reclaimed(timed: JobQueue, clock: MockClock) -> None:
    done = await timed.enqueue("t")
    await _claim(timed, done, lease=5)
    await timed.complete(done)
    cancelled = await timed.enqueue("t")
    await _claim(timed, cancelled, lease=5)
    await timed.cancel(cancelled)
    clock.advance(60)
    assert await timed.backend.reclaim_expired(now=clock()) == []
    assert (await _get(timed, done)).status is JobStatus.COMPLETE
    assert (await _get(timed, cancelled)).status is JobStatus.CANCELLED


async def test_renew_extends_the_lease(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id, lease=5)
    fence = await _fence(timed, job_id)
    clock.advance(4)
    lease = Lease(job_id=job_id, fence=fence)
    assert await timed.backend.renew(lease, duration=5, now=clock()) is True
    clock.advance(4)  # past the first lease, inside the renewed one
    assert await timed.backend.reclaim_expired(now=clock()) == []
    assert (await _get(timed, job_id)).status is JobStatus.PROCESSING
    clock.advance(2)
    assert await timed.backend.reclaim_expired(now=clock()) == [job_id]


async def test_renew_of_a_lost_lease_is_refused(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id, lease=5)
    old = Lease(job_id=job_id, fence=await _fence(timed, job_id))
    clock.advance(6)
    await timed.backend.reclaim_expired(now=clock())
    assert await timed.backend.renew(old, duration=30, now=clock()) is False  # reclaimed
    await _claim(timed, job_id, lease=5)
    assert await timed.backend.renew(old, duration=30, now=clock()) is False  # claimed anew
    current = Lease(job_id=job_id, fence=await _fence(timed, job_id))
    await timed.cancel(job_id)
    assert await timed.backend.renew(current, duration=30, now=clock()) is False  # cancelled
    assert (
        await timed.backend.renew(Lease(job_id="no-such-job", fence=1), duration=30, now=clock())
        is False
    )


async def test_stale_complete_is_refused_after_reclaim(timed: JobQueue, clock: MockClock) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id, lease=5)
    old = await _fence(timed, job_id)
    clock.advance(6)
    await timed.backend.reclaim_expired(now=clock())

    late = Outcome(job_id=job_id, kind="complete", fence=old, results={"late": True})
    assert await timed.backend.finish(late, now=clock()) is False
    job = await _get(timed, job_id)
    assert job.status is JobStatus.PENDING
    assert job.results is None


async def test_stale_reports_are_refused_while_another_claim_holds_the_job(
    timed: JobQueue, clock: MockClock
) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id, lease=5)
    old = await _fence(timed, job_id)
    clock.advance(6)
    await timed.backend.reclaim_expired(now=clock())
    await _claim(timed, job_id, lease=30)
    new = await _fence(timed, job_id)
    assert new != old
    before = (await _get(timed, job_id)).model_dump()

    for outcome in (
        Outcome(job_id=job_id, kind="complete", fence=old, results={"late": True}),
        Outcome(job_id=job_id, kind="fail", fence=old, error="late"),
        Outcome(job_id=job_id, kind="release", fence=old),
    ):
        assert await timed.backend.finish(outcome, now=clock()) is False
    stale_progress = ProgressUpdate(job_id=job_id, progress=0.9, message="late", fence=old)
    assert await timed.backend.update_progress(stale_progress, now=clock()) is False
    assert (await _get(timed, job_id)).model_dump() == before

    current = Outcome(job_id=job_id, kind="complete", fence=new, results={"ok": True})
    assert await timed.backend.finish(current, now=clock()) is True
    job = await _get(timed, job_id)
    assert job.status is JobStatus.COMPLETE
    assert job.results == {"ok": True}


async def test_release_hands_the_job_back_without_counting_the_attempt(
    timed: JobQueue, clock: MockClock
) -> None:
    job_id = await timed.enqueue("t")
    await _claim(timed, job_id)
    fence = await _fence(timed, job_id)
    release = Outcome(job_id=job_id, kind="release", fence=fence)
    assert await timed.backend.finish(release, now=clock()) is True
    job = await _get(timed, job_id)
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0
    again = await _claim(timed, job_id)
    assert again.attempts == 1
