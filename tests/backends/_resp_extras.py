"""Transport features only the tests use: explicit pipelines and a blocking connection.

The library never sends an explicit pipeline (concurrent calls pipeline by themselves) nor a
blocking command, so these live here, built on the client's own request machinery, to test it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeAlias, cast

import anyio

from jdobb_async_queue.backends.redis.resp import (
    RedisArg,
    RedisClient,
    RedisConnectionError,
    RedisReplyError,
    RedisTimeoutError,
    Script,
)
from jdobb_async_queue.backends.redis.resp.connection import (
    IO_ERRORS,
    NEED_DATA,
    Connection,
    encode,
)
from jdobb_async_queue.backends.redis.resp.script import is_noscript, script_payload

__all__ = ["BlockingConnection", "ScriptCall", "pipeline", "script_call"]


@dataclass(frozen=True)
class ScriptCall:
    """One call of a :class:`Script` inside a pipeline (made by :func:`script_call`)."""

    script: Script
    keys: tuple[RedisArg, ...]
    args: tuple[RedisArg, ...]

    def evalsha(self) -> bytes:
        return script_payload("EVALSHA", self.script, self.keys, self.args)

    def eval(self) -> bytes:
        return script_payload("EVAL", self.script, self.keys, self.args)


def script_call(
    script: Script, keys: Sequence[RedisArg] = (), args: Sequence[RedisArg] = ()
) -> ScriptCall:
    """A call of ``script``, to put in :func:`pipeline`."""
    return ScriptCall(script, tuple(keys), tuple(args))


#: A pipeline entry: the arguments of one command, or a script call.
Command: TypeAlias = "Sequence[RedisArg] | ScriptCall"


def _encode_command(command: Command) -> bytes:
    if isinstance(command, ScriptCall):
        return command.evalsha()
    if isinstance(command, (str, bytes)):
        raise TypeError(f"a pipeline command is a sequence of arguments, not {command!r}")
    return encode(tuple(command))


async def pipeline(
    client: RedisClient, commands: Iterable[Command], *, timeout: float | None = None
) -> list[Any]:
    """Send many commands in one write and read all their replies.

    Not a transaction: other callers' commands may run between them. A script call answered
    ``NOSCRIPT`` is sent again with ``EVAL`` after the others. Error replies are
    :class:`RedisReplyError` instances in the list, not raised.
    """
    commands = list(commands)
    if not commands:
        return []
    payload = b"".join([_encode_command(c) for c in commands])
    replies = await client._call(payload, len(commands), timeout)
    retry = [
        i
        for i, (c, reply) in enumerate(zip(commands, replies, strict=True))
        if isinstance(c, ScriptCall) and is_noscript(reply)
    ]
    if retry:
        payload = b"".join(cast(ScriptCall, commands[i]).eval() for i in retry)
        for i, reply in zip(retry, await client._call(payload, len(retry), timeout), strict=True):
            replies[i] = reply
    return replies


class BlockingConnection:
    """A connection of its own for blocking commands (``BLPOP``...), so they never hold up the
    pool; use it with ``async with``.

    Calls are serialised. A call that is cancelled or times out closes the connection (its reply
    may still come); the next call reconnects.
    """

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._conn: Connection | None = None
        self._lock = anyio.Lock()
        self._closed = False

    async def __aenter__(self) -> BlockingConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def execute(self, *args: RedisArg, timeout: float | None = None) -> Any:
        """Run one command and wait for its reply, however long the command blocks."""
        payload = encode(args)
        async with self._lock:
            conn = await self._connection()
            reply: Any = NEED_DATA
            try:
                with anyio.move_on_after(timeout):
                    await conn.stream.send(payload)
                    reply = await conn.read_reply()
            except IO_ERRORS as exc:
                await self._discard()
                raise RedisConnectionError(f"lost the connection: {exc!r}") from exc
            except BaseException:
                await self._discard()  # cancelled mid-reply: the connection is out of step
                raise
            if reply is NEED_DATA:  # timed out: the reply may still come, out of step
                await self._discard()
                raise RedisTimeoutError(f"no reply within {timeout} s")
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def aclose(self) -> None:
        """Close the connection."""
        self._closed = True
        await self._discard()

    async def _connection(self) -> Connection:
        if self._closed:
            raise RedisConnectionError("this blocking connection is closed")
        if self._conn is None:
            self._conn = await self._client._open()
        return self._conn

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
