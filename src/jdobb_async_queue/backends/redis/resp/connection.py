"""One connection: opening it (TCP, TLS or a unix socket, then ``AUTH`` and ``SELECT``), writing
commands encoded by ``hiredis`` and reading replies parsed by it.

A server that vanished without a word is still noticed: TCP connections get keepalive and, on
Linux, ``TCP_USER_TIMEOUT`` (about 30 s).
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import anyio
import hiredis
from anyio.abc import ByteStream, SocketAttribute

from .errors import (
    RedisAuthError,
    RedisConnectionError,
    RedisReplyError,
    RedisTimeoutError,
    RedisTransportError,
)
from .url import RedisAddress

if TYPE_CHECKING:
    from .pool import Request

__all__ = [
    "IO_ERRORS",
    "NEED_DATA",
    "READ_SIZE",
    "WRITE_LIMIT",
    "Connection",
    "RedisArg",
    "connect",
    "drop_stream",
    "encode",
    "is_permanent",
]


class _ProtocolError(Exception):
    """hiredis met bytes that are not RESP: the stream is unusable."""


#: What a command argument may be (``bool`` is refused at run time: say ``0`` or ``1``).
RedisArg: TypeAlias = "bytes | str | int | float | memoryview"

# Exceptions that mean "this connection is gone"; translated at the transport's boundary.
IO_ERRORS: Final = (
    OSError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    _ProtocolError,
)
READ_SIZE: Final = 65536
WRITE_LIMIT: Final = 30.0  # seconds for a shielded write when there is no command timeout
# Kernel-side liveness for TCP connections, free per call: a peer that vanished (no RST) is
# detected within about half a minute even with no command timeout set.
_TCP_OPTIONS: Final = (
    ("TCP_KEEPIDLE", 15),
    ("TCP_KEEPINTVL", 5),
    ("TCP_KEEPCNT", 3),
    ("TCP_USER_TIMEOUT", 30_000),  # ms: sent data unacknowledged for this long breaks the socket
)
NEED_DATA: Final = object()  # what hiredis returns while a reply is incomplete
_pack: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command


def encode(args: tuple[Any, ...]) -> bytes:
    try:
        return _pack(args)
    except TypeError as exc:
        raise TypeError(
            f"Redis command arguments must be bytes, str, int, float or memoryview: {args!r}"
        ) from exc


def _new_reader() -> hiredis.Reader:
    return hiredis.Reader(
        protocolError=_ProtocolError, replyError=RedisReplyError, notEnoughData=NEED_DATA
    )


class Connection:
    """A stream plus its reply parser, and (in the pool) the requests whose replies are due."""

    __slots__ = ("closed", "inflight", "reader", "stream")

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.reader = _new_reader()
        self.inflight: deque[Request] = deque()
        self.closed = False

    async def read_reply(self) -> Any:
        """Read one reply. Cancel-safe: bytes received are kept in the parser, none are lost."""
        reader = self.reader
        reply = reader.gets()
        while reply is NEED_DATA:
            reader.feed(await self.stream.receive(READ_SIZE))
            reply = reader.gets()
        return reply

    async def send_shielded(self, payload: bytes, limit: float | None) -> None:
        """Write while shielded from cancellation (for ``limit`` seconds at most): a partial write
        would put the connection out of step for every caller whose command is in ``payload``."""
        deadline = math.inf if limit is None else anyio.current_time() + limit
        with anyio.CancelScope(shield=True, deadline=deadline) as scope:
            await self.stream.send(payload)
        if scope.cancelled_caught:
            raise anyio.BrokenResourceError("writing to the server timed out")

    def tune(self) -> None:
        """Turn on TCP keepalive (and a user timeout, where the OS has one)."""
        sock = self.stream.extra(SocketAttribute.raw_socket, None)
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in _TCP_OPTIONS:
                option = getattr(socket, name, None)
                if option is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Shielded: this is how a cancelled caller gets rid of a connection that is out of step,
        # so it must finish inside a cancelled scope; forceful: it waits on nothing.
        with anyio.CancelScope(shield=True):
            try:
                await anyio.aclose_forcefully(self.stream)
            except IO_ERRORS:
                pass


async def connect(
    address: RedisAddress, ssl_context: ssl.SSLContext | None, limit: float | None
) -> Connection:
    """Open one connection and authenticate; one attempt, no retry."""
    with anyio.move_on_after(limit):
        try:
            conn = Connection(await _open_stream(address, ssl_context))
        except IO_ERRORS as exc:
            raise RedisConnectionError(f"cannot connect to {address}: {_describe(exc)}") from exc
        conn.tune()
        try:
            await _handshake(conn, address)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, IO_ERRORS):
                raise RedisConnectionError(f"{address} hung up: {_describe(exc)}") from exc
            raise
        return conn
    raise RedisTimeoutError(f"connecting to {address} timed out after {limit} s")


def _describe(exc: BaseException) -> str:
    """An exception and its cause (anyio's "All connection attempts failed" hides the reason)."""
    text = repr(exc)
    return text if exc.__cause__ is None else f"{text} from {exc.__cause__!r}"


async def _open_stream(address: RedisAddress, ssl_context: ssl.SSLContext | None) -> ByteStream:
    if address.path is not None:
        return await anyio.connect_unix(address.path)
    assert address.host is not None
    if address.tls:
        # Redis often closes TLS connections without close_notify: treat that as a plain EOF.
        return await anyio.connect_tcp(
            address.host,
            address.port,
            tls=True,
            ssl_context=ssl_context,
            tls_standard_compatible=False,
        )
    return await anyio.connect_tcp(address.host, address.port)


async def _handshake(conn: Connection, address: RedisAddress) -> None:
    commands: list[tuple[Any, ...]] = []
    if address.password is not None:
        user = () if address.username is None else (address.username,)
        commands.append(("AUTH", *user, address.password))
    if address.db:
        commands.append(("SELECT", address.db))
    if address.password is None:
        commands.append(("PING",))  # surfaces NOAUTH now rather than on the first real command
    await conn.stream.send(b"".join(encode(command) for command in commands))
    for command in commands:
        reply = await conn.read_reply()
        if not isinstance(reply, RedisReplyError):
            continue
        if command[0] == "AUTH" or reply.code in ("NOAUTH", "WRONGPASS", "NOPERM"):
            who = f"user {address.username!r}" if address.username else "the default user"
            raise RedisAuthError(f"{address} refused {who}: {reply.message}")
        if reply.code == "LOADING":  # a restarted server reading its data set: retry later
            raise RedisConnectionError(f"{address} is not ready: {reply.message}")
        raise reply


def drop_stream(stream: ByteStream) -> None:
    """Close the socket of a stream whose event loop has finished, without that loop."""
    inner: Any = stream
    while hasattr(inner, "transport_stream"):  # TLS
        inner = inner.transport_stream
    transport: Any = getattr(inner, "_transport", None)  # asyncio: the loop's transport owns it
    sock = getattr(transport, "_sock", None)
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.close()
            transport._sock = None
            return
        raw = stream.extra(SocketAttribute.raw_socket, None)
        if raw is not None:
            raw.close()


def is_permanent(exc: RedisTransportError) -> bool:
    """Connection failures that no retry will cure (an untrusted TLS certificate)."""
    return isinstance(exc.__cause__, ssl.SSLCertVerificationError)
