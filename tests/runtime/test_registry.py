"""The worker registry: running workers register, refresh and leave; dead ones drop out."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from jdobb_async_queue import JobQueue, Worker
from jdobb_async_queue._records import WorkerRecord
from jdobb_async_queue.backends.base import WORKER_TTL
from jdobb_async_queue.testing import MockClock
from jdobb_async_queue.testing.contract._support import WAIT, running

pytestmark = pytest.mark.anyio


async def test_a_running_worker_is_listed_until_it_stops(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    worker = Worker(queue, max_concurrent=3, poll_interval=0.05, worker_id="w-1")
    started = anyio.Event()
    release = anyio.Event()

    @worker.handler("t")
    async def t(ctx: Any) -> None:
        started.set()
        await release.wait()

    assert await queue.workers() == []
    async with running(worker):
        with anyio.fail_after(WAIT):
            while not await queue.workers():
                await anyio.sleep(0.01)
        (info,) = await queue.workers()
        assert info.id == "w-1"
        assert info.concurrency == 3
        assert info.job_types == ["t"]
        assert info.pid > 0 and info.host
        assert info.started_at <= info.heartbeat_at
        release.set()
    assert await queue.workers() == []


async def test_a_dead_worker_drops_out_after_the_ttl(make_queue: Any) -> None:
    clock = MockClock(1_700_000_000.0)
    queue: JobQueue = make_queue(clock=clock)
    record = WorkerRecord(id="dead", host="h", pid=1, started_at=clock(), concurrency=1)
    await queue.backend.register_worker(record, now=clock())
    assert [w.id for w in await queue.workers()] == ["dead"]
    clock.advance(WORKER_TTL - 1)
    assert [w.id for w in await queue.workers()] == ["dead"]
    clock.advance(2)
    assert await queue.workers() == []


async def test_workers_are_listed_oldest_first(make_queue: Any) -> None:
    clock = MockClock(1_700_000_000.0)
    queue: JobQueue = make_queue(clock=clock)
    for name, age in (("young", 0.0), ("old", -5.0)):
        record = WorkerRecord(
            id=name, host="h", pid=1, started_at=clock() + age, concurrency=2, job_types=["a"]
        )
        await queue.backend.register_worker(record, now=clock())
    assert [w.id for w in await queue.workers()] == ["old", "young"]
    await queue.backend.remove_worker("old")
    await queue.backend.remove_worker("unknown")
    assert [w.id for w in await queue.workers()] == ["young"]


_OTHER_PROCESS = """
import sys
import anyio
from jdobb_async_queue import JobQueue, Worker

async def main(url, namespace):
    async with JobQueue(backend=url, namespace=namespace) as queue:
        worker = Worker(queue, max_concurrent=4, worker_id="elsewhere", poll_interval=0.05)

        @worker.handler("x")
        async def x(ctx):
            return None

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            print("running", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes stdin
            await worker.stop()

anyio.run(main, sys.argv[1], sys.argv[2], backend=sys.argv[3])
"""


async def test_workers_of_other_processes_are_listed(
    make_queue: Any, backend_name: str, tmp_path: Any, anyio_backend: str, request: Any
) -> None:
    if backend_name in ("memory", "sqlite-memory"):
        pytest.skip("a store of this process only")
    import subprocess
    import sys

    queue: JobQueue = make_queue()
    if backend_name in ("redis", "postgres"):
        url = request.getfixturevalue("redis_url" if backend_name == "redis" else "pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    script = tmp_path / "other.py"
    script.write_text(_OTHER_PROCESS)
    proc = subprocess.Popen(
        [sys.executable, str(script), url, queue.namespace, anyio_backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        with anyio.fail_after(WAIT * 2):
            while not [w for w in await queue.workers() if w.id == "elsewhere"]:
                await anyio.sleep(0.05)
        (info,) = [w for w in await queue.workers() if w.id == "elsewhere"]
        assert info.pid == proc.pid
        assert info.concurrency == 4
        assert info.job_types == ["x"]
        assert proc.stdin is not None
        proc.stdin.close()
        with anyio.fail_after(WAIT * 2):
            while [w for w in await queue.workers() if w.id == "elsewhere"]:
                await anyio.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

