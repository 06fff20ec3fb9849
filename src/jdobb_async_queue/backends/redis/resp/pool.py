"""The client, :class:`RedisClient`: a few connections shared by any number of concurrent callers.

How concurrent callers share a few connections, without a background task
--------------------------------------------------------------------------
A :class:`RedisClient` owns a pool of at most ``pool_size`` connections. A caller who finds a free
connection (or room to open one) becomes its *leader*: it writes its command and reads the reply
itself, so a single caller pays for nothing but the round trip. Callers who arrive while every
connection is busy queue their already-encoded commands and wait on an event. When a leader is done
it hands its connection to the first waiter, who writes *everything that has piled up* as one
write (one pipeline), reads the replies in order and hands each waiter its own; concurrent calls so
pipeline by themselves.

Replies are matched to callers by position: each connection keeps the requests whose replies are
still due, in the order they were written. Whoever reads (the *reader*) must never stop in the
middle of that queue without someone taking over, or the connection would be out of step:

* a reader whose own reply is in does not wait on the network for the others: it passes reading to
  the next caller still waiting for a reply on that connection (who wakes and carries on);
* a reader that is cancelled (or times out) passes reading on the same way; its own reply is read
  and dropped when it comes. If nobody is left waiting for a reply, the connection is closed: a
  late reply (a cancelled ``BLPOP``) could otherwise reach the next caller;
* a write to the socket that fails or is cancelled leaves an unknown number of bytes on the wire:
  the connection is closed and every caller still waiting for a reply on it gets
  :class:`RedisConnectionError`. A leader writing other callers' commands shields that write
  (bounded by the command timeout, or 30 s), so one caller's cancellation cannot fail the others.

Failures and reconnects
-----------------------
A connection that breaks is closed and forgotten, and the idle ones are closed with it (they most
likely died of the same server restart); the next call opens a new one, retrying with exponential
backoff (with jitter) up to ``connect_attempts`` times before raising :class:`RedisConnectionError`.
A command that was written but whose reply never came is *not* sent again: Redis cannot say whether
it ran, so the caller gets :class:`RedisConnectionError` and decides whether running it again is
safe. In particular, the call that first meets a restarted server fails that way (the other idle
connections are then dropped unused).

Timeouts
--------
Connecting has a timeout (``connect_timeout``, per attempt, AUTH included). Commands have none by
default: a cancel scope per call costs 10-20 us, a sizeable part of a round trip, so
``command_timeout`` and the per-call ``timeout=`` are opt-in (a caller's own ``anyio.fail_after``
works just as well and is equally safe). A server that vanished without a word is still noticed:
TCP connections get keepalive and, on Linux, ``TCP_USER_TIMEOUT`` (about 30 s).
"""

from __future__ import annotations

import math
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel

from .connection import (
    IO_ERRORS,
    NEED_DATA,
    READ_SIZE,
    WRITE_LIMIT,
    Connection,
    RedisArg,
    connect,
    drop_stream,
    encode,
    is_permanent,
)
from .errors import (
    InvalidRedisURL,
    RedisConnectionError,
    RedisReplyError,
    RedisTimeoutError,
    RedisTransportError,
)
from .pubsub import PubSub
from .script import Library, Script, fcall_payload, is_no_function, is_noscript, script_payload
from .url import RedisAddress, parse_redis_url

__all__ = ["RedisClient", "Request"]


# Request states. QUEUED: waiting for a connection. INFLIGHT: written, reply due. LEAD: handed a
# connection (or the right to open one) to write what has piled up. READ: handed the duty to read
# a connection's due replies. DONE: replies (or error) delivered. ABANDONED: its caller is gone;
# its replies are read and dropped.
_QUEUED, _INFLIGHT, _LEAD, _READ, _DONE, _ABANDONED = range(6)


class Request:
    """One caller's encoded command(s), and what becomes of them: its replies or its error."""

    __slots__ = ("conn", "count", "error", "event", "payload", "replies", "state")

    error: RedisTransportError | None

    def __init__(self, payload: bytes, count: int) -> None:
        self.payload = payload
        self.count = count
        self.replies: list[Any] = []
        self.state = _INFLIGHT
        self.event: anyio.Event | None = None  # only for callers that have to wait
        self.conn: Connection | None = None  # set with LEAD (None: open one) and READ
        self.error = None

    def wake(self, state: int, conn: Connection | None = None) -> None:
        self.state = state
        self.conn = conn
        if self.event is not None:
            self.event.set()

    def fail(self, error: RedisTransportError) -> None:
        self.error = error
        self.wake(_DONE)


class RedisClient:
    """A small pool of Redis connections shared by any number of concurrent callers.

    Nothing connects until the first call. Use ``async with`` or call :meth:`aclose`.

    :param address: where to connect (see :func:`parse_redis_url`)
    :param pool_size: the most connections the pool opens; callers beyond that queue their
        commands, and the next free connection sends all of them as one pipeline
    :param connect_timeout: seconds for one connection attempt, TLS handshake and ``AUTH``
        included (``None``: no limit)
    :param command_timeout: default seconds to wait for a reply (``None``: no limit). Off by
        default because a timeout costs a cancel scope per call (10-20 us, a sizeable part of a
        round trip); TCP keepalive still detects a server that vanished. The calls take a
        ``timeout`` of their own, and a caller's own ``anyio.fail_after`` works as well.
    :param connect_attempts: connection attempts before :class:`RedisConnectionError`
    :param backoff_initial: seconds before the second attempt; doubled each time, with jitter
    :param backoff_max: the longest wait between attempts
    :param ssl_context: for ``rediss://``; default: the system's trusted CAs
    :raises ValueError: for a ``pool_size`` or ``connect_attempts`` below 1
    :raises InvalidRedisURL: for an ``ssl_context`` with an address that is not TLS
    """

    def __init__(
        self,
        address: RedisAddress,
        *,
        pool_size: int = 4,
        connect_timeout: float | None = 5.0,
        command_timeout: float | None = None,
        connect_attempts: int = 6,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if pool_size < 1 or connect_attempts < 1:
            raise ValueError("pool_size and connect_attempts must be at least 1")
        if ssl_context is not None and not address.tls:
            raise InvalidRedisURL(str(address), "an ssl_context needs a rediss:// URL")
        self._address = address
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._connect_attempts = connect_attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._ssl_context = ssl_context
        self._idle: list[Connection] = []
        self._room = pool_size  # connections that may still be opened
        self._waiting: deque[Request] = deque()
        self._conns: set[Connection] = set()
        self._dedicated: set[PubSub] = set()
        self._closed = False
        self._pool_size = pool_size
        self._loop: object | None = None
        #: Whether a connection to the server ever succeeded.
        self.ever_connected = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisClient:
        """Make a client for a Redis URL.

        :param url: ``redis://``, ``rediss://`` or ``unix://`` URL (see :func:`parse_redis_url`)
        :param options: keyword arguments of :class:`RedisClient`
        :raises InvalidRedisURL: if the URL cannot be parsed
        :return: the client (not yet connected)
        """
        return cls(parse_redis_url(url), **options)

    @property
    def address(self) -> RedisAddress:
        """Where this client connects."""
        return self._address

    def __repr__(self) -> str:
        return f"<RedisClient {self._address}>"

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def _bind_loop(self) -> None:
        """Called on entry to every call: on an event loop other than the last one used, drop
        every connection (they belong to a loop that has finished: nothing can be awaited on
        them) and start afresh."""
        loop = anyio.lowlevel.current_token().native_token
        if loop is self._loop:
            return
        if self._loop is not None:
            for conn in self._conns:
                drop_stream(conn.stream)
            self._conns.clear()
            self._idle.clear()
            self._waiting.clear()
            self._room = self._pool_size
            for other in list(self._dedicated):
                other.abandon()
        self._loop = loop

    async def __aenter__(self) -> RedisClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the public calls --

    async def execute(self, *args: RedisArg, timeout: float | None = None) -> Any:
        """Run one command, pipelined with whatever other callers have queued.

        :param args: the command and its arguments: ``execute("SET", "key", b"value")``
        :param timeout: seconds to wait for the reply; ``None``: the client's ``command_timeout``;
            ``math.inf``: no limit
        :raises RedisReplyError: if the server answers with an error
        :raises RedisConnectionError: if the server cannot be reached, or the connection broke
            before the reply came (the command may have run)
        :raises RedisTimeoutError: if the reply takes longer than the timeout
        :raises TypeError: for an argument that is not bytes, str, int, float or memoryview
        :return: the reply (``bytes``, ``int``, ``None`` or a ``list``)
        """
        reply = (await self._call(encode(args), 1, timeout))[0]
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def evalsha(
        self,
        script: Script,
        keys: Sequence[RedisArg] = (),
        args: Sequence[RedisArg] = (),
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run a Lua script by its digest; if the server does not know it yet, send its source.

        :param script: the script
        :param keys: its ``KEYS``
        :param args: its ``ARGV``
        :param timeout: as in :meth:`execute`
        :raises RedisReplyError: if the script fails
        :raises RedisConnectionError: as in :meth:`execute`
        :raises RedisTimeoutError: as in :meth:`execute`
        :return: the script's reply
        """
        payload = script_payload("EVALSHA", script, keys, args)
        reply = (await self._call(payload, 1, timeout))[0]
        if is_noscript(reply):
            payload = script_payload("EVAL", script, keys, args)
            reply = (await self._call(payload, 1, timeout))[0]
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def fcall(
        self,
        library: Library,
        function: str,
        keys: Sequence[RedisArg] = (),
        args: Sequence[RedisArg] = (),
        *,
        timeout: float | None = None,
    ) -> Any:
        """Call a function of a library (Redis 7+); if the server does not know it yet, load the
        library first.

        :param library: the library ``function`` belongs to
        :param function: the function's name
        :param keys: its ``keys``
        :param args: its ``args``
        :param timeout: as in :meth:`execute`
        :raises RedisReplyError: if the function fails, or the server cannot load the library
            (a server before 7.0: "unknown command"; a user without ``function|load``: NOPERM)
        :raises RedisConnectionError: as in :meth:`execute`
        :raises RedisTimeoutError: as in :meth:`execute`
        :return: the function's reply
        """
        payload = fcall_payload(function, keys, args)
        reply = (await self._call(payload, 1, timeout))[0]
        if is_no_function(reply):
            loaded = (await self._call(encode(("FUNCTION", "LOAD", library.source)), 1, timeout))[0]
            if isinstance(loaded, RedisReplyError) and "already exists" not in loaded.message:
                raise loaded
            reply = (await self._call(payload, 1, timeout))[0]
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def pubsub(self) -> PubSub:
        """A pub/sub subscriber on its own connection; use it with ``async with``.

        :return: the subscriber (it connects on entry)
        """
        write_limit = self._command_timeout or WRITE_LIMIT
        pubsub = PubSub(self._open, write_limit=write_limit, forget=self._dedicated.discard)
        self._dedicated.add(pubsub)
        return pubsub

    async def aclose(self) -> None:
        """Close every connection: the pool's, and those of open pub/sub ones.

        Calls in flight and queued fail with :class:`RedisConnectionError`; so do later calls.
        """
        if self._closed:
            return
        self._closed = True
        loop = anyio.lowlevel.current_token().native_token
        if self._loop is not None and loop is not self._loop:
            self._bind_loop()  # connections of a finished loop: dropped, not awaited
        self._fail_waiting(f"{self} was closed")
        self._idle.clear()
        self._room = 0
        for conn in list(self._conns):
            await conn.close()
        self._conns.clear()
        for other in list(self._dedicated):
            await other.aclose()

    # -- connecting --

    async def _open(self) -> Connection:
        """Connect, retrying with exponential backoff and jitter."""
        delay = self._backoff_initial
        attempt = 1
        while True:
            if self._closed:
                raise RedisConnectionError(f"{self} was closed")
            try:
                conn = await connect(self._address, self._ssl_context, self._connect_timeout)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if attempt >= self._connect_attempts or is_permanent(exc):
                    raise RedisConnectionError(
                        f"{self._address} is unreachable after {attempt} attempt(s): {exc}"
                    ) from exc
            else:
                self.ever_connected = True
                return conn
            # Jitter, so that many workers that lost the same server do not return in lockstep.
            await anyio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self._backoff_max)
            attempt += 1

    async def _open_pooled(self) -> Connection:
        conn = await self._open()
        if self._closed:
            await conn.close()
            raise RedisConnectionError(f"{self} was closed")
        self._conns.add(conn)
        return conn

    # -- the pool: see the module docstring --

    async def _call(self, payload: bytes, count: int, limit: float | None) -> list[Any]:
        if self._closed:
            raise RedisConnectionError(f"{self} is closed")
        self._bind_loop()
        if limit is None:
            limit = self._command_timeout
        request = Request(payload, count)
        if limit is None or limit == math.inf:
            await self._run(request)
        else:
            with anyio.move_on_after(limit) as scope:
                await self._run(request)
            if scope.cancelled_caught:
                raise RedisTimeoutError(f"no reply from {self._address} within {limit} s")
        if request.error is not None:
            raise request.error
        return request.replies

    def _run(self, request: Request) -> Awaitable[None]:
        # Not a coroutine itself: one frame less on every call.
        if self._idle:
            return self._lead(request, self._idle.pop())
        if self._room:
            self._room -= 1
            return self._lead(request, None)
        return self._wait_turn(request)

    async def _wait_turn(self, request: Request) -> None:
        event = request.event = anyio.Event()
        request.state = _QUEUED
        self._waiting.append(request)
        try:
            await event.wait()
        except BaseException:
            await self._abandon(request)
            raise
        if request.state == _LEAD:
            await self._lead(request, request.conn)
        elif request.state == _READ:
            assert request.conn is not None
            await self._read(request.conn, request)

    async def _abandon(self, request: Request) -> None:
        """Clean up after a waiting caller who was cancelled, whatever it was handed meanwhile."""
        state = request.state
        if state == _QUEUED:
            self._waiting.remove(request)
        elif state == _INFLIGHT:
            request.state = _ABANDONED
        elif state == _LEAD:
            request.state = _ABANDONED
            self._hand_on(request.conn)
        elif state == _READ:
            request.state = _ABANDONED
            assert request.conn is not None
            await self._pass_reading(request.conn)

    async def _lead(self, request: Request, conn: Connection | None) -> None:
        """Write this request and everything queued behind it, then read the replies."""
        if conn is None:
            try:
                conn = await self._open_pooled()
            except BaseException as exc:
                if isinstance(exc, RedisTransportError):
                    # Those queued waited through the whole backoff too: do not make each of
                    # them wait through another one.
                    self._fail_waiting(str(exc))
                self._hand_on(None)
                raise
        request.state = _INFLIGHT
        conn.inflight.append(request)
        try:
            if not self._waiting:
                await conn.stream.send(request.payload)
            else:
                payload = self._take_waiting(conn, request.payload)
                await conn.send_shielded(payload, self._command_timeout or WRITE_LIMIT)
        except BaseException as exc:
            # Some unknown part of the payload may be on the wire: the connection is unusable.
            await self._break(conn, exc, request)
            if isinstance(exc, IO_ERRORS):
                raise self._lost(exc) from exc
            raise
        await self._read(conn, request)

    def _take_waiting(self, conn: Connection, first: bytes) -> bytes:
        parts = [first]
        for waiter in self._waiting:
            waiter.state = _INFLIGHT
            parts.append(waiter.payload)
        conn.inflight.extend(self._waiting)
        self._waiting.clear()
        return b"".join(parts)

    async def _read(self, conn: Connection, me: Request) -> None:
        """Read due replies in order and deliver them, until ``me`` has its reply and no more
        bytes are at hand; then pass reading on, or release the connection if nothing is due."""
        inflight = conn.inflight
        reader = conn.reader
        try:
            while inflight:
                request = inflight[0]
                reply = reader.gets()
                if reply is NEED_DATA:
                    if me.state == _DONE:
                        break
                    reader.feed(await conn.stream.receive(READ_SIZE))
                    continue
                replies = request.replies
                replies.append(reply)
                if len(replies) == request.count:
                    inflight.popleft()
                    if request is me:
                        me.state = _DONE
                    elif request.state == _INFLIGHT:
                        request.wake(_DONE)
        except IO_ERRORS as exc:
            await self._break(conn, exc, me)
            if me.state != _DONE:
                raise self._lost(exc) from exc
            return
        except BaseException:
            if me.state != _DONE:
                me.state = _ABANDONED
            await self._pass_reading(conn)
            raise
        if inflight:
            await self._pass_reading(conn)
        else:
            self._hand_on(conn)

    async def _pass_reading(self, conn: Connection) -> None:
        """Hand the reading of ``conn`` to the next caller still waiting for a reply on it."""
        if not conn.inflight:
            self._hand_on(conn)
            return
        for request in conn.inflight:
            if request.state == _INFLIGHT:
                request.wake(_READ, conn)
                return
        # Only abandoned replies are due (a cancelled BLPOP, say): nobody wants to wait for them,
        # and the next caller must not get them. Close the connection.
        self._conns.discard(conn)
        conn.inflight.clear()
        self._hand_on(None)
        await conn.close()

    def _hand_on(self, conn: Connection | None) -> None:
        """Give a free connection (or ``None``: the right to open one) to the first waiting
        caller, or keep it for the next call."""
        if self._waiting:
            self._waiting.popleft().wake(_LEAD, conn)
        elif self._closed:
            return
        elif conn is None:
            self._room += 1
        else:
            self._idle.append(conn)

    async def _break(self, conn: Connection, cause: BaseException, me: Request) -> None:
        """Discard a connection that failed or is out of step; fail whoever waits on it."""
        self._conns.discard(conn)
        if self._closed:
            message = f"{self} was closed"
        else:
            message = f"lost the connection to {self._address} before the reply: {cause!r}"
        for request in conn.inflight:
            if request is not me and request.state == _INFLIGHT:
                request.fail(RedisConnectionError(message))
        conn.inflight.clear()
        stale: list[Connection] = []
        if isinstance(cause, IO_ERRORS):
            # The idle connections most likely died with this one (a server restart).
            stale, self._idle = self._idle, []
            self._room += len(stale)
            self._conns.difference_update(stale)
        self._hand_on(None)
        await conn.close()
        for other in stale:
            await other.close()

    def _fail_waiting(self, message: str) -> None:
        waiting = list(self._waiting)
        self._waiting.clear()
        for request in waiting:
            request.fail(RedisConnectionError(message))

    def _lost(self, exc: BaseException) -> RedisConnectionError:
        if self._closed:
            return RedisConnectionError(f"{self} was closed")
        return RedisConnectionError(
            f"lost the connection to {self._address} before the reply: {exc!r}"
        )
