"""Hand-offs on the Redis backend: jobs claimed for an idle (parked) worker by their enqueue.

A registered worker whose claim leaves handlers idle is parked; the enqueue that makes a job
claimable claims it for that worker and publishes it, so the worker starts it without a claim
round trip. These tests drive the backend directly (register, claim, enqueue from another
queue), so each step is deterministic, and then check the same path in a running Worker.
Under asyncio and trio, on the session's redis-server, each test in a namespace of its own.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest

from jdobb_async_queue import JobContext, JobQueue, JobStatus, Worker
from jdobb_async_queue._records import WorkerRecord
from jdobb_async_queue.backends.base import Notice
from jdobb_async_queue.backends.redis import RedisBackend
from jdobb_async_queue.backends.redis.resp import RedisClient
from jdobb_async_queue.testing import MockClock

pytestmark = pytest.mark.anyio

WAIT = 10.0  # seconds: the bound of every wait


@pytest.fixture
def namespace() -> str:
    return f"test-handoff-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[RedisClient]:
    async with RedisClient.from_url(redis_url) as client:
        yield client


@pytest.fixture
async def queues(redis_url: str, namespace: str) -> AsyncIterator[Callable[..., JobQueue]]:
    """Queues (each with a backend of its own) in the test's namespace; dropped at the end."""
    opened: list[JobQueue] = []

    def make(**kwargs: Any) -> JobQueue:
        q = JobQueue(backend="redis", url=redis_url, namespace=namespace, **kwargs)
        opened.append(q)
        return q

    yield make
    cleaner = RedisBackend(redis_url, namespace=namespace)
    await cleaner.drop_namespace()
    await cleaner.aclose()
    for q in opened:
        await q.close()


class CountingCalls:
    """Counts (and can hold back) the scripts a backend runs, by name."""

    def __init__(self, backend: RedisBackend) -> None:
        self._script = backend._calls.script
        self._names = {
            id(getattr(backend._scripts, n)): n for n in type(backend._scripts).__dataclass_fields__
        }
        self.counts: Counter[str] = Counter()
        self.gate: anyio.Event | None = None  # while set to an unset event, claims wait for it
        backend._calls.script = self  # type: ignore[method-assign]

    async def __call__(self, script: Any, keys: Any, args: Any, **kwargs: Any) -> Any:
        name = self._names[id(script)]
        self.counts[name] += 1
        if name == "claim" and self.gate is not None:
            await self.gate.wait()
        return await self._script(script, keys, args, **kwargs)


def backend_of(queue: JobQueue) -> RedisBackend:
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    return backend


async def register(backend: RedisBackend, worker_id: str, now: float) -> None:
    record = WorkerRecord(id=worker_id, host="here", pid=1, started_at=now, concurrency=2)
    await backend.register_worker(record, now=now)


@asynccontextmanager
async def parked(
    queue: JobQueue, worker_id: str, credit: int, types: list[str] | None = None
) -> AsyncIterator[Callable[[], AbstractAsyncContextManager[Notice]]]:
    """``worker_id`` registered on ``queue``'s backend, listening, and parked with ``credit``
    idle handlers; yields ``next_notice()``, which reads the pub/sub connection (delivering
    hand-offs into the worker's inbox) until the next notice."""
    backend = backend_of(queue)
    await register(backend, worker_id, queue.clock())
    async with backend.listen() as notices:
        claimed = await backend.claim_pending_job(
            types or ["t"], limit=credit, worker_id=worker_id, lease=30, now=queue.clock()
        )
        assert claimed == []

        @asynccontextmanager
        async def next_notice() -> AsyncIterator[Notice]:
            with anyio.fail_after(WAIT):
                yield await notices.__anext__()

        yield next_notice


async def park_credit(admin: RedisClient, namespace: str, worker_id: str) -> int | None:
    credit = await admin.execute("HGET", f"jdobb:{{{namespace}}}:park:{worker_id}", "credit")
    return None if credit is None else int(credit)


async def claim(queue: JobQueue, worker_id: str, limit: int = 2) -> list[str]:
    records = await backend_of(queue).claim_pending_job(
        ["t"], limit=limit, worker_id=worker_id, lease=30, now=queue.clock()
    )
    return [r.id for r in records]


async def test_an_idle_worker_is_handed_new_jobs_by_their_enqueue(
    queues: Callable[..., JobQueue], admin: RedisClient, namespace: str
) -> None:
    worker_q, producer = queues(), queues()
    calls = CountingCalls(backend_of(worker_q))
    async with parked(worker_q, "w1", credit=2) as next_notice:
        assert await park_credit(admin, namespace, "w1") == 2
        job_id = await producer.enqueue("t", {"x": 1})
        # The enqueue itself claimed it for the parked worker: no claim of the worker's yet.
        job = await producer.get(job_id)
        assert job is not None
        assert (job.status, job.worker_id, job.attempts) == (JobStatus.PROCESSING, "w1", 1)
        assert await park_credit(admin, namespace, "w1") == 1
        async with next_notice() as notice:
            assert notice.kind == "jobs"
        before = calls.counts["claim"]
        records = await backend_of(worker_q).claim_pending_job(
            ["t"], limit=2, worker_id="w1", lease=30, now=worker_q.clock()
        )
        assert calls.counts["claim"] == before  # taken from the inbox: no round trip
        assert [(r.id, r.fence, r.status, r.data) for r in records] == [
            (job_id, 1, "processing", {"x": 1})
        ]
        # The next claim confirms it and parks the worker again with what is still idle.
        assert await claim(worker_q, "w1", limit=1) == []
        assert await park_credit(admin, namespace, "w1") == 1
        assert await admin.execute("EXISTS", f"jdobb:{{{namespace}}}:handed:w1") == 0


async def test_handoffs_follow_credit_and_claim_order(
    queues: Callable[..., JobQueue], admin: RedisClient, namespace: str
) -> None:
    clock = MockClock()
    worker_q, producer = queues(clock=clock), queues(clock=clock)
    async with parked(worker_q, "w1", credit=2) as next_notice:
        scheduled = await producer.enqueue("t", delay=5)
        clock.advance(10)  # due now, but nobody has claimed since
        later = await producer.enqueue_many([{"job_type": "t"} for _ in range(3)])
        statuses = {j: (await producer.get(j)).status for j in [scheduled, *later]}  # type: ignore[union-attr]
        # Credit for two: the job that came due first, then the oldest new one.
        assert statuses == {
            scheduled: JobStatus.PROCESSING,
            later[0]: JobStatus.PROCESSING,
            later[1]: JobStatus.PENDING,
            later[2]: JobStatus.PENDING,
        }
        assert await park_credit(admin, namespace, "w1") is None  # no credit left: unparked
        inbox = backend_of(worker_q)._inboxes["w1"]
        while len(inbox) < 2:  # the scheduled job's notice may come first
            async with next_notice():
                pass
        assert sorted(await claim(worker_q, "w1", limit=5)) == sorted([scheduled, later[0]])
        # The next claim is an ordinary one: the rest, in order.
        assert await claim(worker_q, "w1", limit=5) == later[1:]


async def test_a_lost_handoff_is_handed_again_by_the_next_claim(
    queues: Callable[..., JobQueue],
) -> None:
    worker_q, producer = queues(), queues()
    backend = backend_of(worker_q)
    async with parked(worker_q, "w1", credit=2) as next_notice:
        inbox = backend._inboxes["w1"]
        lost: list[Any] = []
        offer = inbox.offer
        inbox.offer = lost.extend  # type: ignore[method-assign,assignment]  # never arrives
        job_id = await producer.enqueue("t")
        async with next_notice():
            pass
        assert len(lost) == 1
        again = await backend.claim_pending_job(
            ["t"], limit=2, worker_id="w1", lease=30, now=worker_q.clock()
        )
        assert [(r.id, r.fence, r.attempts) for r in again] == [(job_id, 1, 1)]
        # A late copy of the message changes nothing: the job was delivered once.
        inbox.offer = offer  # type: ignore[method-assign]
        inbox.offer(lost)
        assert await claim(worker_q, "w1") == []
        job = await producer.get(job_id)
        assert job is not None
        assert (job.status, job.attempts) == (JobStatus.PROCESSING, 1)


async def test_a_removed_worker_hands_back_what_it_did_not_take(
    queues: Callable[..., JobQueue], admin: RedisClient, namespace: str
) -> None:
    worker_q, producer = queues(), queues()
    async with parked(worker_q, "w1", credit=2) as next_notice:
        job_id = await producer.enqueue("t")
        async with next_notice():
            pass  # in w1's inbox now, not taken
        await backend_of(worker_q).remove_worker("w1")
    job = await producer.get(job_id)
    assert job is not None
    assert (job.status, job.attempts, job.worker_id) == (JobStatus.PENDING, 0, None)
    assert await park_credit(admin, namespace, "w1") is None
    assert await claim(producer, "w2") == [job_id]


async def test_a_worker_whose_connection_is_gone_is_not_handed_jobs(
    queues: Callable[..., JobQueue], admin: RedisClient, namespace: str
) -> None:
    worker_q, producer = queues(), queues()
    async with parked(worker_q, "w1", credit=2):
        pass
    await worker_q.close()  # its pub/sub connection closes: as if the process had died
    assert await park_credit(admin, namespace, "w1") == 2
    job_id = await producer.enqueue("t")
    job = await producer.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert await park_credit(admin, namespace, "w1") is None  # found gone, unparked


async def test_claims_of_unregistered_workers_never_park(
    queues: Callable[..., JobQueue], admin: RedisClient, namespace: str
) -> None:
    queue = queues()
    assert await claim(queue, "manual") == []
    assert await park_credit(admin, namespace, "manual") is None
    job_id = await queue.enqueue("t")
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PENDING


async def test_a_running_worker_starts_a_handed_job_without_claiming(
    queues: Callable[..., JobQueue], admin: RedisClient, namespace: str
) -> None:
    queue, producer = queues(), queues()
    worker = Worker(queue, max_concurrent=2, poll_interval=30)
    calls = CountingCalls(backend_of(queue))
    started, release = anyio.Event(), anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> dict[str, int]:
        started.set()
        await release.wait()
        return {"n": ctx.data["n"]}

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            while await park_credit(admin, namespace, worker.worker_id) != 2:
                await anyio.sleep(0.01)  # another client's view: nothing to wait on here
            calls.gate = anyio.Event()  # from now on, the worker's claims cannot get through
            t0 = time.perf_counter()
            job_id = await producer.enqueue("t", {"n": 7})
            await started.wait()  # so it came by hand-off
            latency = time.perf_counter() - t0
            calls.gate.set()
            release.set()
            while (job := await producer.get(job_id)) and job.status is not JobStatus.COMPLETE:
                await anyio.sleep(0.01)
            await worker.stop()
    assert job is not None
    assert job.results == {"n": 7}
    assert job.attempts == 1
    assert latency < WAIT
    # Stopped: unparked, nothing left handed.
    assert await park_credit(admin, namespace, worker.worker_id) is None
    assert await admin.execute("EXISTS", f"jdobb:{{{namespace}}}:handed:{worker.worker_id}") == 0
