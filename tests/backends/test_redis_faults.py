"""F3/F4: the Redis server restarted (same data, and empty) and ``CLIENT KILL`` every second
under load, on a private redis-server the test starts (never the shared one).

Workers resume within 5 s of the server's return, no job is lost, no deleted job comes back.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import anyio
import pytest

from jdobb_async_queue import JobContext, JobQueue, Worker
from jdobb_async_queue.backends.redis.resp import RedisClient

from .._redis_server import RedisServer

pytestmark = pytest.mark.anyio

RESUME = 5.0  # seconds: workers must be back at work this soon after the server returns
OUTAGE = 30.0  # seconds the long outage lasts


@pytest.fixture
def server() -> Iterator[RedisServer]:
    s = RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    s.start()
    try:
        yield s
    finally:
        s.close()


def _queue(server: RedisServer, namespace: str) -> JobQueue:
    return JobQueue(backend="redis", url=server.url, namespace=namespace)


async def _work_until(queue: JobQueue, worker: Worker, done: Counter[str], n: int) -> None:
    with anyio.fail_after(30):
        while len(done) < n:
            await anyio.sleep(0.01)


@pytest.mark.parametrize(
    ("keep_data", "outage"),
    [(True, 0.0), (False, 0.0), (True, OUTAGE)],
    ids=["same-data", "empty", f"same-data-after-{OUTAGE:g}s-down"],
)
async def test_workers_resume_after_a_server_restart(
    server: RedisServer, keep_data: bool, outage: float
) -> None:
    namespace = f"faults-{uuid.uuid4().hex[:8]}"
    queue = _queue(server, namespace)
    worker = Worker(queue, poll_interval=0.5, max_concurrent=4, lease=2)
    done: Counter[str] = Counter()
    progressed = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        done[ctx.id] += 1
        progressed.set()
        await anyio.sleep(0.005)

    first = await queue.enqueue_many([{"job_type": "t"} for _ in range(50)])
    deleted = await queue.enqueue("never", job_id=f"deleted-{uuid.uuid4().hex[:6]}")
    assert await queue.cancel(deleted)
    assert await queue.purge(["cancelled"]) == 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await _work_until(queue, worker, done, 10)

        def restart() -> None:
            server.stop()
            time.sleep(outage)  # the server stays down this long: the outage itself
            if not keep_data:
                for path in server.directory.iterdir():
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
            server.start()

        await anyio.to_thread.run_sync(restart)
        progressed = anyio.Event()
        second = await queue.enqueue_many([{"job_type": "t"} for _ in range(50)])
        with anyio.fail_after(RESUME):
            await progressed.wait()  # back at work within 5 s of the server's return
        expected = set(second) | (set(first) if keep_data else set())
        with anyio.fail_after(30):
            while not expected <= set(done):
                await anyio.sleep(0.02)
        await worker.stop()
    assert await queue.get(deleted) is None  # a deleted job never comes back
    if keep_data:
        assert set(first) <= set(done)  # none lost (AOF, fsync always)
    await queue.close()


async def test_client_kill_every_second_under_load(server: RedisServer) -> None:
    namespace = f"faults-{uuid.uuid4().hex[:8]}"
    queue = _queue(server, namespace)
    workers = [Worker(queue, poll_interval=0.5, max_concurrent=4, lease=2) for _ in range(2)]
    done: Counter[str] = Counter()

    for worker in workers:

        @worker.handler("t")
        async def handle(ctx: JobContext) -> None:
            done[ctx.id] += 1
            await anyio.sleep(0.01)

    ids = await queue.enqueue_many([{"job_type": "t"} for _ in range(300)])
    async with RedisClient.from_url(server.url) as admin, anyio.create_task_group() as tg:
        for worker in workers:
            tg.start_soon(worker.run)

        async def killer() -> None:
            while True:
                await anyio.sleep(1)
                await admin.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                await admin.execute("CLIENT", "KILL", "TYPE", "pubsub")

        tg.start_soon(killer)
        with anyio.fail_after(60):
            while (await queue.stats()).complete < len(ids):
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    for worker in workers:
        with anyio.fail_after(10):
            await worker.stop()
    assert set(done) == set(ids)  # none lost (a job may run twice: a lost reply, a lease)
    stats = await queue.stats()
    assert stats.complete == len(ids) and stats.processing == 0 and stats.pending == 0
    await queue.close()
