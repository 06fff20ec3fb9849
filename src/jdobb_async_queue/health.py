"""Health checks for container probes, and the small HTTP endpoint a worker serves them on.

``jdobb-queue worker ... --health-port P`` serves ``GET /healthz``: **200** while the worker
is running (claiming, not stopping) and its store answered within :data:`PROBE_TIMEOUT`
seconds, **503** otherwise, with a one-line reason as the body. ``--metrics-port P`` serves
``GET /metrics`` the same way (see :mod:`jdobb_async_queue.metrics`); one port may serve both.

The endpoint is a deliberately small HTTP/1.0 responder on anyio streams (one GET, one
response, the connection closed), so a worker needs no web framework: probes and scrapers need
nothing more. For a full web app, mount :func:`jdobb_async_queue.metrics.QueueMetrics.asgi_app`
or the dashboard in your own ASGI server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import anyio
from anyio.abc import SocketStream, TaskStatus

from ._errors import JobQueueError
from ._queue import JobQueue
from ._worker import Worker

__all__ = ["PROBE_TIMEOUT", "Route", "check_store", "serve_http", "worker_health"]

#: Seconds the store has to answer a health probe.
PROBE_TIMEOUT = 2.0
#: Largest request head read, in bytes.
_MAX_HEAD = 8192

#: A route: returns ``(status, content type, body)``.
Route = Callable[[], Awaitable[tuple[int, str, bytes]]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


async def check_store(queue: JobQueue) -> str | None:
    """Ask the store a cheap question; return why it failed, or ``None`` if it answered.

    Never raises for a store that is down, closed or slow: that is the answer.
    """
    try:
        with anyio.fail_after(PROBE_TIMEOUT):
            await queue.backend.get("jdobb-health-probe", now=queue.clock())
    except TimeoutError:
        return f"the store did not answer within {PROBE_TIMEOUT:g}s"
    except JobQueueError as exc:
        return f"the store did not answer: {exc}"
    return None


def worker_health(worker: Worker) -> Route:
    """The ``/healthz`` route of ``worker``."""

    async def healthz() -> tuple[int, str, bytes]:
        if not worker.is_claiming:
            return 503, "text/plain", b"the worker is not claiming jobs (stopped or stopping)\n"
        problem = await check_store(worker.queue)
        if problem is not None:
            return 503, "text/plain", f"{problem}\n".encode()
        return 200, "text/plain", b"ok\n"

    return healthz


async def serve_http(
    routes: Mapping[str, Route],
    host: str,
    port: int,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET`` on ``routes`` (path -> route) until cancelled.

    Reports the bound port as started (useful with ``port=0``).
    """
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        bound = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started(bound)

        async def handle(stream: SocketStream) -> None:
            async with stream:
                with anyio.move_on_after(PROBE_TIMEOUT * 2):
                    await _respond(stream, routes)

        await listener.serve(handle)


async def _respond(stream: SocketStream, routes: Mapping[str, Route]) -> None:
    head = b""
    try:
        while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < _MAX_HEAD:
            head += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        return
    method, _, rest = head.partition(b" ")
    path = rest.partition(b" ")[0].decode("latin-1").partition("?")[0]
    route = routes.get(path)
    if route is None:
        status, kind, body = 404, "text/plain", b"not found\n"
    elif method != b"GET":
        status, kind, body = 405, "text/plain", b"GET only\n"
    else:
        status, kind, body = await route()
    reply = (
        f"HTTP/1.0 {status} {_REASONS.get(status, '')}\r\n"
        f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    try:
        await stream.send(reply + body)
    except (anyio.BrokenResourceError, OSError):
        pass  # the prober went away: nothing to tell it
