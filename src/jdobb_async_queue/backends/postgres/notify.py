"""LISTEN/NOTIFY for the PostgreSQL backend: worker notices and job updates between processes.

Every transaction that changes something sends, as part of its commit, NOTIFY payloads (see
``store.Tx.announce``). On the namespace's channel, for workers:

- ``j``: jobs may have become claimable (idle workers claim);
- ``c <fence> <id>``: a PROCESSING job was cancelled (its worker stops that attempt).

On its updates channel (``store.updates_channel``), for subscribers:

- ``u <origin> <id> ...``: these jobs changed or were deleted (subscribers read them again);
- ``p <origin> <update>``: a custom update (``Broadcaster.send``), or ``m <origin> <seq>`` when
  it was too large for a payload and waits in the ``messages`` table.

A process LISTENs to the updates channel only while it has subscribers (from the first one's
arrival, before its snapshot is read, to the last one's leaving), so a worker or a producer is
not sent every claim and completion of every other process: that traffic was about a fifth of
a busy worker's CPU per job.

Changes made by this backend reach its own workers and subscribers directly after the commit
(:meth:`Notifier.deliver`: exact updates, in order), so it skips payloads of its own origin.

All of one backend's listeners and subscribers share **one** connection, which does nothing but
LISTEN. There is no background task: a reader that finds its mailbox empty either reads the
connection itself (``anyio.wait_readable`` on its socket, then libpq's non-blocking
``consume_input``: no thread, no polling) and dispatches what it read into every mailbox, or
waits until the reader has. After a lost connection is re-established every listener gets a
``"jobs"`` notice and every subscriber reads its job afresh (NOTIFY is not queued for a
listener that is not connected).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec
import psycopg
from psycopg import sql

from ...backends import BackendUnavailable, Notice, QueueClosedError, UpdateRecord, gone_update
from .pool import connect
from .store import updates_channel

__all__ = ["Notifier"]

log = logging.getLogger("jdobb_async_queue.backend")

#: Items a reader's mailbox holds before the oldest is dropped.
MAILBOX_SIZE = 256
#: How long one wait on the connection lasts at most (a reader then lets others in).
READ_SLICE = 1.0
#: Seconds between attempts to reach a server that is down, at most.
BACKOFF_MAX = 2.0

T = TypeVar("T")


class Mailbox(Generic[T]):
    """A bounded queue for one reader that never blocks the writer: when full, the oldest
    item goes, so the newest (for a job, its terminal update) always arrives."""

    def __init__(self) -> None:
        self.items: deque[T] = deque(maxlen=MAILBOX_SIZE)

    def put(self, item: T) -> None:
        # A "jobs" wake-up already waiting says it all: a burst of them (one per enqueue)
        # must never push a cancellation out of the bounded queue.
        if item == _WAKE and _WAKE in self.items:
            return
        self.items.append(item)


_WAKE = Notice("jobs")


class _Fetch:
    """Read the job again: it changed in another process, or the connection was lost."""


_FETCH = _Fetch()


class _Message(msgspec.Struct, frozen=True):
    seq: int


class Notifier:
    """The LISTEN side of one PostgreSQL backend.

    :param url: the database's libpq URL
    :param channel: the namespace's channel
    :param origin: this backend's id (its own payloads are skipped)
    :param snapshot: the current update of a job (or None), to re-read it
    :param message: a custom update waiting in the ``messages`` table
    :param patience: seconds a subscriber waits through an outage before
        :class:`BackendUnavailable` (listeners wait as long as it lasts)
    """

    def __init__(
        self,
        url: str,
        channel: str,
        origin: str,
        *,
        where: str,
        snapshot: Callable[[str], Awaitable[UpdateRecord | None]],
        message: Callable[[int], Awaitable[UpdateRecord | None]],
        clock: Callable[[], float],
        connect_timeout: float,
        patience: float,
    ) -> None:
        self._url = url
        self._channel = channel
        self._origin = origin
        self._where = where
        self._snapshot = snapshot
        self._message = message
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._patience = patience
        self._conn: psycopg.Connection[Any] | None = None
        self._updates_channel = updates_channel(channel)
        self._watching = False  # the connection LISTENs to the updates channel
        self._listeners: set[Mailbox[Notice]] = set()
        self._subscribers: dict[str, set[Mailbox[object]]] = {}
        self._loop: object | None = None
        self._reading = False
        self._wanted = 0  # tasks waiting to hold the connection (see _hold_reading)
        self._changed = anyio.Event()
        self._lock = anyio.Lock()
        self._outage_since: float | None = None
        self._failures = 0
        self._missed = False
        self._closed = False

    def watched(self) -> frozenset[str]:
        """The jobs this process has subscribers for."""
        return frozenset(self._subscribers)

    def _bind_loop(self) -> None:
        """On an event loop other than the last one, forget its events and lock (the LISTEN
        connection is a blocking one: it serves any loop)."""
        loop = anyio.lowlevel.current_token().native_token
        if loop is not self._loop:
            self._loop = loop
            self._reading = False
            self._wanted = 0
            self._changed = anyio.Event()
            self._lock = anyio.Lock()

    # -- local delivery, after this backend's own commits ------------------------------------

    def deliver(
        self,
        notices: Iterable[Notice],
        updates: Iterable[UpdateRecord],
        deleted: Iterable[str],
        *,
        changed: Iterable[str] = (),
        watched: frozenset[str] = frozenset(),
    ) -> None:
        """Hand a committed transaction's notices and updates to this process's readers.

        ``watched`` is who had subscribers when the transaction began (``updates`` are theirs);
        a job in ``changed`` subscribed to since then is read again by its new subscriber,
        whose snapshot may predate the commit.
        """
        woke = False
        for job_id in changed:
            if job_id not in watched and job_id in self._subscribers:
                woke = self._put(job_id, _FETCH) or woke
        for notice in notices:
            for box in self._listeners:
                box.put(notice)
                woke = True
        for update in updates:
            woke = self._put(update.job_id, update) or woke
        for job_id in deleted:
            woke = self._put(job_id, gone_update(job_id, self._clock())) or woke
        if woke:
            self._notify()

    def _put(self, job_id: str, item: object) -> bool:
        boxes = self._subscribers.get(job_id)
        for box in boxes or ():
            box.put(item)
        return bool(boxes)

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    # -- the readers ---------------------------------------------------------------------------

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[Notice]]:
        """Receive worker notices while the context is open."""
        self._bind_loop()
        box: Mailbox[Notice] = Mailbox()
        self._listeners.add(box)
        try:
            await self._connected(patient=True)
            yield _Notices(self, box)
        finally:
            self._listeners.discard(box)

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[AsyncIterator[UpdateRecord]]:
        """Receive the updates of ``job_id`` while the context is open."""
        self._bind_loop()
        box: Mailbox[object] = Mailbox()
        self._subscribers.setdefault(job_id, set()).add(box)
        try:
            if await self._connected(patient=False) is not None:
                await self._watch()
            yield _Updates(self, box, job_id)
        finally:
            boxes = self._subscribers.get(job_id)
            if boxes is not None:
                boxes.discard(box)
                if not boxes:
                    del self._subscribers[job_id]
            if not self._subscribers and self._watching:
                with anyio.CancelScope(shield=True):
                    await self._unwatch()

    async def _watch(self) -> None:
        """LISTEN to the updates channel, unless the connection does already: once this
        returns, every change committed later reaches this process's subscribers (their
        snapshot is read after it)."""
        while not self._watching and (conn := self._conn) is not None:
            await self._hold_reading()
            try:
                if self._conn is conn and not self._watching:
                    await self._command(conn, "LISTEN")
                    self._watching = self._conn is conn
            finally:
                self._release_reading()

    async def _unwatch(self) -> None:
        """UNLISTEN the updates channel once the last subscriber has gone."""
        await self._hold_reading()
        try:
            conn = self._conn
            if conn is not None and self._watching and not self._subscribers:
                # Not watching from now: a subscriber arriving meanwhile LISTENs again after.
                self._watching = False
                await self._command(conn, "UNLISTEN")
        finally:
            self._release_reading()

    async def _hold_reading(self) -> None:
        """Become the connection's one reader: the current one is woken and hands over."""
        self._wanted += 1  # meanwhile no other reader starts
        try:
            if self._reading:
                self._notify()  # the reader's wait ends (its own event is set) ...
            while self._reading:
                await self._changed.wait()  # ... and it hands over as it finishes
        finally:
            self._wanted -= 1
        self._reading = True

    def _release_reading(self) -> None:
        self._reading = False
        self._notify()

    async def _command(self, conn: psycopg.Connection[Any], verb: str) -> None:
        """``LISTEN`` or ``UNLISTEN`` the updates channel, from the event loop (the reader's
        own way: libpq's non-blocking calls, no thread), dispatching what arrives meanwhile;
        a connection that fails or does not answer within the connect timeout is dropped
        (the next reader reconnects, and every subscriber then reads its job again)."""
        statement = _listening(verb, self._updates_channel)
        pgconn = conn.pgconn
        try:
            # Shielded (and bounded): a command cut off halfway would leave its reply unread
            # and the connection unusable.
            with anyio.CancelScope(shield=True), anyio.fail_after(self._connect_timeout):
                pgconn.send_query(statement.as_bytes(conn))
                while pgconn.flush():
                    await anyio.wait_writable(conn.fileno())
                while True:
                    pgconn.consume_input()
                    self._take_notifies(pgconn)
                    if not pgconn.is_busy():
                        break
                    await anyio.wait_readable(conn.fileno())
                error = None
                while (result := pgconn.get_result()) is not None:
                    if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
                        error = (result.error_message or b"").decode(errors="replace")
                self._take_notifies(pgconn)  # any that came with the reply
            if error is not None:
                raise psycopg.OperationalError(error)
        except (psycopg.Error, OSError, TimeoutError, anyio.ClosedResourceError) as exc:
            log.warning("PostgreSQL LISTEN connection lost: %s", exc or "no answer")
            self._lost(conn)

    async def aclose(self) -> None:
        """Close the LISTEN connection; waiting readers end."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close)
        self._notify()

    async def next_item(self, box: Mailbox[Any], *, patient: bool) -> Any:
        """Wait for the next item of ``box``, reading the connection when nobody else does."""
        while True:
            if box.items:
                return box.items.popleft()
            if self._closed:
                raise QueueClosedError("the PostgreSQL backend")
            if self._reading or self._wanted:
                await self._changed.wait()
            else:
                await self._read(patient)

    async def _read(self, patient: bool) -> None:
        self._reading = True
        try:
            conn = await self._connected(patient)
            if conn is None or self._wanted:  # someone waits to hold the connection
                return
            await self._wait(conn, self._changed)
            if not self._closed:
                self._drain(conn)
        finally:
            self._release_reading()

    async def _wait(self, conn: psycopg.Connection[Any], changed: anyio.Event) -> None:
        """Until the connection has something to read, something was delivered locally (the
        reader's own mailbox may have it), or a slice has passed."""

        async def readable() -> None:
            try:
                await anyio.wait_readable(conn.fileno())
            except (OSError, anyio.ClosedResourceError, psycopg.OperationalError):
                pass  # closed meanwhile: the drain that follows notices
            tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(readable)
            with anyio.move_on_after(READ_SLICE):
                await changed.wait()
            tg.cancel_scope.cancel()

    def _drain(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.pgconn.consume_input()
        except psycopg.OperationalError as exc:
            log.warning("PostgreSQL LISTEN connection lost: %s", exc)
            self._lost(conn)
            return
        self._take_notifies(conn.pgconn)

    def _take_notifies(self, pgconn: psycopg.pq.abc.PGconn) -> None:
        while (found := pgconn.notifies()) is not None:
            self._dispatch(found.extra.decode())

    def _lost(self, conn: psycopg.Connection[Any]) -> None:
        if self._conn is conn:
            self._conn = None
            self._watching = False
            self._missed = True  # what was sent meanwhile is gone: resync on reconnect
        conn.close()

    async def _connected(self, patient: bool) -> psycopg.Connection[Any] | None:
        """The LISTEN connection, (re)opened if needed; None after a failed attempt that
        ``patient`` readers wait out (with backoff)."""
        if self._closed:
            raise QueueClosedError("the PostgreSQL backend")
        if self._conn is not None:
            return self._conn
        async with self._lock:
            if self._conn is not None:
                return self._conn
            watch = bool(self._subscribers)
            try:
                conn = await anyio.to_thread.run_sync(self._open, watch)
            except BackendUnavailable:
                now = anyio.current_time()
                self._outage_since = self._outage_since or now
                if not patient and now - self._outage_since > self._patience:
                    raise
                self._failures += 1
                delay = min(0.05 * 2 ** min(self._failures, 8), BACKOFF_MAX)
                await anyio.sleep(delay * (0.5 + random.random() / 2))
                return None
            if self._closed:  # closed while it was being opened
                await anyio.to_thread.run_sync(conn.close)
                raise QueueClosedError("the PostgreSQL backend")
            reconnected = self._missed or self._outage_since is not None or self._failures > 0
            self._conn, self._outage_since, self._failures = conn, None, 0
            self._watching = watch
            self._missed = False
            if reconnected:
                self._resync()
            return conn

    def _open(self, watch: bool) -> psycopg.Connection[Any]:
        conn = connect(self._url, self._connect_timeout, self._where)
        try:
            conn.execute(_listening("LISTEN", self._channel))
            if watch:
                conn.execute(_listening("LISTEN", self._updates_channel))
        except psycopg.OperationalError as exc:
            conn.close()
            raise BackendUnavailable(f"PostgreSQL at {self._where}: {exc}") from exc
        return conn

    def _resync(self) -> None:
        """After an outage: workers claim again, subscribers read their jobs afresh."""
        for box in self._listeners:
            box.put(Notice("jobs"))
        for boxes in self._subscribers.values():
            for item_box in boxes:
                item_box.put(_FETCH)

    def _dispatch(self, payload: str) -> None:
        try:
            self._dispatch_one(payload)
        except ValueError as exc:  # anyone may NOTIFY the channel: a stray payload is ignored
            log.error("ignored a malformed notice on %r: %s", self._channel, exc)

    def _dispatch_one(self, payload: str) -> None:
        kind, _, rest = payload.partition(" ")
        if kind == "j":
            for box in self._listeners:
                box.put(Notice("jobs"))
        elif kind == "c":
            fence, _, job_id = rest.partition(" ")
            for box in self._listeners:
                box.put(Notice("cancel", job_id, int(fence)))
        else:
            origin, _, rest = rest.partition(" ")
            if origin == self._origin:
                return
            if kind == "u":
                if rest == "*":  # too many to name: everyone reads again
                    for job_id in list(self._subscribers):
                        self._put(job_id, _FETCH)
                    return
                try:
                    ids = msgspec.json.decode(rest, type=list[str])
                except msgspec.DecodeError as exc:
                    log.error("ignored an undecodable notice on %r: %s", self._channel, exc)
                    return
                for job_id in ids:
                    self._put(job_id, _FETCH)
            elif kind == "p":
                try:
                    update = msgspec.json.decode(rest, type=UpdateRecord)
                except msgspec.DecodeError as exc:
                    log.error("ignored an undecodable update on %r: %s", self._channel, exc)
                    return
                self._put(update.job_id, update)
            elif kind == "m":
                for subscribed in self._subscribers.values():
                    for item_box in subscribed:
                        item_box.put(_Message(int(rest)))

    async def fetch(self, job_id: str) -> UpdateRecord:
        """The job's state now, or ``gone`` if it no longer exists."""
        found = await self._snapshot(job_id)
        return gone_update(job_id, self._clock()) if found is None else found

    async def message(self, seq: int) -> UpdateRecord | None:
        return await self._message(seq)


def _listening(verb: str, channel: str) -> sql.Composed:
    """``LISTEN`` or ``UNLISTEN`` a channel."""
    return sql.SQL(f"{verb} {{}}").format(sql.Identifier(channel))


class _Notices:
    """A listener's stream of notices (a plain iterator: nothing is held across yields)."""

    def __init__(self, notifier: Notifier, box: Mailbox[Notice]) -> None:
        self._notifier = notifier
        self._box = box

    def __aiter__(self) -> _Notices:
        return self

    async def __anext__(self) -> Notice:
        item = await self._notifier.next_item(self._box, patient=True)
        assert isinstance(item, Notice)
        return item


class _Updates:
    """A subscriber's stream of one job's updates, in ``update_seq`` order."""

    def __init__(self, notifier: Notifier, box: Mailbox[object], job_id: str) -> None:
        self._notifier = notifier
        self._box = box
        self._job_id = job_id
        self._seq = -1
        self._ended = False

    def __aiter__(self) -> _Updates:
        return self

    async def __anext__(self) -> UpdateRecord:
        while True:
            if self._ended:
                raise StopAsyncIteration
            item = await self._notifier.next_item(self._box, patient=False)
            if isinstance(item, _Fetch):
                item = await self._notifier.fetch(self._job_id)
            elif isinstance(item, _Message):
                item = await self._notifier.message(item.seq)
                if item is None or item.job_id != self._job_id:
                    continue
            assert isinstance(item, UpdateRecord)
            if item.gone:
                self._ended = True
            elif item.data is None:
                if item.update_seq <= self._seq:
                    continue  # seen already (read back after it was delivered)
                self._seq = item.update_seq
            return item
