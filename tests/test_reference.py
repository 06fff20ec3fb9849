"""The reference's Quick Example and the setup guide's patterns, run as written.

The Quick Example, the standalone worker and the FastAPI pattern call ``asyncio`` themselves, so
they run under asyncio only; each has a trio twin below that does the same with anyio. The
patterns that name ``redis://localhost`` get the test's own Redis server instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from jdobb_async_queue import Broadcaster, Job, JobContext, JobPriority, JobQueue, JobStatus, Worker

ROOT = Path(__file__).resolve().parents[1]


def test_quick_example_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> None:
        # Create queue
        queue = JobQueue(backend="memory")

        # Create worker
        worker = Worker(queue, job_types=["task"])

        @worker.handler("task")
        async def handle_task(ctx: JobContext) -> dict:
            print(f"Processing: {ctx.data}")
            await ctx.update(progress=0.5, message="Working...")
            return {"result": "done"}

        # Enqueue a job
        job_id = await queue.enqueue("task", data={"input": "test"})
        print(f"Enqueued: {job_id}")

        # Run worker (in real app, run in background)
        import asyncio

        worker_task = asyncio.create_task(worker.run())

        await asyncio.sleep(1)  # Let worker process

        await worker.stop()
        job = await queue.get(job_id)  # added: check what the example did
        await queue.close()
        assert worker_task.done()
        assert job is not None and job.status is JobStatus.COMPLETE
        assert job.results == {"result": "done"}
        assert job.message == "Working..."

    asyncio.run(main())
    out = capsys.readouterr().out
    assert "Enqueued: " in out
    assert "Processing: {'input': 'test'}" in out
    _ = JobPriority  # imported by the example


@pytest.mark.anyio
async def test_quick_example_on_both_loops() -> None:
    queue = JobQueue(backend="memory")
    worker = Worker(queue, job_types=["task"])

    @worker.handler("task")
    async def handle_task(ctx: JobContext) -> dict:
        await ctx.update(progress=0.5, message="Working...")
        return {"result": "done"}

    job_id = await queue.enqueue("task", data={"input": "test"})
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            statuses = [u.status async for u in Broadcaster(queue).subscribe(job_id)]
            await worker.stop()
    assert statuses[-1] is JobStatus.COMPLETE
    await queue.close()


# -- the testing pattern, as written ---------------------------------------------------------


@pytest.fixture
async def queue() -> AsyncIterator[JobQueue]:
    q = JobQueue(backend="memory")
    yield q
    await q.close()


@pytest.mark.anyio
async def test_job_lifecycle(queue: JobQueue) -> None:
    job_id = await queue.enqueue("test", data={"x": 1})
    job = await queue.claim(["test"])
    assert job.status == JobStatus.PROCESSING  # type: ignore[union-attr]
    await queue.complete(job_id, results={"y": 2})
    final = await queue.get(job_id)
    assert final.status == JobStatus.COMPLETE  # type: ignore[union-attr]
    assert isinstance(final, Job)


# -- the standalone worker, as written (Redis URL replaced by the test's server) --------------

STANDALONE = """
import asyncio
from jdobb_async_queue import JobQueue, Worker, JobContext

async def main():
    queue = JobQueue(backend="redis", url=URL, namespace=NAMESPACE)
    worker = Worker(queue, job_types=["task"])

    @worker.handler("task")
    async def handle(ctx: JobContext) -> dict:
        return {"done": True}

    try:
        await worker.run()
    except KeyboardInterrupt:
        await worker.stop()
    finally:
        await queue.close()

asyncio.run(main())
"""


@pytest.mark.anyio
async def test_standalone_worker_pattern(redis_url: str, anyio_backend: str) -> None:
    namespace = f"standalone-{anyio_backend}-{os.getpid()}"
    script = f"URL = {redis_url!r}\nNAMESPACE = {namespace!r}\n" + textwrap.dedent(STANDALONE)
    queue = JobQueue(backend="redis", url=redis_url, namespace=namespace)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        job_id = await queue.enqueue("task", data={})
        with anyio.fail_after(20):
            statuses = [u.status async for u in Broadcaster(queue).subscribe(job_id)]
        assert statuses[-1] is JobStatus.COMPLETE
        job = await queue.get(job_id)
        assert job is not None and job.results == {"done": True}
    finally:
        proc.send_signal(signal.SIGINT)
        with anyio.fail_after(20):
            while proc.poll() is None:
                await anyio.sleep(0.05)
        await queue.backend.drop_namespace()  # type: ignore[attr-defined]
        await queue.close()
        assert proc.stderr is not None
        proc.stderr.close()


# -- the FastAPI lifespan pattern, as written, through httpx's ASGI transport -----------------


def test_fastapi_pattern(redis_url: str) -> None:
    from contextlib import asynccontextmanager

    import httpx
    from asgi_lifespan import LifespanManager
    from fastapi import FastAPI

    namespace = f"fastapi-{os.getpid()}"
    queue: JobQueue
    worker: Worker

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        nonlocal queue, worker
        queue = JobQueue(backend="redis", url=redis_url, namespace=namespace)
        worker = Worker(queue, job_types=["task"])

        @worker.handler("task")
        async def handle(ctx: JobContext) -> dict:
            return {"done": True}

        worker_task = asyncio.create_task(worker.run())
        yield
        await worker.stop()
        await queue.backend.drop_namespace()  # type: ignore[attr-defined]  # test cleanup
        await queue.close()
        assert worker_task.done()

    app = FastAPI(lifespan=lifespan)

    @app.post("/jobs")
    async def create_job(data: dict):  # type: ignore[no-untyped-def]
        job_id = await queue.enqueue("task", data=data)
        return {"job_id": job_id}

    async def scenario() -> None:
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                response = await client.post("/jobs", json={"x": 1})
                assert response.status_code == 200
                job_id = response.json()["job_id"]
                with anyio.fail_after(10):
                    statuses = [u.status async for u in Broadcaster(queue).subscribe(job_id)]
                assert statuses[-1] is JobStatus.COMPLETE
                job = await queue.get(job_id)
                assert job is not None and job.data == {"x": 1}

    asyncio.run(scenario())


def test_examples_quickstart_runs_on_sqlite(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), f"sqlite:///{tmp_path}/q.db"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "Results: {'result': 'done'}" in out
