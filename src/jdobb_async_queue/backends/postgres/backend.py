"""The PostgreSQL backend: jobs in one table per namespace, every call one transaction (or one
statement: a plain enqueue, a claim).

Built on the public seam alone (``jdobb_async_queue.backends``), as a backend of your own would
be. See :mod:`.queries` for the SQL, :mod:`.store` for the transitions, :mod:`.pool` for
connections and threads, :mod:`.notify` for LISTEN/NOTIFY. Nothing connects before the first
call, so a backend can be made outside async code.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio.to_thread
import psycopg
from psycopg import sql

from ... import ConfigurationError
from ...backends import (
    WORKER_TTL,
    DuplicateJobError,
    JobRecord,
    Lease,
    Notice,
    Outcome,
    ProgressUpdate,
    QueueBackend,
    QueueClosedError,
    QueueStats,
    UpdateRecord,
    WorkerRecord,
    record_update,
    redact_url,
)
from . import queries as q
from . import store
from .notify import Notifier
from .pool import After, Pool, connect
from .store import Tx

__all__ = ["PostgresBackend", "enqueue_within", "schema_name"]

T = TypeVar("T")

#: A user's connection whose open transaction enqueues join (see :func:`enqueue_within`).
_WITHIN: ContextVar[psycopg.Connection[Any] | psycopg.AsyncConnection[Any] | None] = ContextVar(
    "jdobb_enqueue_within", default=None
)


@contextmanager
def enqueue_within(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
) -> Iterator[None]:
    """Make every enqueue in the block part of ``conn``'s open transaction (the outbox pattern):
    the jobs exist if and only if that transaction commits, and workers hear of them at commit.

    ``conn`` is a psycopg 3 connection, blocking (:class:`psycopg.Connection`, any event loop,
    the blocking :class:`jdobb_async_queue.sync.JobQueue` too) or asyncio
    (:class:`psycopg.AsyncConnection`), inside a transaction (``with conn.transaction():``)::

        with conn.transaction():
            conn.execute("INSERT INTO orders (id) VALUES (%s)", (42,))
            with enqueue_within(conn):
                job_id = await queue.enqueue("ship", {"order": 42})

    It applies to queues on the PostgreSQL backend, in this task (a context variable); the
    database must be the one the queue's URL names. An enqueue that fails (a duplicate id, an
    unknown dependency) rolls back only its own part (a savepoint): the transaction goes on.

    :raises ConfigurationError: if ``conn`` is not a psycopg 3 connection
    """
    if not isinstance(conn, (psycopg.Connection, psycopg.AsyncConnection)):
        raise ConfigurationError(
            f"enqueue_within takes a psycopg 3 Connection or AsyncConnection, not {conn!r}"
        )
    token = _WITHIN.set(conn)
    try:
        yield
    finally:
        _WITHIN.reset(token)


# Inside the user's transaction, its search_path put our schema first, then back (SET LOCAL
# semantics: a rolled-back savepoint undoes it by itself).
_PATH = "SELECT current_setting('search_path')"
_SET_PATH = "SELECT set_config('search_path', %s, true)"
#: Seconds (of the caller's clock) between two sweeps of expired jobs by claims.
EXPIRE_EVERY = 1.0


def schema_name(namespace: str) -> str:
    """The PostgreSQL schema (and LISTEN channel) of a namespace: ``jdobb_<namespace>``, cut
    to PostgreSQL's 63 bytes with a digest when longer."""
    name = f"jdobb_{namespace}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:16]
    return f"jdobb_{namespace.encode()[:40].decode(errors='ignore')}_{digest}"


class PostgresBackend(QueueBackend):
    """Jobs in a PostgreSQL database, shared by any number of processes and hosts.

    :param url: ``postgresql://[user[:password]@][host][:port][/dbname][?param=value...]``
        (``postgres://`` too; anything libpq takes, so ``PGHOST``/``PGUSER``/... fill in what
        the URL leaves out)
    :param namespace: isolates queues sharing one database: each has its own PostgreSQL
        schema, ``jdobb_<namespace>`` (:func:`schema_name`), created with its tables on first use
    :param pool_size: connections at most for calls (each backend opens one more for LISTEN);
        calls beyond that wait for a free one
    :param connect_timeout: seconds for one connection attempt
    :param retry_for: seconds a Broadcaster subscription rides out an outage before
        :class:`~jdobb_async_queue.BackendUnavailable` (workers ride out any outage)
    :raises ConfigurationError: for a URL that is not a PostgreSQL one, or bad options

    **Clock.** Every statement reads the database's ``now()``: leases, due times, reclaims and
    update stamps follow one clock whatever the hosts' clocks say; times a caller computed on its
    own clock are moved onto it. With a test clock (``JobQueue(clock=...)`` sets
    :attr:`test_clock`) the passed ``now`` drives everything.

    **Event loops.** The connections are blocking psycopg connections used from anyio worker
    threads (a plain enqueue and a claim drive their libpq from the event loop instead, by its
    non-blocking calls), so the backend runs under asyncio and trio, and from successive event
    loops. After
    :meth:`aclose` every call raises :class:`~jdobb_async_queue.QueueClosedError`.
    """

    name = "postgres"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "default",
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        retry_for: float = 10.0,
    ) -> None:
        _check_url(url)
        if pool_size < 1:
            raise ConfigurationError(f"pool_size must be at least 1, not {pool_size}")
        self._url = url
        self._namespace = namespace
        self.schema = schema_name(namespace)
        self._origin = uuid.uuid4().hex[:12]
        self._pool = Pool(
            url,
            self.schema,
            max_size=pool_size,
            connect_timeout=connect_timeout,
            prepare=store.prepare_session,
        )
        self._notifier = Notifier(
            url,
            self.schema,
            self._origin,
            where=self._pool.where,
            snapshot=self._snapshot,
            message=self._message,
            clock=self.local_now,
            connect_timeout=connect_timeout,
            patience=retry_for,
        )
        self._swept_at: float | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresBackend({_redacted(self._url)!r}, namespace={self._namespace!r})"

    @property
    def namespace(self) -> str:
        """The namespace this backend stores jobs in."""
        return self._namespace

    def _clock(self, now: float) -> tuple[float | None, Callable[[], float]]:
        """What a call's statements read the time from: the test clock's ``now`` (or None: the
        database's), and the caller's clock as the call starts (:func:`_since`); raises
        :class:`QueueClosedError` once closed."""
        if self._closed:
            raise QueueClosedError("the PostgreSQL backend")
        fixed = now if self.test_clock is not None else None
        return fixed, _since(now, fixed)

    async def _run(self, now: float, work: Callable[[Tx], T | After[T]]) -> T:
        """``work`` in one transaction; then this process hears what it changed."""
        fixed, since = self._clock(now)
        watched = self._notifier.watched()

        def transaction(conn: psycopg.Connection[Any]) -> tuple[Tx, T] | After[tuple[Tx, T]]:
            tx = Tx(conn, fixed, since(), self._origin, watched, channel=self.schema)  # anew
            result = work(tx)
            tx.announce(self.schema)
            if isinstance(result, After):
                late: After[T] = result
                return After(lambda: (tx, late.read()))
            return tx, result

        done: tuple[Tx, T] = await self._pool.call(transaction)
        tx, result = done
        self._notifier.deliver(
            tx.notices(),
            tx.updates,
            tx.deleted,
            changed=[*tx.changed, *tx.claimed],
            watched=watched,
        )
        return result

    # -- writes --------------------------------------------------------------------------------

    async def enqueue_many(self, records: Sequence[JobRecord], *, now: float) -> list[str]:
        within = _WITHIN.get()
        if within is not None:
            return await self._enqueue_within(within, records, now)
        if store.plain(records):  # the common call: one statement, on the event loop
            fixed, since = self._clock(now)
            record = records[0]
            rows = await self._pool.execute(
                q.INSERT_ONE,
                lambda: store.insert_one_params(
                    Tx(None, fixed, since(), self._origin), record, self.schema
                ),
            )
            if not rows:
                raise DuplicateJobError(record.id)
            return [record.id]
        return await self._run(now, lambda tx: store.enqueue_many(tx, records))

    async def _enqueue_within(
        self,
        conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
        records: Sequence[JobRecord],
        now: float,
    ) -> list[str]:
        """Enqueue on a user's connection, in its open transaction (see :func:`enqueue_within`)."""
        if self._closed:
            raise QueueClosedError("the PostgreSQL backend")
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            raise ConfigurationError(
                "enqueue_within needs the connection inside a transaction "
                "(with conn.transaction(): ...); it is not in one"
            )
        if not self._pool.ready:
            await self._pool.call(lambda _: None)  # the schema exists (created on first use)
        fixed = now if self.test_clock is not None else None
        # Our schema first; pg_temp last, so a temporary table of the user's named like one of
        # ours is never written to.
        ours = sql.Identifier(self.schema).as_string(None)
        tries = 2  # a race with another open transaction (same id or unique key) is run again
        if isinstance(conn, psycopg.AsyncConnection):
            for attempt in range(tries):
                tx = Tx(None, fixed, now, self._origin)
                try:
                    async with conn.transaction():  # a savepoint: a failure undoes only this
                        (path,) = await (await conn.execute(_PATH)).fetchone() or ("",)
                        await conn.execute(_SET_PATH, (f"{ours}, {path}, pg_temp",))
                        ids = await store.drive_async(conn, store.enqueue_steps(tx, records))
                        await store.drive_async(conn, tx.announce_steps(self.schema))
                        await conn.execute(_SET_PATH, (path,))
                    return ids
                except psycopg.errors.UniqueViolation:
                    if attempt == tries - 1:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

        def work() -> list[str]:
            assert isinstance(conn, psycopg.Connection)
            for attempt in range(tries):
                tx = Tx(None, fixed, now, self._origin)
                try:
                    with conn.transaction():
                        (path,) = conn.execute(_PATH).fetchone() or ("",)
                        conn.execute(_SET_PATH, (f"{ours}, {path}, pg_temp",))
                        ids = store.drive(conn, store.enqueue_steps(tx, records))
                        store.drive(conn, tx.announce_steps(self.schema))
                        conn.execute(_SET_PATH, (path,))
                    return ids
                except psycopg.errors.UniqueViolation:
                    if attempt == tries - 1:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

        return await anyio.to_thread.run_sync(work)

    async def claim_pending_job(
        self,
        job_types: Sequence[str] | None,
        *,
        limit: int = 1,
        worker_id: str,
        lease: float,
        now: float,
    ) -> list[JobRecord]:
        if self._pool.prepared is None and not self._closed:  # the first call: functions?
            await self._pool.call(lambda _: None, single=True)  # (connects; runs nothing)
        functions = bool(self._pool.prepared)
        sweep = self._swept_at is None or not 0 <= now - self._swept_at < EXPIRE_EVERY
        if sweep:
            self._swept_at = now

        if functions and not sweep:  # a claim alone: one statement, on the event loop
            return await self._claim_alone(job_types, limit, worker_id, lease, now)

        def work(tx: Tx) -> list[JobRecord] | After[list[JobRecord]]:
            if sweep:
                store.expire(tx)
            return store.claim(tx, job_types, limit, worker_id, lease, functions=functions)

        # With a sweep of expired jobs, or without the functions, a transaction.
        return await self._run(now, work)

    async def _claim_alone(
        self,
        job_types: Sequence[str] | None,
        limit: int,
        worker_id: str,
        lease: float,
        now: float,
    ) -> list[JobRecord]:
        """A claim as one call of the session's claim function, then what this process hears
        of it, as :meth:`_run` does."""
        call = partial(
            store.claim_statement,
            job_types=job_types,
            limit=limit,
            worker_id=worker_id,
            lease=lease,
        )
        done = await self._alone(now, call)
        if done is None:
            return []
        tx, rows = done
        records = store.claimed_records(tx, rows)
        self._deliver(tx, changed=tx.claimed)
        return records

    async def _alone(
        self, now: float, call: Callable[[Tx], tuple[str, dict[str, Any]] | None]
    ) -> tuple[Tx, list[Any]] | None:
        """The statement ``call`` makes (None: none) as one autocommit statement on the event
        loop (see :meth:`Pool.execute`); its rows, and the ``Tx`` to read them against."""
        fixed, since = self._clock(now)
        tx = Tx(None, fixed, now, self._origin, self._notifier.watched(), channel=self.schema)
        made = call(tx)
        if made is None:
            return None
        statement, values = made

        def params() -> dict[str, Any]:
            tx.cnow = since()
            return tx.params(**values)

        return tx, await self._pool.execute(statement, params)

    def _deliver(self, tx: Tx, *, changed: list[str]) -> None:
        """What this process hears of a statement run alone (it announced itself to others)."""
        self._notifier.deliver([], tx.updates, [], changed=changed, watched=tx.watched)

    async def finish(self, outcome: Outcome, *, now: float) -> bool:
        return (await self.finish_many([outcome], now=now))[0]

    async def finish_many(self, outcomes: Sequence[Outcome], *, now: float) -> list[bool]:
        if self._pool.prepared:  # completions alone: one statement, on the event loop
            done = await self._alone(now, partial(store.complete_statement, outcomes=outcomes))
            if done is not None:
                tx, rows = done
                stored = store.completed(tx, outcomes, rows)
                self._deliver(tx, changed=tx.changed)
                return stored
        return await self._run(now, lambda tx: store.finish_many(tx, outcomes))

    async def cancel(self, job_id: str, reason: str | None, *, now: float) -> bool:
        return await self._run(now, lambda tx: store.cancel(tx, job_id, reason))

    async def retry(self, job_id: str, *, delay: float, now: float) -> bool:
        return await self._run(now, lambda tx: store.retry(tx, job_id, delay))

    async def update_progress(self, update: ProgressUpdate, *, now: float) -> bool:
        return (await self.update_progress_many([update], now=now))[0]

    async def update_progress_many(
        self, updates: Sequence[ProgressUpdate], *, now: float
    ) -> list[bool]:
        return await self._run(now, lambda tx: store.update_progress_many(tx, updates))

    async def renew(self, lease: Lease, *, duration: float, now: float) -> bool:
        return (await self.renew_many([lease], duration=duration, now=now))[0]

    async def renew_many(
        self, leases: Sequence[Lease], *, duration: float, now: float
    ) -> list[bool]:
        if not leases:
            return []
        return await self._run(now, lambda tx: store.renew_many(tx, leases, duration))

    async def reclaim_expired(self, *, now: float) -> list[str]:
        return await self._run(now, store.reclaim_expired)

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, job_id: str, *, now: float) -> JobRecord | None:
        return await self._run(now, lambda tx: store.get(tx, job_id))

    async def list_jobs(
        self,
        status: str | None,
        *,
        job_type: str | None,
        limit: int,
        offset: int,
        now: float,
    ) -> list[JobRecord]:
        return await self._run(now, lambda tx: store.list_jobs(tx, status, job_type, limit, offset))

    async def stats(self, *, now: float) -> QueueStats:
        return await self._run(now, store.stats)

    async def purge(
        self,
        statuses: Iterable[str],
        *,
        before: float | None,
        job_type: str | None,
        now: float,
    ) -> int:
        wanted = list(statuses)
        return await self._run(now, lambda tx: store.purge(tx, wanted, before, job_type))

    async def next_due(self, job_types: Sequence[str] | None, *, now: float) -> float | None:
        delay = await self._run(now, lambda tx: store.next_due(tx, job_types))
        return None if delay is None else now + delay  # back onto the caller's clock

    # -- the worker registry ---------------------------------------------------------------------

    async def register_worker(self, worker: WorkerRecord, *, now: float) -> None:
        await self._run(now, lambda tx: store.register_worker(tx, worker, WORKER_TTL))

    async def remove_worker(self, worker_id: str) -> None:
        await self._run(self.local_now(), lambda tx: store.remove_worker(tx, worker_id))

    async def list_workers(self, *, now: float) -> list[WorkerRecord]:
        return await self._run(now, lambda tx: store.list_workers(tx, WORKER_TTL))

    # -- notifications -------------------------------------------------------------------------

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[Notice]]:
        if self._closed:
            raise QueueClosedError("the PostgreSQL backend")
        return self._notifier.listen()

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[AsyncIterator[UpdateRecord]]:
        if self._closed:
            raise QueueClosedError("the PostgreSQL backend")
        return self._notifier.subscribe(job_id)

    async def publish(self, update: UpdateRecord) -> None:
        await self._run(self.local_now(), lambda tx: store.post_message(tx, update))
        self._notifier.deliver((), (update,), ())

    async def _snapshot(self, job_id: str) -> UpdateRecord | None:
        record = await self.get(job_id, now=self.local_now())
        return None if record is None else record_update(record)

    async def _message(self, seq: int) -> UpdateRecord | None:
        return await self._run(self.local_now(), lambda tx: store.message(tx, seq))

    # -- lifecycle -----------------------------------------------------------------------------

    async def drop_namespace(self) -> None:
        """Delete the namespace's schema and everything in it (works after :meth:`aclose`)."""

        def drop() -> None:
            conn = connect(self._url, self._pool.connect_timeout, self._pool.where)
            with conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
                )

        await anyio.to_thread.run_sync(drop)

    async def aclose(self) -> None:
        """Close every connection. Calls after this raise
        :class:`~jdobb_async_queue.QueueClosedError`."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._notifier.aclose()
        finally:
            await self._pool.aclose()


def _since(now: float, fixed: float | None) -> Callable[[], float]:
    """The caller's clock as a transaction starts: ``now`` plus the time the call waited for a
    connection (so a wait is not taken for a clock difference, and times are not moved by it);
    a test clock's ``now`` as it is."""
    if fixed is not None:
        return lambda: now
    called = time.monotonic()
    return lambda: now + (time.monotonic() - called)


def _check_url(url: str) -> None:
    """A PostgreSQL URL libpq can read, with numeric ports.

    :raises ConfigurationError: otherwise (its message never shows the password)
    """
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:
        raise ConfigurationError(f"malformed PostgreSQL URL {_redacted(url)!r}: {exc}") from None
    if scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"not a PostgreSQL URL: {_redacted(url)!r} "
            "(use postgresql://user:password@host:port/dbname)"
        )
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        problem = f"malformed PostgreSQL URL {_redacted(url)!r}: {_redacted(str(exc))}"
        raise ConfigurationError(problem) from None
    for port in str(info.get("port", "")).split(","):
        if port and not port.isdigit():
            raise ConfigurationError(
                f"malformed PostgreSQL URL {_redacted(url)!r}: port {port!r} is not a number"
            )


def _redacted(text: str) -> str:
    """``text`` without any URL's password."""
    return redact_url(text)
