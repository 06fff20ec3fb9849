"""Pub/sub: :class:`PubSub`, a subscriber to channels on a connection of its own.

It resubscribes to its channels after a reconnect. Messages published while it was disconnected
are lost: pub/sub is fire-and-forget. :attr:`PubSub.reconnects` tells a consumer that a gap
happened.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio

from .connection import IO_ERRORS, Connection, drop_stream, encode
from .errors import RedisConnectionError, RedisReplyError

__all__ = ["PubSub"]


def _as_bytes(name: str | bytes) -> bytes:
    return name.encode() if isinstance(name, str) else name


class _Ack:
    """Confirmations still due for one SUBSCRIBE; ``then`` is the resubscription that
    superseded it after a reconnect."""

    __slots__ = ("error", "remaining", "then")

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.error: RedisReplyError | None = None
        self.then: _Ack | None = None


class PubSub:
    """A subscriber on a connection of its own; made by :meth:`RedisClient.pubsub`.

    :param open_connection: opens a connection of its own (retrying as the client's pool does)
    :param write_limit: the most seconds a shielded write may take
    :param forget: called with this subscriber once it is closed or abandoned

    Any task may subscribe or unsubscribe while another waits for messages. There is no
    background task: whoever waits (for a message or a subscription's confirmation) reads the
    connection, and keeps for the others what is theirs. After a lost connection, the next read
    or call reconnects and resubscribes; messages published in between are lost.
    """

    def __init__(
        self,
        open_connection: Callable[[], Awaitable[Connection]],
        *,
        write_limit: float,
        forget: Callable[[PubSub], None],
    ) -> None:
        self._open = open_connection
        self._write_limit = write_limit
        self._forget = forget
        self._conn: Connection | None = None
        self._channels: set[bytes] = set()
        self._acks: deque[_Ack] = deque()
        self._messages: deque[tuple[bytes, bytes]] = deque()
        self._send_lock = anyio.Lock()
        self._reading = False
        self._progress = anyio.Event()
        self._reconnects = 0
        self._closed = False

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established (messages may have been lost)."""
        return self._reconnects

    def abandon(self) -> None:
        """Drop the connection of an event loop that has finished (closed without awaiting)."""
        self._closed = True
        self._forget(self)
        if self._conn is not None:
            drop_stream(self._conn.stream)
            self._conn = None

    async def __aenter__(self) -> PubSub:
        try:
            await self._recover(None)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def subscribe(self, *channels: str | bytes) -> None:
        """Subscribe to channels; returns once the server has confirmed.

        A subscription stands once asked for: if this raises :class:`RedisConnectionError`,
        the next connection still subscribes to ``channels`` (unsubscribe to undo it).

        :param channels: channel names
        :raises RedisReplyError: if the server refuses (an ACL, say)
        :raises RedisConnectionError: if the server cannot be reached
        """
        if not channels:
            raise ValueError("SUBSCRIBE needs at least one name")
        keys = [_as_bytes(name) for name in channels]
        ack = _Ack(len(keys))
        async with self._send_lock:
            conn = await self._recover_locked(None)
            self._channels.update(keys)
            self._acks.append(ack)
            await self._send_locked(conn, encode(("SUBSCRIBE", *keys)))
        try:
            await self._wait_ack(ack)
        except RedisReplyError:
            self._channels.difference_update(keys)
            raise

    async def unsubscribe(self, *channels: str | bytes) -> None:
        """Unsubscribe from channels (from all, without arguments). No message from them is
        delivered afterwards, even one already on its way.

        :param channels: channel names
        :raises RedisConnectionError: if the connection is closed
        """
        keys = [_as_bytes(name) for name in channels]
        async with self._send_lock:
            if self._closed:
                raise RedisConnectionError("this pub/sub connection is closed")
            if keys:
                self._channels.difference_update(keys)
            else:
                self._channels.clear()
            if self._conn is not None:  # else the next connection subscribes to what is left
                await self._send_locked(self._conn, encode(("UNSUBSCRIBE", *keys)))

    async def get_message(self) -> tuple[bytes, bytes]:
        """Wait for the next message (bound the wait with ``anyio.move_on_after``: it is safe to
        cancel, no message is lost).

        :raises RedisConnectionError: if the connection was lost and cannot be re-established,
            or this subscriber is closed
        :return: ``(channel, data)``
        """
        while not self._messages:
            await self._pump()
        return self._messages.popleft()

    async def aclose(self) -> None:
        """Close the connection; waiting tasks get :class:`RedisConnectionError`."""
        self._closed = True
        self._forget(self)
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        self._notify()

    # -- internals --

    async def _send_locked(self, conn: Connection, payload: bytes) -> None:
        try:
            await conn.send_shielded(payload, self._write_limit)
        except IO_ERRORS:
            await self._recover_locked(conn)  # resubscribes to the channels, changes included

    async def _wait_ack(self, ack: _Ack) -> None:
        while True:
            while ack.remaining and ack.error is None:
                await self._pump()
            if ack.error is not None:
                raise RedisReplyError(ack.error.message)
            if ack.then is None:
                return
            ack = ack.then

    async def _pump(self) -> None:
        """Read and dispatch one reply, or wait while another task does."""
        if self._reading:
            await self._progress.wait()
            return
        conn = self._conn
        if conn is None:
            # Return after reconnecting, without reading: another task may have become the
            # reader meanwhile, and the caller's loop checks again.
            await self._recover(None)
            return
        self._reading = True
        try:
            self._dispatch(await conn.read_reply())
        except IO_ERRORS:
            broken = True
        else:
            broken = False
        finally:
            self._reading = False
            self._notify()
        if broken:
            await self._recover(conn)

    def _notify(self) -> None:
        progress, self._progress = self._progress, anyio.Event()
        progress.set()

    def _dispatch(self, reply: Any) -> None:
        if isinstance(reply, RedisReplyError):
            if self._acks:
                self._acks.popleft().error = reply
            return
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind == b"message":
            if reply[1] in self._channels:
                self._messages.append((reply[1], reply[2]))
        elif kind == b"subscribe" and self._acks:
            head = self._acks[0]
            head.remaining -= 1
            if head.remaining <= 0:
                self._acks.popleft()

    async def _recover(self, broken: Connection | None) -> Connection:
        async with self._send_lock:
            return await self._recover_locked(broken)

    async def _recover_locked(self, broken: Connection | None) -> Connection:
        """The live connection; if it is ``broken`` (or missing), a new one, resubscribed."""
        if self._closed:
            raise RedisConnectionError("this pub/sub connection is closed")
        conn = self._conn
        if conn is not None and conn is not broken:
            return conn
        if conn is not None:
            self._conn = None
            await conn.close()
            self._reconnects += 1
        conn = await self._open()
        try:
            await self._resubscribe(conn)
        except IO_ERRORS as exc:
            await conn.close()
            raise RedisConnectionError(f"lost the pub/sub connection: {exc!r}") from exc
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _resubscribe(self, conn: Connection) -> None:
        count = len(self._channels)
        fresh = _Ack(count) if count else None
        for old in self._acks:  # superseded: their waiters now wait for the resubscription
            old.remaining = 0
            old.then = fresh
        self._acks.clear()
        if fresh is not None:
            self._acks.append(fresh)
            payload = encode(("SUBSCRIBE", *self._channels))
            await conn.send_shielded(payload, self._write_limit)
