"""``serve()``: hypercorn on the running loop (asyncio or trio), over real TCP."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack, aclosing

import anyio
import httpx
import pytest

from jdobb_async_queue import JobQueue
from jdobb_async_queue.dashboard._serve import running_on_trio

from ..conftest import QueueFactory
from ._server import served

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite-file"])
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_serve_runs_on_the_current_loop(make_queue: QueueFactory, anyio_backend: str) -> None:
    assert running_on_trio() is (anyio_backend == "trio")
    queue: JobQueue = make_queue()
    job_id = await queue.enqueue("a")
    assert await queue.claim(["a"]) is not None
    with anyio.fail_after(20):
        async with (
            served(queue, token="T", sample_interval=0.1) as url,
            httpx.AsyncClient(base_url=url) as c,
        ):
            r = await c.get("/")
            assert r.status_code == 200 and "Overview" in r.text
            assert (await c.get("/api/stats")).json()["stats"]["processing"] == 1
            async with AsyncExitStack() as stack:
                stream = await stack.enter_async_context(
                    c.stream("GET", f"/api/jobs/{job_id}/events")
                )
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = await stack.enter_async_context(aclosing(stream.aiter_lines()))
                seen: list[dict[str, object]] = []

                async def next_update() -> dict[str, object]:
                    async for line in lines:
                        if line.startswith("data: "):
                            data: dict[str, object] = json.loads(line[6:])
                            seen.append(data)
                            return data
                    raise AssertionError("the stream ended early")

                assert (await next_update())["status"] == "processing"
                await queue.update(job_id, 0.5)
                assert (await next_update())["progress"] == 0.5
                r = await c.post(
                    f"/api/jobs/{job_id}/cancel", headers={"authorization": "Bearer T"}
                )
                assert r.json() == {"ok": True}
                assert (await next_update())["status"] == "cancelled"
                assert (await next_update()) == {"job_id": job_id}  # the "end" event
                async for line in lines:  # then the server ends the response
                    assert not line.startswith("data: ")
            # The lifespan runs the sampler under hypercorn.
            while len((await c.get("/api/throughput")).json()["points"]) < 1:
                await anyio.sleep(0.05)
