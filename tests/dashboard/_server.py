"""The dashboard served by hypercorn on a free port of 127.0.0.1, in the test's event loop."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio

from jdobb_async_queue import JobQueue
from jdobb_async_queue.dashboard import serve


@asynccontextmanager
async def served(queue: JobQueue, **options: Any) -> AsyncIterator[str]:
    """Serve the dashboard until the block ends; yield its base URL.

    The listening socket is made here (port 0: the kernel picks a free one) and handed to
    hypercorn as ``fd://``: connections queue from the start, so nobody waits for a startup.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    fd = sock.detach()  # hypercorn owns (and closes) it from now on
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            partial(serve, queue, bind=[f"fd://{fd}"], shutdown_trigger=stop.wait, **options)
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop.set()
