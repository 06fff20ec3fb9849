"""The side channel every handler reports through: one command per job on the control Redis.

The control server is the bench's own redis-server (never the one under test). A handler of a
backlog job sends ``INCR done``; the handler whose INCR reaches the backlog's size also pushes
``finished`` (its time and the worker process's CPU time). A handler of a latency job sends
``RPUSH starts <time.monotonic()>`` instead, recorded on its first line. So every library, and
every bare baseline, pays exactly one Redis command per job, from the worker process.

Async handlers (jdobb, arq, SAQ, streaq, taskiq, PgQueuer, procrastinate, dbjobq) share one
pipelined anyio + hiredis connection, :class:`AsyncRedis` (asyncio or trio); thread-based
handlers (dramatiq, huey, RQ, GigQ) use redis-py's thread-safe client, hiredis-parsed.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

# the control keys
DONE = "bench:done"  # INCR per backlog job
FINISHED = "bench:finished"  # "<monotonic> <process_time>" when DONE reaches the target
STARTS = "bench:starts"  # one monotonic start time per latency job
STARTED = "bench:started"  # "<monotonic> <process_time>" as the worker starts on the backlog
GO = "bench:go"  # the backlog size: the worker may start
ENQUEUED = "bench:enqueued"  # the producer's enqueue figures (JSON)
LATENCY_GO = "bench:latency-go"  # the producer may start its latency phase
WORKER_READY = "bench:worker-ready"  # the worker process has imported and is waiting for GO

_EMPTY = object()

#: set by the worker process before its library starts
target = 0
_async: AsyncRedis | None = None
_sync: Any = None


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def pack(args: tuple[Any, ...]) -> bytes:
    """One RESP command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class AsyncRedis:
    """A minimal pipelined Redis client on one anyio stream (asyncio or trio).

    Concurrent callers share the connection. A caller files its slot and its command in the
    write buffer together (so slots and replies stay in order); the first one to find no flush
    under way yields once, so that callers ready in the same turn join the buffer, and sends it
    all in one write (and again, until the buffer stays empty). Then each takes the receive lock and reads replies until its own has
    come, filing later callers' replies on the way.
    """

    def __init__(self, stream: Any) -> None:
        import anyio
        import hiredis

        self._stream = stream
        self._reader = hiredis.Reader()
        self._error = hiredis.ReplyError
        self._recv = anyio.Lock()
        self._pending: deque[list[Any]] = deque()
        self._buffer: list[bytes] = []
        self._flushing = False

    @classmethod
    async def connect(cls, url: str) -> AsyncRedis:
        import anyio

        host, port = _address(url)
        return cls(await anyio.connect_tcp(host, port))

    async def call(self, *args: Any) -> Any:
        import anyio

        slot = [_EMPTY]
        self._pending.append(slot)
        self._buffer.append(pack(args))
        if not self._flushing:
            self._flushing = True
            try:
                await anyio.lowlevel.checkpoint()
                while self._buffer:  # what callers filed during a send goes in the next one
                    data, self._buffer = b"".join(self._buffer), []
                    await self._stream.send(data)
            finally:
                self._flushing = False
        async with self._recv:
            while slot[0] is _EMPTY:
                self._reader.feed(await self._stream.receive())
                while (reply := self._reader.gets()) is not False:
                    self._pending.popleft()[0] = reply
        if isinstance(slot[0], self._error):
            raise slot[0]
        return slot[0]

    async def aclose(self) -> None:
        await self._stream.aclose()


def sync_client(url: str) -> Any:
    """redis-py's client (thread-safe, hiredis parser when installed)."""
    import redis

    return redis.Redis.from_url(url)


def open_sync(url: str) -> None:
    """Connect the thread-based handlers' client (in the worker process)."""
    global _sync
    _sync = sync_client(url)


async def open_async(url: str) -> None:
    """Connect the async handlers' client, inside the worker's event loop."""
    global _async
    _async = await AsyncRedis.connect(url)


def _stamp() -> str:
    return f"{time.monotonic()!r} {time.process_time()!r}"


async def hit(lat: Any) -> None:
    """What an async handler does: one command on the control server."""
    if lat:
        await _async.call("RPUSH", STARTS, repr(time.monotonic()))  # type: ignore[union-attr]
        return
    if await _async.call("INCR", DONE) == target:  # type: ignore[union-attr]
        await _async.call("RPUSH", FINISHED, _stamp())  # type: ignore[union-attr]


def hit_sync(lat: Any) -> None:
    """What a thread-based handler does: one command on the control server."""
    if lat:
        _sync.rpush(STARTS, repr(time.monotonic()))
        return
    if _sync.incr(DONE) == target:
        _sync.rpush(FINISHED, _stamp())


def hit_batch(pipe: Any, lats: list[Any]) -> None:
    """The bare baselines: the same one command per job, pipelined per claimed batch."""
    for lat in lats:
        if lat:
            pipe.rpush(STARTS, repr(time.monotonic()))
        else:
            pipe.incr(DONE)
    replies = pipe.execute()
    if any(not lat and n == target for lat, n in zip(lats, replies, strict=True)):
        _sync.rpush(FINISHED, _stamp())
