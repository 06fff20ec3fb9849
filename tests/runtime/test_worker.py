"""The actor runtime: claiming by credit, graceful and hard stops, leases, process_one.

Backend-independent behaviour lives in tests/contract/; these tests pin down the runtime's own
rules on the memory backend.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from jdobb_async_queue import (
    BackendUnavailable,
    Broadcaster,
    ConfigurationError,
    JobContext,
    JobQueue,
    JobStatus,
    Worker,
)
from jdobb_async_queue.backends.memory import MemoryBackend
from jdobb_async_queue.testing import MockClock

pytestmark = pytest.mark.anyio


class CountingBackend(MemoryBackend):
    """The memory backend, counting claim calls and the largest batch asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.claim_calls = 0
        self.largest_limit = 0

    async def claim_pending_job(self, job_types: Any, **kwargs: Any) -> Any:
        self.claim_calls += 1
        self.largest_limit = max(self.largest_limit, kwargs["limit"])
        return await super().claim_pending_job(job_types, **kwargs)


async def wait_done(queue: JobQueue, job_id: str) -> JobStatus:
    last = None
    async for update in Broadcaster(queue).subscribe(job_id):
        last = update.status  # the subscription ends by itself after the terminal update
    assert last is not None and last.is_terminal
    return last


async def test_never_runs_more_jobs_than_max_concurrent() -> None:
    backend = CountingBackend()
    queue = JobQueue(backend=backend)
    worker = Worker(queue, max_concurrent=3)
    running = 0
    peak = 0

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.lowlevel.checkpoint()
        running -= 1

    ids = [await queue.enqueue("t") for _ in range(30)]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            for job_id in ids:
                assert await wait_done(queue, job_id) is JobStatus.COMPLETE
            await worker.stop()
    assert peak == 3
    assert backend.largest_limit <= 3  # claimed only for idle handlers, never into a buffer


async def test_idle_handlers_are_claimed_for_in_one_batch() -> None:
    backend = CountingBackend()
    queue = JobQueue(backend=backend)
    worker = Worker(queue, max_concurrent=8)
    gate = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        await gate.wait()

    ids = [await queue.enqueue("t") for _ in range(8)]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            while (await queue.stats()).processing < 8:
                await anyio.sleep(0.01)
            gate.set()
            for job_id in ids:
                await wait_done(queue, job_id)
            await worker.stop()
    assert backend.largest_limit == 8


async def test_an_idle_worker_does_not_spin() -> None:
    backend = CountingBackend()
    queue = JobQueue(backend=backend)
    worker = Worker(queue, poll_interval=0.05)
    worker.register_handler("t", _noop)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await anyio.sleep(0.5)
            await worker.stop()
    # about one claim per poll_interval: 10 in 0.5 s, never thousands
    assert backend.claim_calls <= 20


async def test_stop_lets_running_jobs_finish() -> None:
    queue = JobQueue()
    worker = Worker(queue, drain_timeout=5)
    started = anyio.Event()

    @worker.handler("slow")
    async def slow(ctx: JobContext) -> dict[str, Any]:
        started.set()
        await anyio.sleep(0.2)
        return {"finished": True}

    job_id = await queue.enqueue("slow")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            await worker.stop()
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETE
    assert job.results == {"finished": True}
    assert not worker.is_running


async def test_drain_timeout_hands_running_jobs_back() -> None:
    queue = JobQueue()
    worker = Worker(queue, drain_timeout=0.1)
    started = anyio.Event()

    @worker.handler("stuck")
    async def stuck(ctx: JobContext) -> None:
        started.set()
        await anyio.sleep_forever()

    job_id = await queue.enqueue("stuck")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            await worker.stop()
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING  # handed back, due at once
    assert job.attempts == 0  # the interrupted attempt does not count
    assert await queue.claim(["stuck"]) is not None


async def test_handler_errors_fail_the_job_not_the_worker() -> None:
    queue = JobQueue()
    worker = Worker(queue)

    @worker.handler("boom")
    async def boom(ctx: JobContext) -> None:
        raise RuntimeError("kaput")

    worker.register_handler("ok", _noop)
    bad = await queue.enqueue("boom")
    good = await queue.enqueue("ok")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            assert await wait_done(queue, bad) is JobStatus.FAILED
            assert await wait_done(queue, good) is JobStatus.COMPLETE
            assert worker.is_running
            await worker.stop()
    job = await queue.get(bad)
    assert job is not None and job.error is not None and "kaput" in job.error


async def test_a_non_json_result_fails_the_job() -> None:
    queue = JobQueue()
    worker = Worker(queue)

    @worker.handler("t")
    async def handle(ctx: JobContext) -> Any:
        return {"when": object()}

    job_id = await queue.enqueue("t")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            assert await wait_done(queue, job_id) is JobStatus.FAILED
            await worker.stop()
    job = await queue.get(job_id)
    assert job is not None and job.error is not None and "JSON" in job.error


async def test_leases_are_renewed_while_a_job_runs() -> None:
    queue = JobQueue()
    worker = Worker(queue, lease=0.15)
    first_expiry: list[float] = []
    release = anyio.Event()

    @worker.handler("long")
    async def long(ctx: JobContext) -> None:
        await release.wait()

    job_id = await queue.enqueue("long")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            while (job := await queue.get(job_id)) is None or job.lease_expires_at is None:
                await anyio.sleep(0.01)
            first_expiry.append(job.lease_expires_at.timestamp())
            await anyio.sleep(0.4)  # several lease lengths: without renewal it would be reclaimed
            await queue.backend.reclaim_expired(now=queue.clock())
            job = await queue.get(job_id)
            assert job is not None and job.status is JobStatus.PROCESSING
            assert job.lease_expires_at is not None
            assert job.lease_expires_at.timestamp() > first_expiry[0]
            release.set()
            assert await wait_done(queue, job_id) is JobStatus.COMPLETE
            await worker.stop()
    job = await queue.get(job_id)
    assert job is not None and job.attempts == 1


async def test_a_dead_workers_job_is_run_again() -> None:
    clock = MockClock()
    queue = JobQueue(clock=clock)
    job_id = await queue.enqueue("t")
    orphan = await queue.claim(["t"], lease=10)  # a worker that then dies
    assert orphan is not None
    clock.advance(11)
    worker = Worker(queue)
    worker.register_handler("t", _noop)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            assert await wait_done(queue, job_id) is JobStatus.COMPLETE
            await worker.stop()
    job = await queue.get(job_id)
    assert job is not None and job.attempts == 2


async def test_a_late_report_from_a_worker_that_lost_its_lease_changes_nothing() -> None:
    clock = MockClock()
    queue = JobQueue(clock=clock)
    job_id = await queue.enqueue("t")
    first = await queue.claim(["t"], lease=1)
    clock.advance(2)
    assert await queue.backend.reclaim_expired(now=clock()) == [job_id]
    second = await queue.claim(["t"])
    assert first is not None and second is not None
    worker = Worker(queue)
    worker.register_handler("t", _noop)
    # process_one would claim nothing: the job is held by the second claim
    assert await worker.process_one() is False
    job = await queue.get(job_id)
    assert job is not None and job.status is JobStatus.PROCESSING


async def test_process_one_runs_a_single_job() -> None:
    queue = JobQueue()
    worker = Worker(queue)

    @worker.handler("t")
    async def handle(ctx: JobContext) -> dict[str, Any]:
        return {"n": ctx.data["n"]}

    first = await queue.enqueue("t", {"n": 1})
    second = await queue.enqueue("t", {"n": 2})
    assert await worker.process_one() is True
    job = await queue.get(first)
    assert job is not None and job.results == {"n": 1}
    still = await queue.get(second)
    assert still is not None and still.status is JobStatus.PENDING
    assert await worker.process_one() is True
    assert await worker.process_one() is False


async def test_cancelling_a_running_job_stops_its_handler() -> None:
    queue = JobQueue()
    worker = Worker(queue)
    started = anyio.Event()
    cancelled = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    job_id = await queue.enqueue("t")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            assert await queue.cancel(job_id, "no longer needed")
            await cancelled.wait()
            await worker.stop()
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED
    assert job.error == "no longer needed"


def test_handlers_must_be_async() -> None:
    worker = Worker(JobQueue())

    def sync_handler(ctx: JobContext) -> None:
        return None

    with pytest.raises(ConfigurationError, match="async"):
        worker.register_handler("t", sync_handler)  # type: ignore[arg-type]


def test_a_job_type_takes_one_handler() -> None:
    worker = Worker(JobQueue())
    worker.register_handler("t", _noop)
    with pytest.raises(ConfigurationError, match="already"):
        worker.register_handler("t", _noop)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_concurrent": 0}, {"poll_interval": 0}, {"lease": -1}, {"job_types": "abc"}],
)
def test_bad_worker_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Worker(JobQueue(), **kwargs)


async def test_run_needs_a_handler_for_every_job_type() -> None:
    worker = Worker(JobQueue(), job_types=["a", "b"])
    worker.register_handler("a", _noop)
    with pytest.raises(ConfigurationError, match="b"):
        await worker.run()
    assert not worker.is_running


async def test_stop_on_an_idle_worker_returns() -> None:
    worker = Worker(JobQueue())
    await worker.stop()  # never started: nothing to do
    worker.register_handler("t", _noop)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            while not worker.is_running:
                await anyio.sleep(0.01)
            await worker.stop()
            assert not worker.is_running


async def _noop(ctx: JobContext) -> None:
    return None


async def test_cancelling_run_hands_running_jobs_back() -> None:
    queue = JobQueue()
    worker = Worker(queue)
    started = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        started.set()
        await anyio.sleep_forever()

    job_id = await queue.enqueue("t")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            tg.cancel_scope.cancel()
    job = await queue.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING
    assert not worker.is_running


async def test_burst_runs_everything_claimable_then_returns() -> None:
    queue = JobQueue()
    worker = Worker(queue, max_concurrent=4)
    ran: list[str] = []

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        ran.append(ctx.id)

    first = await queue.enqueue("t")
    chained = await queue.enqueue("t", depends_on=[first])  # claimable only after `first`
    others = [await queue.enqueue("t") for _ in range(10)]
    later = await queue.enqueue("t", delay=3600)
    with anyio.fail_after(5):
        await worker.run(burst=True)
    assert set(ran) == {first, chained, *others}
    job = await queue.get(later)
    assert job is not None and job.status is JobStatus.PENDING
    assert not worker.is_running


class FlakyBackend(MemoryBackend):
    """The memory backend with an outage switch: while down, every call fails as unavailable."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailable("the backend is down (test outage)")

    async def claim_pending_job(self, job_types: Any, **kwargs: Any) -> Any:
        self._check()
        return await super().claim_pending_job(job_types, **kwargs)

    async def finish_many(self, outcomes: Any, *, now: float) -> list[bool]:
        self._check()
        return await super().finish_many(outcomes, now=now)


async def test_a_backend_outage_does_not_stop_the_worker() -> None:
    backend = FlakyBackend()
    queue = JobQueue(backend=backend)
    worker = Worker(queue, poll_interval=0.05)
    finished = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        backend.down = True  # the outcome cannot be stored until it comes back
        finished.set()

    job_id = await queue.enqueue("t")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await finished.wait()
            await anyio.sleep(0.2)  # the outage lasts a while (the worker retries meanwhile)
            assert worker.is_running
            backend.down = False
            assert await wait_done(queue, job_id) is JobStatus.COMPLETE
            await worker.stop()


async def test_stop_right_after_starting_run_stops_it() -> None:
    worker = Worker(JobQueue())
    worker.register_handler("t", _noop)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)  # not begun yet when stop() is called
            await worker.stop()
    assert not worker.is_running


async def test_a_hard_stop_hands_back_every_claimed_job() -> None:
    queue = JobQueue()
    worker = Worker(queue, max_concurrent=4, drain_timeout=0)
    started = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        started.set()
        await anyio.sleep(0.01)

    for _ in range(200):
        await queue.enqueue("t")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            await worker.stop()
    stats = await queue.stats()
    assert stats.processing == 0  # none left for its lease to recover
    assert stats.pending + stats.complete == 200


class SlowClaimBackend(MemoryBackend):
    """The memory backend whose claims yield to the other tasks (as a real store's round trip
    does), the first one until ``gate`` is set; it counts the claims made after ``stopped``."""

    def __init__(self, gate: anyio.Event | None = None) -> None:
        super().__init__()
        self.gate = gate
        self.claiming = anyio.Event()
        self.stopped = False
        self.claims_after_stop = 0

    async def claim_pending_job(self, job_types: Any, **kwargs: Any) -> Any:
        self.claims_after_stop += self.stopped
        self.claiming.set()
        if self.gate is not None:
            await self.gate.wait()
            self.gate = None
        for _ in range(2):
            await anyio.lowlevel.checkpoint()
        return await super().claim_pending_job(job_types, **kwargs)


async def test_a_stop_ends_claiming_while_handlers_keep_becoming_idle() -> None:
    # Claims are shielded. With a backlog, handlers finish their jobs during each claim, so the
    # claimer always finds idle ones and never waits: it must still see the stop at once,
    # not claim on through the backlog while the handlers drain.
    backend = SlowClaimBackend()
    queue = JobQueue(backend=backend)
    worker = Worker(queue, max_concurrent=5)
    ran = 0
    after_stop = 0
    enough = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        nonlocal ran, after_stop
        ran += 1
        after_stop += backend.stopped
        if ran == 20:
            enough.set()
        for _ in range(ctx.data["steps"]):  # jobs of differing lengths: they end at all times
            await anyio.lowlevel.checkpoint()

    await queue.enqueue_many([{"job_type": "t", "data": {"steps": i % 4}} for i in range(500)])
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await enough.wait()
            backend.stopped = True
            await worker.stop()
    # The claim in flight and one begun while stop() reached the worker (one more for margin),
    # and their jobs with those already given; claiming on through the backlog made hundreds.
    assert backend.claims_after_stop <= 3, backend.claims_after_stop
    assert after_stop <= 4 * 5, after_stop
    stats = await queue.stats()
    assert stats.processing == 0 and stats.pending == 500 - ran


async def test_jobs_a_claim_brings_back_after_a_hard_stop_are_handed_back() -> None:
    # The handlers are cancelled (and gone) while a claim is in flight; the jobs it claimed
    # arrive after them and must go back to PENDING, not wait for their leases.
    gate = anyio.Event()
    backend = SlowClaimBackend(gate)
    queue = JobQueue(backend=backend)
    worker = Worker(queue, max_concurrent=4, lease=600)
    running = anyio.CancelScope()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        await anyio.lowlevel.checkpoint()

    async def run() -> None:
        with running:
            await worker.run()

    await queue.enqueue_many([{"job_type": "t"} for _ in range(10)])
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await backend.claiming.wait()
            running.cancel()  # run() itself cancelled: a hard stop
            await anyio.wait_all_tasks_blocked()  # the handlers have ended; the claim waits
            gate.set()
    stats = await queue.stats()
    assert stats.processing == 0
    assert stats.pending == 10


class BlinkingBackend(MemoryBackend):
    """The memory backend whose first read of a job fails as if the server blinked."""

    def __init__(self) -> None:
        super().__init__()
        self.blinked = False

    async def get(self, job_id: str, *, now: float) -> Any:
        if not self.blinked:
            self.blinked = True
            raise BackendUnavailable("blink (test outage)")
        return await super().get(job_id, now=now)


async def test_an_outage_while_reading_dependency_results_is_ridden_out() -> None:
    queue = JobQueue(backend=BlinkingBackend())
    worker = Worker(queue)
    seen: list[Any] = []

    @worker.handler("t")
    async def handle(ctx: JobContext) -> dict[str, Any]:
        seen.append(ctx.dependency_results)
        return {"n": len(seen)}

    first = await queue.enqueue("t")
    second = await queue.enqueue("t", depends_on=[first])
    with anyio.fail_after(5):
        await worker.run(burst=True)
    assert seen[1] == {first: {"n": 1}}
    job = await queue.get(second)
    assert job is not None
    assert job.status is JobStatus.COMPLETE
