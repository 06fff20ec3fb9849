"""The Redis backend's own RESP2 transport: anyio streams for I/O, ``hiredis`` for parsing replies.

Why a transport of our own: the maintained Redis clients either run on one event loop only or cost
several times the round trip (measured in the design notes and ``bench/redis_roundtrip.py``).
The Redis backend sees only this module's public names: :class:`RedisClient` (``from_url``,
``execute``, ``pipeline``, ``evalsha``, ``pubsub``, ``blocking_connection``, ``aclose``),
:class:`Script`, the URL parser and the error classes.

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

Pub/sub uses a dedicated connection (:meth:`RedisClient.pubsub`); it resubscribes to its channels
and patterns after a reconnect. Messages published while it was disconnected are lost: pub/sub is
fire-and-forget. :attr:`PubSub.reconnects` tells a consumer that a gap happened.

Blocking commands (``BLPOP``, ``BZPOPMIN``...) belong on a dedicated connection
(:meth:`RedisClient.blocking_connection`), never on the shared pool.

Only RESP2 is spoken. Replies are returned as hiredis produces them, undecoded: ``bytes`` for
strings, ``int``, ``None`` for nil, ``list`` for arrays, and :class:`RedisReplyError` *instances*
for error replies inside arrays or pipelines.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, TypeAlias, cast
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import anyio.lowlevel
import hiredis
from anyio.abc import ByteStream, SocketAttribute

__all__ = [
    "BlockingConnection",
    "InvalidRedisURL",
    "PubSub",
    "RedisAddress",
    "RedisArg",
    "RedisAuthError",
    "RedisClient",
    "RedisConnectionError",
    "RedisReplyError",
    "RedisTimeoutError",
    "RedisTransportError",
    "Script",
    "ScriptCall",
    "parse_redis_url",
]


# --- errors (the one place to re-parent under the package's hierarchy) ----------------------------


class RedisTransportError(Exception):
    """Base class of every error this transport raises."""


class RedisConnectionError(RedisTransportError):
    """The server cannot be reached, or a connection broke before a command's reply arrived.

    When raised for a command that was already written, the command may or may not have run.
    """


class RedisAuthError(RedisTransportError):
    """The server refused the credentials (``AUTH``) or requires some that were not given."""


class RedisTimeoutError(RedisTransportError, TimeoutError):
    """Connecting, or waiting for a reply, took longer than the configured timeout."""


class RedisReplyError(RedisTransportError):
    """The server answered a command with an error reply.

    :param message: the error text as the server sent it (``"WRONGTYPE Operation against..."``)
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    @property
    def code(self) -> str:
        """The error's first word (``"ERR"``, ``"WRONGTYPE"``, ``"NOSCRIPT"``...)."""
        return self.message.split(" ", 1)[0]


class InvalidRedisURL(RedisTransportError, ValueError):
    """A Redis URL could not be parsed. The message never repeats a password.

    :param url: the URL (with any password masked)
    :param reason: what is wrong with it
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"invalid Redis URL {url!r}: {reason}")


class _ProtocolError(Exception):
    """hiredis met bytes that are not RESP: the stream is unusable."""


#: What a command argument may be (``bool`` is refused at run time: say ``0`` or ``1``).
RedisArg: TypeAlias = "bytes | str | int | float | memoryview"

# Exceptions that mean "this connection is gone"; translated at this module's boundary.
_IO_ERRORS: Final = (
    OSError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    _ProtocolError,
)
_READ_SIZE: Final = 65536
_WRITE_LIMIT: Final = 30.0  # seconds for a shielded write when there is no command timeout
# Kernel-side liveness for TCP connections, free per call: a peer that vanished (no RST) is
# detected within about half a minute even with no command timeout set.
_TCP_OPTIONS: Final = (
    ("TCP_KEEPIDLE", 15),
    ("TCP_KEEPINTVL", 5),
    ("TCP_KEEPCNT", 3),
    ("TCP_USER_TIMEOUT", 30_000),  # ms: sent data unacknowledged for this long breaks the socket
)
_NEED_DATA: Final = object()  # what hiredis returns while a reply is incomplete
_pack: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command


def _encode(args: tuple[Any, ...]) -> bytes:
    try:
        return _pack(args)
    except TypeError as exc:
        raise TypeError(
            f"Redis command arguments must be bytes, str, int, float or memoryview: {args!r}"
        ) from exc


def _new_reader() -> hiredis.Reader:
    return hiredis.Reader(
        protocolError=_ProtocolError, replyError=RedisReplyError, notEnoughData=_NEED_DATA
    )


def _is_noscript(reply: Any) -> bool:
    return isinstance(reply, RedisReplyError) and reply.message.startswith("NOSCRIPT")


def _as_bytes(name: str | bytes) -> bytes:
    return name.encode() if isinstance(name, str) else name


# --- addresses ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisAddress:
    """Where and how to connect: the parsed form of a Redis URL.

    Exactly one of ``host`` and ``path`` is set.
    """

    host: str | None = None
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix://{self.path}?db={self.db}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}/{self.db}"


def _masked(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.partition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hostpart}"


def parse_redis_url(url: str) -> RedisAddress:
    """Parse ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs.

    Accepted forms: ``redis://[[user]:password@]host[:port][/db]``, the same with ``rediss://``,
    and ``unix://[[user]:password@]/path/to/socket[?db=N]``. The query may carry ``db``,
    ``username`` and ``password``; user name and password are percent-decoded.

    :param url: the URL
    :raises InvalidRedisURL: for another scheme, a missing host or socket path, a bad port or
        database number, a user name without a password, or an unknown query parameter
    :return: the address
    """
    if not isinstance(url, str):
        raise InvalidRedisURL(repr(url), "a Redis URL must be a str")
    shown = _masked(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRedisURL(shown, str(exc)) from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise InvalidRedisURL(shown, "the scheme must be redis://, rediss:// or unix://")
    query = _parse_query(shown, parts.query)
    username = _pick(parts.username, query.get("username"))
    password = _pick(parts.password, query.get("password"))
    if username is not None and password is None:
        raise InvalidRedisURL(shown, "a user name needs a password (user:password@)")
    if parts.fragment:
        raise InvalidRedisURL(shown, "a Redis URL has no #fragment")
    if parts.scheme == "unix":
        if parts.hostname or port is not None or not parts.path.startswith("/"):
            raise InvalidRedisURL(shown, "a unix URL needs an absolute path: unix:///path/to/sock")
        db = _parse_db(shown, query.get("db", "0"))
        return RedisAddress(path=parts.path, db=db, username=username, password=password)
    if not parts.hostname:
        raise InvalidRedisURL(shown, "the URL has no host")
    path_db = parts.path.strip("/")
    if path_db and "db" in query:
        raise InvalidRedisURL(shown, "give the database in the path or in ?db=, not both")
    db = _parse_db(shown, path_db or query.get("db", "0"))
    return RedisAddress(
        host=parts.hostname,
        port=6379 if port is None else port,
        db=db,
        username=username,
        password=password,
        tls=parts.scheme == "rediss",
    )


def _pick(from_netloc: str | None, from_query: str | None) -> str | None:
    if from_netloc:  # "" (as in redis://:password@host) means "not given"
        return unquote(from_netloc)
    return from_query


def _parse_query(shown: str, query: str) -> dict[str, str]:
    try:
        values = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise InvalidRedisURL(shown, f"bad query string: {exc}") from None
    unknown = sorted(set(values) - {"db", "username", "password"})
    if unknown:
        raise InvalidRedisURL(shown, f"unknown query parameter(s): {', '.join(unknown)}")
    if any(len(v) > 1 for v in values.values()):
        raise InvalidRedisURL(shown, "a query parameter is given twice")
    return {key: v[0] for key, v in values.items()}


def _parse_db(shown: str, text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise InvalidRedisURL(shown, f"the database must be a number >= 0, not {text!r}")
    return int(text)


# --- one connection -------------------------------------------------------------------------------


class _Connection:
    """A stream plus its reply parser, and (in the pool) the requests whose replies are due."""

    __slots__ = ("closed", "inflight", "reader", "stream")

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.reader = _new_reader()
        self.inflight: deque[_Request] = deque()
        self.closed = False

    async def read_reply(self) -> Any:
        """Read one reply. Cancel-safe: bytes received are kept in the parser, none are lost."""
        reader = self.reader
        reply = reader.gets()
        while reply is _NEED_DATA:
            reader.feed(await self.stream.receive(_READ_SIZE))
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
            except _IO_ERRORS:
                pass


async def _connect(
    address: RedisAddress, ssl_context: ssl.SSLContext | None, limit: float | None
) -> _Connection:
    """Open one connection and authenticate; one attempt, no retry."""
    with anyio.move_on_after(limit):
        try:
            conn = _Connection(await _open_stream(address, ssl_context))
        except _IO_ERRORS as exc:
            raise RedisConnectionError(f"cannot connect to {address}: {_describe(exc)}") from exc
        conn.tune()
        try:
            await _handshake(conn, address)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, _IO_ERRORS):
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


async def _handshake(conn: _Connection, address: RedisAddress) -> None:
    commands: list[tuple[Any, ...]] = []
    if address.password is not None:
        user = () if address.username is None else (address.username,)
        commands.append(("AUTH", *user, address.password))
    if address.db:
        commands.append(("SELECT", address.db))
    if address.password is None:
        commands.append(("PING",))  # surfaces NOAUTH now rather than on the first real command
    await conn.stream.send(b"".join(_encode(command) for command in commands))
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


# --- the pool's requests --------------------------------------------------------------------------

# Request states. QUEUED: waiting for a connection. INFLIGHT: written, reply due. LEAD: handed a
# connection (or the right to open one) to write what has piled up. READ: handed the duty to read
# a connection's due replies. DONE: replies (or error) delivered. ABANDONED: its caller is gone;
# its replies are read and dropped.
_QUEUED, _INFLIGHT, _LEAD, _READ, _DONE, _ABANDONED = range(6)


class _Request:
    __slots__ = ("conn", "count", "error", "event", "payload", "replies", "state")

    error: RedisTransportError | None

    def __init__(self, payload: bytes, count: int) -> None:
        self.payload = payload
        self.count = count
        self.replies: list[Any] = []
        self.state = _INFLIGHT
        self.event: anyio.Event | None = None  # only for callers that have to wait
        self.conn: _Connection | None = None  # set with LEAD (None: open one) and READ
        self.error = None

    def wake(self, state: int, conn: _Connection | None = None) -> None:
        self.state = state
        self.conn = conn
        if self.event is not None:
            self.event.set()

    def fail(self, error: RedisTransportError) -> None:
        self.error = error
        self.wake(_DONE)


# --- scripts --------------------------------------------------------------------------------------


class Script:
    """A Lua script, called by its SHA1 digest (``EVALSHA``) and loaded on demand.

    :param source: the Lua source
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __repr__(self) -> str:
        return f"Script(sha={self.sha!r})"

    def call(self, keys: Sequence[RedisArg] = (), args: Sequence[RedisArg] = ()) -> ScriptCall:
        """A call of this script, to put in :meth:`RedisClient.pipeline`.

        :param keys: the ``KEYS`` the script touches
        :param args: the ``ARGV``
        :return: the call
        """
        return ScriptCall(self, tuple(keys), tuple(args))


@dataclass(frozen=True)
class ScriptCall:
    """One call of a :class:`Script` inside a pipeline (made by :meth:`Script.call`)."""

    script: Script
    keys: tuple[RedisArg, ...]
    args: tuple[RedisArg, ...]

    def _evalsha(self) -> bytes:
        return _script_payload("EVALSHA", self.script, self.keys, self.args)

    def _eval(self) -> bytes:
        return _script_payload("EVAL", self.script, self.keys, self.args)


def _script_payload(
    command: str, script: Script, keys: Sequence[RedisArg], args: Sequence[RedisArg]
) -> bytes:
    if isinstance(keys, (str, bytes)) or isinstance(args, (str, bytes)):
        raise TypeError("script keys and args are sequences of values, not one str or bytes")
    body = script.sha if command == "EVALSHA" else script.source
    return _encode((command, body, len(keys), *keys, *args))


def _encode_command(command: Command) -> bytes:
    if isinstance(command, ScriptCall):
        return command._evalsha()
    if isinstance(command, (str, bytes)):
        raise TypeError(f"a pipeline command is a sequence of arguments, not {command!r}")
    return _encode(tuple(command))


#: A pipeline entry: the arguments of one command, or a script call.
Command: TypeAlias = "Sequence[RedisArg] | ScriptCall"


# --- the client -----------------------------------------------------------------------------------


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
        self._idle: list[_Connection] = []
        self._room = pool_size  # connections that may still be opened
        self._waiting: deque[_Request] = deque()
        self._conns: set[_Connection] = set()
        self._dedicated: set[PubSub | BlockingConnection] = set()
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
                _drop_stream(conn.stream)
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
        reply = (await self._call(_encode(args), 1, timeout))[0]
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def pipeline(
        self,
        commands: Iterable[Command],
        *,
        timeout: float | None = None,
    ) -> list[Any]:
        """Send many commands in one write and read all their replies.

        Not a transaction: other callers' commands may run between them (wrap them in
        ``MULTI``/``EXEC`` or use a script for atomicity). A script call answered ``NOSCRIPT``
        is sent again with ``EVAL`` after the others.

        :param commands: tuples of command arguments, or :meth:`Script.call` results
        :param timeout: as in :meth:`execute`, for each round trip
        :raises RedisConnectionError: as in :meth:`execute`
        :raises RedisTimeoutError: as in :meth:`execute`
        :return: one reply per command, in order; error replies are :class:`RedisReplyError`
            instances in the list, not raised
        """
        commands = list(commands)
        if not commands:
            return []
        payload = b"".join([_encode_command(c) for c in commands])
        replies = await self._call(payload, len(commands), timeout)
        retry = [
            i
            for i, (c, reply) in enumerate(zip(commands, replies, strict=True))
            if isinstance(c, ScriptCall) and _is_noscript(reply)
        ]
        if retry:
            payload = b"".join(cast(ScriptCall, commands[i])._eval() for i in retry)
            for i, reply in zip(retry, await self._call(payload, len(retry), timeout), strict=True):
                replies[i] = reply
        return replies

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
        payload = _script_payload("EVALSHA", script, keys, args)
        reply = (await self._call(payload, 1, timeout))[0]
        if _is_noscript(reply):
            payload = _script_payload("EVAL", script, keys, args)
            reply = (await self._call(payload, 1, timeout))[0]
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def pubsub(self) -> PubSub:
        """A pub/sub subscriber on its own connection; use it with ``async with``.

        :return: the subscriber (it connects on entry)
        """
        return PubSub(self)

    def blocking_connection(self) -> BlockingConnection:
        """A connection of its own for blocking commands (``BLPOP``, ``BZPOPMIN``, ...), so they
        never hold up the pool; use it with ``async with``.

        :return: the connection (it connects on first use)
        """
        return BlockingConnection(self)

    async def aclose(self) -> None:
        """Close every connection: the pool's, and those of open pub/sub and blocking ones.

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

    async def _open(self) -> _Connection:
        """Connect, retrying with exponential backoff and jitter."""
        delay = self._backoff_initial
        attempt = 1
        while True:
            if self._closed:
                raise RedisConnectionError(f"{self} was closed")
            try:
                conn = await _connect(self._address, self._ssl_context, self._connect_timeout)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if attempt >= self._connect_attempts or _is_permanent(exc):
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

    async def _open_pooled(self) -> _Connection:
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
        request = _Request(payload, count)
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

    def _run(self, request: _Request) -> Awaitable[None]:
        # Not a coroutine itself: one frame less on every call.
        if self._idle:
            return self._lead(request, self._idle.pop())
        if self._room:
            self._room -= 1
            return self._lead(request, None)
        return self._wait_turn(request)

    async def _wait_turn(self, request: _Request) -> None:
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

    async def _abandon(self, request: _Request) -> None:
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

    async def _lead(self, request: _Request, conn: _Connection | None) -> None:
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
                await conn.send_shielded(payload, self._command_timeout or _WRITE_LIMIT)
        except BaseException as exc:
            # Some unknown part of the payload may be on the wire: the connection is unusable.
            await self._break(conn, exc, request)
            if isinstance(exc, _IO_ERRORS):
                raise self._lost(exc) from exc
            raise
        await self._read(conn, request)

    def _take_waiting(self, conn: _Connection, first: bytes) -> bytes:
        parts = [first]
        for waiter in self._waiting:
            waiter.state = _INFLIGHT
            parts.append(waiter.payload)
        conn.inflight.extend(self._waiting)
        self._waiting.clear()
        return b"".join(parts)

    async def _read(self, conn: _Connection, me: _Request) -> None:
        """Read due replies in order and deliver them, until ``me`` has its reply and no more
        bytes are at hand; then pass reading on, or release the connection if nothing is due."""
        inflight = conn.inflight
        reader = conn.reader
        try:
            while inflight:
                request = inflight[0]
                reply = reader.gets()
                if reply is _NEED_DATA:
                    if me.state == _DONE:
                        break
                    reader.feed(await conn.stream.receive(_READ_SIZE))
                    continue
                replies = request.replies
                replies.append(reply)
                if len(replies) == request.count:
                    inflight.popleft()
                    if request is me:
                        me.state = _DONE
                    elif request.state == _INFLIGHT:
                        request.wake(_DONE)
        except _IO_ERRORS as exc:
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

    async def _pass_reading(self, conn: _Connection) -> None:
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

    def _hand_on(self, conn: _Connection | None) -> None:
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

    async def _break(self, conn: _Connection, cause: BaseException, me: _Request) -> None:
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
        stale: list[_Connection] = []
        if isinstance(cause, _IO_ERRORS):
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


def _drop_stream(stream: ByteStream) -> None:
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


def _is_permanent(exc: RedisTransportError) -> bool:
    """Connection failures that no retry will cure (an untrusted TLS certificate)."""
    return isinstance(exc.__cause__, ssl.SSLCertVerificationError)


# --- dedicated connections ------------------------------------------------------------------------


class BlockingConnection:
    """A connection of its own for blocking commands; see :meth:`RedisClient.blocking_connection`.

    Calls are serialised. A call that is cancelled or times out closes the connection (its reply
    may still come); the next call reconnects.
    """

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._conn: _Connection | None = None
        self._lock = anyio.Lock()
        self._closed = False
        client._dedicated.add(self)

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
        """Run one command and wait for its reply, however long the command blocks.

        :param args: the command and its arguments: ``execute("BLPOP", "queue", 5)``
        :param timeout: seconds to wait for the reply (``None``: no limit; the command's own
            timeout, such as BLPOP's, bounds it)
        :raises RedisReplyError: if the server answers with an error
        :raises RedisConnectionError: if the server cannot be reached or the connection broke
        :raises RedisTimeoutError: if the reply takes longer than ``timeout``
        :return: the reply
        """
        payload = _encode(args)
        async with self._lock:
            conn = await self._connection()
            reply: Any = _NEED_DATA
            try:
                with anyio.move_on_after(timeout):
                    await conn.stream.send(payload)
                    reply = await conn.read_reply()
            except _IO_ERRORS as exc:
                await self._discard()
                raise RedisConnectionError(f"lost the connection: {exc!r}") from exc
            except BaseException:
                await self._discard()  # cancelled mid-reply: the connection is out of step
                raise
            if reply is _NEED_DATA:  # timed out: the reply may still come, out of step
                await self._discard()
                raise RedisTimeoutError(f"no reply within {timeout} s")
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def abandon(self) -> None:
        """Drop the connection of an event loop that has finished (closed without awaiting)."""
        self._closed = True
        self._client._dedicated.discard(self)
        if self._conn is not None:
            _drop_stream(self._conn.stream)
            self._conn = None

    async def aclose(self) -> None:
        """Close the connection."""
        self._closed = True
        self._client._dedicated.discard(self)
        await self._discard()

    async def _connection(self) -> _Connection:
        if self._closed:
            raise RedisConnectionError("this blocking connection is closed")
        if self._conn is None:
            self._conn = await self._client._open()
        return self._conn

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class _Ack:
    """Confirmations still due for one (P)SUBSCRIBE; ``then`` is the resubscription that
    superseded it after a reconnect."""

    __slots__ = ("error", "remaining", "then")

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.error: RedisReplyError | None = None
        self.then: _Ack | None = None


class PubSub:
    """A subscriber on a connection of its own; made by :meth:`RedisClient.pubsub`.

    Any task may subscribe or unsubscribe while another waits for messages. There is no
    background task: whoever waits (for a message or a subscription's confirmation) reads the
    connection, and keeps for the others what is theirs. After a lost connection, the next read
    or call reconnects and resubscribes; messages published in between are lost.
    """

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._conn: _Connection | None = None
        self._channels: set[bytes] = set()
        self._patterns: set[bytes] = set()
        self._acks: deque[_Ack] = deque()
        self._messages: deque[tuple[bytes, bytes]] = deque()
        self._send_lock = anyio.Lock()
        self._reading = False
        self._progress = anyio.Event()
        self._reconnects = 0
        self._closed = False
        client._dedicated.add(self)

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established (messages may have been lost)."""
        return self._reconnects

    def abandon(self) -> None:
        """Drop the connection of an event loop that has finished (closed without awaiting)."""
        self._closed = True
        self._client._dedicated.discard(self)
        if self._conn is not None:
            _drop_stream(self._conn.stream)
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

    def __aiter__(self) -> AsyncIterator[tuple[bytes, bytes]]:
        return self

    async def __anext__(self) -> tuple[bytes, bytes]:
        if self._closed:
            raise StopAsyncIteration
        try:
            return await self.get_message()
        except RedisConnectionError:
            if self._closed:  # closed by another task while this one waited
                raise StopAsyncIteration from None
            raise

    async def subscribe(self, *channels: str | bytes) -> None:
        """Subscribe to channels; returns once the server has confirmed.

        A subscription stands once asked for: if this raises :class:`RedisConnectionError`,
        the next connection still subscribes to ``channels`` (unsubscribe to undo it).

        :param channels: channel names
        :raises RedisReplyError: if the server refuses (an ACL, say)
        :raises RedisConnectionError: if the server cannot be reached
        """
        await self._subscribe("SUBSCRIBE", self._channels, channels)

    async def psubscribe(self, *patterns: str | bytes) -> None:
        """Subscribe to channel patterns (``jobs:*``); returns once the server has confirmed.

        :param patterns: glob-style patterns
        :raises RedisReplyError: if the server refuses
        :raises RedisConnectionError: if the server cannot be reached
        """
        await self._subscribe("PSUBSCRIBE", self._patterns, patterns)

    async def unsubscribe(self, *channels: str | bytes) -> None:
        """Unsubscribe from channels (from all, without arguments). No message from them is
        delivered afterwards, even one already on its way.

        :param channels: channel names
        :raises RedisConnectionError: if the connection is closed
        """
        await self._unsubscribe("UNSUBSCRIBE", self._channels, channels)

    async def punsubscribe(self, *patterns: str | bytes) -> None:
        """Unsubscribe from patterns (from all, without arguments).

        :param patterns: glob-style patterns
        :raises RedisConnectionError: if the connection is closed
        """
        await self._unsubscribe("PUNSUBSCRIBE", self._patterns, patterns)

    async def get_message(self) -> tuple[bytes, bytes]:
        """Wait for the next message (bound the wait with ``anyio.move_on_after``: it is safe to
        cancel, no message is lost).

        :raises RedisConnectionError: if the connection was lost and cannot be re-established,
            or this subscriber is closed
        :return: ``(channel, data)``; for a pattern subscription, the channel that matched
        """
        while not self._messages:
            await self._pump()
        return self._messages.popleft()

    async def aclose(self) -> None:
        """Close the connection; waiting tasks get :class:`RedisConnectionError`."""
        self._closed = True
        self._client._dedicated.discard(self)
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        self._notify()

    # -- internals --

    async def _subscribe(
        self, command: str, table: set[bytes], names: tuple[str | bytes, ...]
    ) -> None:
        if not names:
            raise ValueError(f"{command} needs at least one name")
        keys = [_as_bytes(name) for name in names]
        ack = _Ack(len(keys))
        async with self._send_lock:
            conn = await self._recover_locked(None)
            table.update(keys)
            self._acks.append(ack)
            await self._send_locked(conn, _encode((command, *keys)))
        try:
            await self._wait_ack(ack)
        except RedisReplyError:
            table.difference_update(keys)
            raise

    async def _unsubscribe(
        self, command: str, table: set[bytes], names: tuple[str | bytes, ...]
    ) -> None:
        keys = [_as_bytes(name) for name in names]
        async with self._send_lock:
            if self._closed:
                raise RedisConnectionError("this pub/sub connection is closed")
            if keys:
                table.difference_update(keys)
            else:
                table.clear()
            if self._conn is not None:  # else the next connection subscribes to what is left
                await self._send_locked(self._conn, _encode((command, *keys)))

    async def _send_locked(self, conn: _Connection, payload: bytes) -> None:
        try:
            await conn.send_shielded(payload, self._client._command_timeout or _WRITE_LIMIT)
        except _IO_ERRORS:
            await self._recover_locked(conn)  # resubscribes to the tables, changes included

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
        except _IO_ERRORS:
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
        elif kind == b"pmessage":
            if reply[1] in self._patterns:
                self._messages.append((reply[2], reply[3]))
        elif kind in (b"subscribe", b"psubscribe") and self._acks:
            head = self._acks[0]
            head.remaining -= 1
            if head.remaining <= 0:
                self._acks.popleft()

    async def _recover(self, broken: _Connection | None) -> _Connection:
        async with self._send_lock:
            return await self._recover_locked(broken)

    async def _recover_locked(self, broken: _Connection | None) -> _Connection:
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
        conn = await self._client._open()
        try:
            await self._resubscribe(conn)
        except _IO_ERRORS as exc:
            await conn.close()
            raise RedisConnectionError(f"lost the pub/sub connection: {exc!r}") from exc
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _resubscribe(self, conn: _Connection) -> None:
        commands = [
            (command, *table)
            for command, table in (("SUBSCRIBE", self._channels), ("PSUBSCRIBE", self._patterns))
            if table
        ]
        count = len(self._channels) + len(self._patterns)
        fresh = _Ack(count) if count else None
        for old in self._acks:  # superseded: their waiters now wait for the resubscription
            old.remaining = 0
            old.then = fresh
        self._acks.clear()
        if fresh is not None:
            self._acks.append(fresh)
            payload = b"".join(_encode(c) for c in commands)
            await conn.send_shielded(payload, self._client._command_timeout or _WRITE_LIMIT)
