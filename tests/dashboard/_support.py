"""Helpers for the dashboard's tests: an httpx client on the ASGI app, a raw ASGI reader of
server-sent events (httpx's ASGI transport buffers whole responses), a worker in a task."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from starlette.types import ASGIApp, Message

from jdobb_async_queue import JobPriority, JobQueue, Worker


@asynccontextmanager
async def client(app: ASGIApp, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test", **kwargs) as c:
        yield c


def counts(html: str) -> dict[str, int]:
    """The overview's ``data-stat`` counters."""
    return {k: int(v) for k, v in re.findall(r'data-stat="(\w+)">(\d+)<', html)}


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-job-id="([^"]+)">', html)


class SSE:
    """Drive one GET of the app by hand and parse the event stream as it arrives."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path
        self.status: int | None = None
        self.events: list[tuple[str, Any]] = []
        self.ended = anyio.Event()
        self._buffer = ""
        self._disconnect = anyio.Event()
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, Any]](100)

    async def run(self) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"dash.test"), (b"accept", b"text/event-stream")],
            "client": ("127.0.0.1", 1),
            "server": ("dash.test", 80),
        }
        sent_request = False

        async def receive() -> Message:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                self._buffer += message.get("body", b"").decode()
                while "\n\n" in self._buffer:
                    block, self._buffer = self._buffer.split("\n\n", 1)
                    name, data = "message", None
                    for line in block.splitlines():
                        if line.startswith("event: "):
                            name = line[7:]
                        elif line.startswith("data: "):
                            data = json.loads(line[6:])
                    if data is not None:
                        self.events.append((name, data))
                        await self._send.send((name, data))
                if not message.get("more_body", False):
                    self.ended.set()
                    self._send.close()

        await self.app(scope, receive, send)
        self.ended.set()
        self._send.close()

    async def __aenter__(self) -> SSE:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self.run)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.disconnect()
        try:
            await self._tg.__aexit__(*exc)  # type: ignore[arg-type]
        finally:
            self._receive.close()
            self._send.close()

    async def next(self) -> tuple[str, Any]:
        return await self._receive.receive()

    def disconnect(self) -> None:
        self._disconnect.set()


async def finish(queue: JobQueue, job_type: str, *, fail: bool = False) -> str:
    """Enqueue, claim and end one job by hand; return its id."""
    job_id = await queue.enqueue(job_type, priority=JobPriority.HIGH)  # claimed before others
    job = await queue.claim([job_type])
    assert job is not None and job.id == job_id
    if fail:
        assert await queue.fail(job_id, "boom", retry=False)
    else:
        assert await queue.complete(job_id, {"ok": True})
    return job_id


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield worker
        finally:
            with anyio.fail_after(10):
                await worker.stop()
