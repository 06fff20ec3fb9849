"""The Redis backend's two ways of running its Lua code: a function library (Redis 7+, ``FCALL``)
and scripts (``EVALSHA``), which serve where functions are unavailable. Both are made from the
same sources (``redis/scripts.py``); these tests check that the backend picks the library where
it can, falls back where it cannot (a user without ``fcall``), reloads it after it was deleted,
and that one workload ends in the same states either way. Under asyncio and trio.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from jdobb_async_queue import JobContext, JobQueue, JobStatus, Worker
from jdobb_async_queue.backends.redis import RedisBackend, acl_rule
from jdobb_async_queue.backends.redis.resp import RedisClient
from jdobb_async_queue.testing import MockClock

pytestmark = pytest.mark.anyio

WAIT = 10.0


@pytest.fixture
def namespace() -> str:
    return f"test-functions-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[RedisClient]:
    async with RedisClient.from_url(redis_url) as client:
        yield client


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[Callable[..., JobQueue]]:
    opened: list[JobQueue] = []

    def make(namespace: str, url: str = redis_url, **kwargs: Any) -> JobQueue:
        q = JobQueue(backend="redis", url=url, namespace=namespace, **kwargs)
        opened.append(q)
        return q

    yield make
    for q in opened:
        cleaner = RedisBackend(redis_url, namespace=q.backend.namespace)  # type: ignore[attr-defined]
        await cleaner.drop_namespace()
        await cleaner.aclose()
        await q.close()


def calls_of(queue: JobQueue) -> Any:
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    return backend._calls


async def workload(queue: JobQueue, clock: MockClock) -> list[tuple[str, Any]]:
    """Jobs through most transitions; returns what each ended as."""
    a = await queue.enqueue("t", {"i": 1}, unique_key="u", max_retries=1, retry_delay=1)
    b = await queue.enqueue("t", depends_on=[a])
    c = await queue.enqueue("t", delay=5)
    d = await queue.enqueue("u", depends_on=[b])
    e = await queue.enqueue("t")
    assert await queue.enqueue("t", unique_key="u") == a
    await queue.cancel(e)
    job = await queue.claim(["t"])
    assert job is not None and job.id == a
    await queue.fail(a, "flaky")  # retried in 1 s
    clock.advance(6)
    job = await queue.claim(["t"])
    assert job is not None and job.id == a and job.attempts == 2
    await queue.update(a, progress=0.5, message="half")
    await queue.complete(a, {"ok": True})
    job = await queue.claim(["t"])
    assert job is not None and job.id == b
    await queue.fail(b, "boom", retry=False)  # cancels d
    job = await queue.claim(["t"])
    assert job is not None and job.id == c
    await queue.complete(c)
    ended = []
    names = {a: "a", b: "b", c: "c", d: "d", e: "e"}
    for job_id in names:
        found = await queue.get(job_id)
        assert found is not None
        error = found.error
        for other, name in names.items():
            error = error and error.replace(other, name)  # ids differ from run to run
        ended.append((found.status.value, found.results, error, found.attempts))
    stats = (await queue.stats()).model_dump()
    return [*ended, ("stats", stats)]  # type: ignore[list-item]


async def test_functions_and_scripts_end_a_workload_in_the_same_states(
    queues: Callable[..., JobQueue], namespace: str
) -> None:
    outcomes = []
    for use_functions in (True, False):
        clock = MockClock()
        queue = queues(f"{namespace}-{use_functions}", clock=clock)
        if not use_functions:
            calls_of(queue).functions = False
        outcomes.append(await workload(queue, clock))
        assert calls_of(queue).functions is use_functions
    assert outcomes[0] == outcomes[1]


async def test_a_deleted_library_is_loaded_again(
    queues: Callable[..., JobQueue], admin: RedisClient, namespace: str
) -> None:
    queue = queues(namespace)
    await queue.enqueue("t")
    assert calls_of(queue).functions is True
    library = queue.backend._scripts.library.name  # type: ignore[attr-defined]
    assert await admin.execute("FUNCTION", "DELETE", library) == b"OK"
    await queue.enqueue("t")
    assert (await queue.stats()).pending == 2
    assert calls_of(queue).functions is True


async def test_a_user_without_fcall_runs_the_scripts(
    queues: Callable[..., JobQueue], admin: RedisClient, redis_url: str, namespace: str
) -> None:
    user, password = f"jdobb-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    rule = [
        w
        for w in acl_rule(user, password, namespace).split()
        if w not in ("+fcall", "+function|load")
    ]
    await admin.execute("ACL", "SETUSER", *rule)
    host = redis_url.split("://", 1)[1].split("/", 1)[0]
    try:
        queue = queues(namespace, url=f"redis://{user}:{password}@{host}/0")
        worker = Worker(queue, poll_interval=0.2)
        done = anyio.Event()

        @worker.handler("t")
        async def handle(ctx: JobContext) -> dict[str, int]:
            done.set()
            return {"ok": 1}

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                job_id = await queue.enqueue("t")
                await done.wait()
                while (job := await queue.get(job_id)) and job.status is not JobStatus.COMPLETE:
                    await anyio.sleep(0.02)
                await worker.stop()
        assert calls_of(queue).functions is False
        assert job is not None
        assert job.results == {"ok": 1}
    finally:
        await admin.execute("ACL", "DELUSER", user)
