"""Connections of the PostgreSQL backend: psycopg 3's blocking connections, driven from anyio
worker threads, so one backend runs unchanged under asyncio and trio (see
``docs/design-notes.md`` for the measurement behind this choice). The two hottest calls, a
plain enqueue and a claim, are one statement each: :meth:`Pool.execute` runs those on the event
loop instead, through libpq's non-blocking interface on the same connections (no thread hop).

A :class:`Pool` holds at most ``max_size`` connections, opened on demand, and as many worker
threads (its own :class:`anyio.CapacityLimiter`): a call waits for a free connection rather than
opening more. Each call is one transaction, or one statement in autocommit (:meth:`Pool.call`).
A transaction that loses a race
the database detects (deadlock, serialization failure, a unique index taken meanwhile) is run
again from the start; an idle connection the server has closed meanwhile (a restart) is
noticed before use and replaced; any other loss of the server raises
:class:`~jdobb_async_queue.BackendUnavailable`.
"""

from __future__ import annotations

import functools
import hashlib
import re
import select
import threading
import weakref
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import psycopg
from psycopg import errors, pq, sql
from psycopg.adapt import PyFormat, Transformer

from ... import ConfigurationError
from ...backends import BackendUnavailable

__all__ = ["SCHEMA_VERSION", "After", "Pool"]

T = TypeVar("T")

#: The schema version this code reads and writes (``schema_v1.sql`` ... beside this module).
SCHEMA_VERSION = 1
#: Times a transaction that lost a race is run again before its error is raised.
RACE_RETRIES = 8
_RACES = (errors.DeadlockDetected, errors.SerializationFailure, errors.UniqueViolation)
#: What a single statement on the loop runs again for (a plain enqueue's key taken meanwhile
#: is the caller's to decide, not a race).
_STATEMENT_RACES = (errors.DeadlockDetected, errors.SerializationFailure)


def migrations() -> list[tuple[int, str]]:
    """``(version, SQL)`` of every schema version, in order."""
    here = resources.files(__package__)
    return [
        (v, here.joinpath(f"schema_v{v}.sql").read_text()) for v in range(1, SCHEMA_VERSION + 1)
    ]


class After(Generic[T]):
    """What a transaction's work returns when its result is read after the ``COMMIT`` (its
    statements announced themselves): the pool calls ``read`` once the pipeline has synced."""

    def __init__(self, read: Callable[[], T]) -> None:
        self.read = read


class Pool:
    """Up to ``max_size`` connections to one database, each with ``search_path`` set to the
    namespace's ``schema`` (created, with its tables, on first use).

    :param url: a libpq URL (``postgresql://user:password@host:port/db``)
    :param schema: the PostgreSQL schema of the namespace
    :param max_size: connections (and worker threads) at most
    :param connect_timeout: seconds for one connection attempt
    :param prepare: run on each new connection once its schema exists (it makes the session's
        functions, and says whether it could: :attr:`prepared`)
    """

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        max_size: int,
        connect_timeout: float,
        prepare: Callable[[psycopg.Connection[Any]], bool] | None = None,
    ) -> None:
        self.url = url
        self._prepare = prepare
        #: What ``prepare`` said of the last connection opened; None before the first.
        self.prepared: bool | None = None
        self.schema = schema
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._ready = False  # the schema is known to exist at this version
        self._limiters: dict[object, anyio.CapacityLimiter] = {}
        self.closed = False

    # -- from the event loop ---------------------------------------------------------------

    async def call(
        self, work: Callable[[psycopg.Connection[Any]], Any], *, single: bool = False
    ) -> Any:
        """Run ``work(conn)`` in one transaction in a worker thread; return what it returns
        (what an :class:`After` it returns reads).

        :param single: ``work`` runs one statement, which is a transaction by itself: no
            ``BEGIN``/``COMMIT`` around it (one round trip)
        """
        run = self.run_single if single else self.run
        return await anyio.to_thread.run_sync(run, work, limiter=self._limiter())

    async def execute(
        self, statement: str, params: Callable[[], Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit on the event loop, without a worker thread; return
        its rows.

        The statement (``%(name)s`` placeholders, as psycopg takes them) is prepared on each
        connection the first time it runs there, and its parameters (from ``params()``, called
        as the statement starts: a call that waited for a connection keeps its times) go as
        text, typed by the server. It is shielded from cancellation, as a call in a worker
        thread is: a statement cut off halfway would leave its reply unread. It takes one of
        the pool's places (the :class:`~anyio.CapacityLimiter` the threads share), so the pool
        still never opens more than ``max_size`` connections.

        :raises BackendUnavailable: when the server is lost
        :raises psycopg.Error: for an error the statement raised
        """
        async with self._limiter():
            conn = self._take_idle()
            if conn is None:
                conn = await anyio.to_thread.run_sync(self._connect)
            try:
                with anyio.CancelScope(shield=True):
                    rows = await self._execute_retrying(conn, statement, params)
            except (psycopg.OperationalError, OSError) as exc:
                conn.close()
                raise BackendUnavailable(f"PostgreSQL at {self.where}: {exc}") from exc
            finally:
                self._give_back(conn)
        return rows

    @staticmethod
    async def _execute_retrying(
        conn: psycopg.Connection[Any], statement: str, params: Callable[[], Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        # A statement in autocommit that lost a deadlock or a serialization race was rolled
        # back whole: it runs again, as a transaction does (Pool.run).
        for attempt in range(RACE_RETRIES):
            try:
                return await _execute(conn, statement, params())
            except _STATEMENT_RACES:
                if attempt == RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Close every idle connection (those in use close when their call returns)."""
        self.closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _limiter(self) -> anyio.CapacityLimiter:
        # One per event loop: a limiter belongs to the loop it was made on.
        loop = anyio.lowlevel.current_token().native_token
        limiter = self._limiters.get(id(loop))
        if limiter is None:
            self._limiters.clear()
            limiter = self._limiters[id(loop)] = anyio.CapacityLimiter(self.max_size)
        return limiter

    # -- in a worker thread ------------------------------------------------------------------

    def run(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """Run ``work`` in one transaction (see the module docs for what is retried).

        The transaction runs in pipeline mode: statements whose results ``work`` does not read
        go out without waiting, so ``BEGIN`` travels with the first query and ``COMMIT`` with
        the last writes (most calls take one or two round trips).
        """
        conn = self._take()
        try:
            for attempt in range(RACE_RETRIES):
                try:
                    with conn.pipeline(), conn.transaction():
                        result = work(conn)
                    return result.read() if isinstance(result, After) else result
                except _RACES:
                    if attempt == RACE_RETRIES - 1:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover
        except psycopg.OperationalError as exc:
            conn.close()
            raise BackendUnavailable(f"PostgreSQL at {self.where}: {exc}") from exc
        finally:
            self._give_back(conn)

    def run_single(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """Run ``work``, one statement, in autocommit (see :meth:`call`)."""
        conn = self._take()
        try:
            result = work(conn)
            return result.read() if isinstance(result, After) else result
        except psycopg.OperationalError as exc:
            conn.close()
            raise BackendUnavailable(f"PostgreSQL at {self.where}: {exc}") from exc
        finally:
            self._give_back(conn)

    def _take(self) -> psycopg.Connection[Any]:
        """An idle connection that is still alive, else a new one."""
        return self._take_idle() or self._connect()

    def _take_idle(self) -> psycopg.Connection[Any] | None:
        """An idle connection that is still alive, or None (never blocks)."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if _alive(conn):
                return conn
            conn.close()  # the server closed it while it sat idle (a restart, a timeout)

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            return
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            return
        with self._lock:
            if not self.closed and len(self._idle) < self.max_size:
                self._idle.append(conn)
                return
        conn.close()

    @property
    def ready(self) -> bool:
        """Whether the schema is known to exist (a connection has checked it)."""
        return self._ready

    @property
    def where(self) -> str:
        """``host:port/dbname``, for messages (never the password)."""
        info = psycopg.conninfo.conninfo_to_dict(self.url)
        return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self.url, self.connect_timeout, self.where)
        try:
            path = sql.Identifier(self.schema).as_string(conn)
            conn.execute("SELECT set_config('search_path', %s, false)", (path,))
            if not self._ready:
                ensure_schema(conn, self.schema)
                self._ready = True
            if self._prepare is not None:
                self.prepared = self._prepare(conn)
        except psycopg.OperationalError as exc:  # the server went away while we set it up
            conn.close()
            raise BackendUnavailable(f"PostgreSQL at {self.where}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn


# -- one statement on the event loop (Pool.execute) -------------------------------------------

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
#: The statements prepared on each connection (by their names), for as long as it lives.
_PREPARED: weakref.WeakKeyDictionary[psycopg.Connection[Any], set[bytes]] = (
    weakref.WeakKeyDictionary()
)


@functools.cache
def _numbered(statement: str) -> tuple[bytes, bytes, tuple[str, ...]]:
    """The name ``statement`` is prepared under, its text with ``$n`` for each ``%(name)s``,
    and the names in the order of their numbers."""
    if "%%" in statement:
        raise ValueError(f"a literal % in a statement for Pool.execute: {statement}")
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    text = _PLACEHOLDER.sub(number, statement)
    name = "jdobb_" + hashlib.sha256(text.encode()).hexdigest()[:20]
    return name.encode(), text.encode(), tuple(names)


async def _execute(
    conn: psycopg.Connection[Any], statement: str, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """``statement`` on ``conn`` by libpq's non-blocking calls, preparing it there first."""
    name, text, names = _numbered(statement)
    pgconn = conn.pgconn
    transformer = Transformer(conn)  # the connection's adapters, as its cursors use
    values = transformer.dump_sequence([params[n] for n in names], [PyFormat.TEXT] * len(names))
    # What is prepared is remembered per connection, but psycopg may deallocate every prepared
    # statement of its connection (DEALLOCATE ALL, after a ROLLBACK or a DROP on it) without our
    # knowing: a statement found missing is prepared again, one found there already is the
    # same statement (its name is its text's digest).
    prepared = _PREPARED.setdefault(conn, set())
    for attempt in range(2):
        if name not in prepared:
            pgconn.send_prepare(name, text)
            try:
                _check(await _results(conn), conn)
            except errors.DuplicatePreparedStatement:
                pass
            prepared.add(name)
        pgconn.send_query_prepared(name, values)
        try:
            result = _check(await _results(conn), conn)
        except errors.InvalidSqlStatementName:
            prepared.discard(name)
            if attempt:
                raise
        else:
            break
    transformer.set_pgresult(result)
    return transformer.load_rows(0, result.ntuples, tuple)


async def _results(conn: psycopg.Connection[Any]) -> list[pq.abc.PGresult]:
    """Send what is queued, then read every result of the query sent (waiting on the socket)."""
    pgconn = conn.pgconn
    fd = conn.fileno()
    while pgconn.flush():
        await anyio.wait_writable(fd)
    results: list[pq.abc.PGresult] = []
    while True:
        pgconn.consume_input()
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                return results
            results.append(result)
        await anyio.wait_readable(fd)


def _check(results: list[pq.abc.PGresult], conn: psycopg.Connection[Any]) -> pq.abc.PGresult:
    """The one result of a statement, or the error it carries, raised."""
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(result, encoding=conn.info.encoding)
    if len(results) != 1:
        raise psycopg.InterfaceError(f"expected one result, got {len(results)}")
    return results[0]


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection still works: an idle one has nothing to read unless the
    server is closing it (then its socket is readable: the goodbye, or end of file)."""
    try:
        if _readable(conn.fileno()):
            conn.pgconn.consume_input()
            return False
    except (OSError, ValueError, psycopg.Error):
        return False
    return not conn.broken


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read now (``poll``: ``select`` fails past fd 1023)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - Windows


#: TCP keepalives and a send timeout, so a peer that vanished without closing its sockets (a
#: partition, a host that died) is noticed in about half a minute rather than the kernel's
#: quarter of an hour; a URL that sets any of these keeps its own.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def connection_options(url: str, timeout: float) -> dict[str, Any]:
    """What every connection of the backend adds to its URL."""
    given = psycopg.conninfo.conninfo_to_dict(url)
    options: dict[str, Any] = {k: v for k, v in KEEPALIVES.items() if k not in given}
    if "connect_timeout" not in given:
        options["connect_timeout"] = max(1, round(timeout))
    return options


def connect(url: str, timeout: float, where: str) -> psycopg.Connection[Any]:
    """A new autocommit connection.

    :raises BackendUnavailable: when the server cannot be reached
    """
    try:
        return psycopg.Connection.connect(url, autocommit=True, **connection_options(url, timeout))
    except psycopg.OperationalError as exc:
        raise BackendUnavailable(f"PostgreSQL at {where}: {exc}") from exc


def ensure_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the namespace's schema and tables, or migrate them, in one transaction, under an
    advisory lock so processes starting together do it once.

    :raises ConfigurationError: when the user may not create them (nothing is created), or the
        schema is newer than this code
    """
    name = sql.Identifier(schema)
    meta = sql.SQL("{}.schema_version").format(name)
    exists = conn.execute("SELECT to_regclass(%s)", (meta.as_string(conn),)).fetchone()
    if exists is not None and exists[0] is not None and _version(conn, meta) == SCHEMA_VERSION:
        return
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema,))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} (version integer NOT NULL)").format(meta)
            )
            version = _version(conn, meta)
            if version > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"PostgreSQL schema {schema!r} is at version {version}, newer than this "
                    f"jdobb-async-queue understands ({SCHEMA_VERSION}): upgrade the package"
                )
            for number, script in migrations():
                if number > version:
                    conn.execute(script.encode())
                    conn.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(meta), (number,))
    except errors.InsufficientPrivilege as exc:
        raise ConfigurationError(
            f"the PostgreSQL user may not create schema {schema!r} and its tables ({exc}); "
            "nothing was created: grant CREATE on the database, or have an administrator "
            "create the schema once with a user that may"
        ) from exc


def _version(conn: psycopg.Connection[Any], meta: sql.Composable) -> int:
    row = conn.execute(sql.SQL("SELECT max(version) FROM {}").format(meta)).fetchone()
    return 0 if row is None or row[0] is None else int(row[0])
