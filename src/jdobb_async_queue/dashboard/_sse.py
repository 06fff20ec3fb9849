"""Server-sent events: a job's updates from the :class:`~jdobb_async_queue.Broadcaster`."""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import anyio
from anyio.abc import ObjectSendStream
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._broadcast import Broadcaster
from .._errors import JobNotFoundError
from .._models import JobUpdate
from .._queue import JobQueue

__all__ = ["JobEvents", "KEEPALIVE"]

#: Seconds between keep-alive comments while a job is quiet (proxies close idle streams).
KEEPALIVE = 15.0


def update_json(update: JobUpdate) -> dict[str, Any]:
    out: dict[str, Any] = update.model_dump(mode="json")
    return out


def event(name: str, data: object) -> bytes:
    payload = json.dumps(data, separators=(",", ":"), default=str)
    return f"event: {name}\ndata: {payload}\n\n".encode()


#: Events waiting for a slow client before the follower waits too.
SSE_BUFFER = 16


class JobEvents(Response):
    """An ASGI response that streams ``update`` events for one job until it ends (then an
    ``end`` event), or a ``gone`` event if it is deleted; it stops when the client leaves.

    Written as a plain ASGI callable rather than a generator-fed streaming response, so the
    subscription lives in a task of its own and is closed there, on asyncio and trio alike.
    """

    def __init__(self, queue: JobQueue, job_id: str, *, keepalive: float = KEEPALIVE) -> None:
        super().__init__(media_type="text/event-stream")
        self.queue = queue
        self.job_id = job_id
        self.keepalive = keepalive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        # A small buffer: a slow client holds up the follower, and the Broadcaster (bounded,
        # dropping the oldest progress) absorbs the rest.
        out, inbox = anyio.create_memory_object_stream[bytes](SSE_BUFFER)
        with out, inbox:  # closed here even if a task never got to start
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                tg.start_soon(self._follow, out)
                while True:
                    chunk = b": keep-alive\n\n"
                    with anyio.move_on_after(self.keepalive):
                        try:
                            chunk = await inbox.receive()
                        except anyio.EndOfStream:
                            break
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()

    async def _follow(self, out: ObjectSendStream[bytes]) -> None:
        async with out:
            try:
                async with aclosing(Broadcaster(self.queue).subscribe(self.job_id)) as updates:
                    async for update in updates:
                        await out.send(event("update", update_json(update)))
            except JobNotFoundError:
                await out.send(event("gone", {"job_id": self.job_id}))
                return
            await out.send(event("end", {"job_id": self.job_id}))
