"""The SQLite backend: durable jobs in one file, shared by every process that opens it.

``JobQueue(backend="sqlite", url="sqlite:///jobs.db")``. The stdlib ``sqlite3`` driver runs in
the backend's own database thread, so the backend works the same under asyncio and trio and
never blocks the event loop. The SQL layer lives beside this module, in its package
(:mod:`jdobb_async_queue.backends.sqlite`); this module is its async face:

- **group commit** -- every call appends a request to a pending list. If no batch is running,
  the caller becomes the *leader*: it takes everything pending to the database thread
  (:mod:`.thread`, the backend's own) and runs it as one transaction (one commit for many
  enqueues, completions, progress updates and claims), then hands each request its result or
  its own error. Calls that arrive meanwhile wait, and the first of them leads the next batch.
  A lone call goes out at once; no background task is needed, so a queue used without a
  Worker or ``async with`` works the same.
- **notifications** -- in this process, notices and job updates go straight to the listening
  workers and subscribers once their transaction has committed. Other processes' commits are
  seen through ``PRAGMA data_version`` (checked by every batch): they wake idle workers, re-read
  the subscribed jobs and the jobs running here, and so deliver remote updates and
  cancellations. While someone listens or subscribes, the backend looks when its doorbell
  rings (:mod:`.doorbell`: other processes ring it after each commit) and at the latest every
  ``poll_interval``. Custom updates (``Broadcaster.send``) travel through a small table, kept a
  minute. The waiting happens inside the streams' ``__anext__`` (no task outlives a call).
- **ordered updates** -- every stored change of a job bumps its ``update_seq`` in the same
  transaction. A subscriber gets each state once: states are de-duplicated by ``update_seq``
  (never by timestamps), whether this process made the change or read it back after another
  process's commit. A watched job that is deleted (purged, expired; here or by another process)
  yields one ``gone`` update, and its stream ends.
- **event loops** -- nothing outlives a call but the connection, the database thread and the
  doorbell, none of them tied to an event loop: a queue works from successive loops
  (``anyio.run`` under asyncio, then trio, ...). State a finished loop left behind (a batch it
  never handed over, its listeners and subscribers) is dropped when the next loop calls.
- **closing** -- after :meth:`SQLiteBackend.aclose` every call, and every open listener or
  subscriber stream, raises :class:`~jdobb_async_queue.QueueClosedError` at once (closing is
  no outage, so nothing retries it).
- **corrupt rows** -- set aside (FAILED with a clear error, logged), never a crash: see
  :mod:`.writes`.

See ``docs/sqlite.md`` for durability, multi-process use and the URL options.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, Generic, TypeVar, cast

import anyio

from ..._errors import BackendUnavailable, QueueClosedError
from ..._models import QueueStats
from ..._records import (
    JobRecord,
    Lease,
    Outcome,
    ProgressUpdate,
    UpdateRecord,
    WorkerRecord,
    gone_update,
)
from .._hub import Mailbox
from ..base import Notice, QueueBackend
from . import reads, registry, writes
from .doorbell import Doorbell, wake_directory
from .store import BatchReport, Op, SchemaVersionError, Served, Settings, Store
from .thread import DatabaseThread
from .tx import CorruptRow, Tx, update_of

__all__ = ["SQLiteBackend", "SchemaVersionError"]

T = TypeVar("T")
_BUFFER = 256  # per listener / subscriber mailbox (a full one drops its oldest entry)
#: The ``_seen`` mark of a job whose ``gone`` update was delivered: nothing more for it.
_GONE = sys.maxsize
logger = logging.getLogger("jdobb_async_queue.backend")


class _Closed:
    """Put in every open stream's mailbox by ``aclose``: the stream raises QueueClosedError."""


_CLOSED = _Closed()


class _Nothing:
    """What :meth:`SQLiteBackend._wait` returns when its wait ended without an item."""


_NOTHING = _Nothing()


class _Request:
    """One call waiting for (or being served by) a batch."""

    __slots__ = ("done", "lead", "op", "served", "taken", "writes")

    def __init__(self, op: Op, writes: bool) -> None:
        self.op = op
        self.writes = writes
        self.done = anyio.Event()
        self.served: Served | None = None
        self.taken = False  # in a batch now: its effect will happen whatever the caller does
        self.lead = False  # handed the leadership of the next batch

    def outcome(self) -> Any:
        assert self.served is not None
        if self.served.error is not None:
            raise self.served.error
        return self.served.result


class SQLiteBackend(QueueBackend):
    """Jobs in a SQLite database file (or a private in-memory database).

    :param url: ``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` or
        ``sqlite:///:memory:``, with optional query options ``busy_timeout`` (ms, default
        5000), ``synchronous`` (``normal``, ``full`` or ``extra``; default ``normal``) and
        ``poll_interval`` (seconds between looks for other processes' commits where no
        doorbell rings; default 0.1)
    :raises ConfigurationError: for a malformed URL or an unknown option

    The file is opened by the first call, in the database thread; that call raises
    :class:`~jdobb_async_queue.BackendUnavailable` if the file cannot be opened or stays locked
    beyond ``busy_timeout``, :class:`~jdobb_async_queue.ConfigurationError` if it is not a
    SQLite database (or not a queue), and :class:`SchemaVersionError` if a newer version of this
    library wrote it. A failed open is retried by the next call. After :meth:`aclose`, every
    call raises :class:`~jdobb_async_queue.QueueClosedError`.
    """

    name = "sqlite"

    def __init__(self, url: str) -> None:
        self.settings = Settings.from_url(url)
        self._store = Store(self.settings, origin=uuid.uuid4().hex)
        self._pending: list[_Request] = []
        self._leading = False
        self._closed = False
        self._idle: anyio.Event | None = None
        # Our own thread, so threads the application starts never hold up a batch.
        self._thread = DatabaseThread(f"jdobb-async-queue sqlite {self.settings.path}")
        self._last_batch = -float("inf")
        self._listeners: set[Mailbox[Notice | _Closed]] = set()
        self._subscribers: dict[str, set[Mailbox[UpdateRecord | _Closed]]] = {}
        self._seen: dict[str, int] = {}  # subscribed job -> last update_seq delivered
        self._running: dict[str, int] = {}  # claimed here while a worker listens -> fence
        self._corrupt: set[str] = set()  # watched jobs read back corrupt: to set aside
        self._token: object = None  # the event loop that called last
        # Rung by other processes after their commits (see .doorbell); None: poll only.
        self._doorbell: Doorbell | None = None
        self._doorbell_tried = False
        self._rings_seen = 0  # the doorbell's rings when the last batch began

    # -- group commit ----------------------------------------------------------------------------

    def _closed_error(self) -> QueueClosedError:
        return QueueClosedError(f"the SQLite backend on {self.settings.path}")

    async def _call(self, op: Callable[[Tx], T], *, writes: bool = True) -> T:
        if self._closed:
            raise self._closed_error()
        self._check_loop()
        request = _Request(op, writes)
        self._pending.append(request)
        if self._leading:
            await self._follow(request)
            if request.served is not None:
                return cast(T, request.outcome())
        else:
            self._leading = True
        await self._lead()
        return cast(T, request.outcome())

    async def _follow(self, request: _Request) -> None:
        """Wait until a batch has served ``request`` or handed it the next one to lead."""
        try:
            await request.done.wait()
        except BaseException:
            if not request.taken:  # cancelled before any batch took it: it never happens
                self._pending.remove(request)
                if request.lead:
                    self._hand_over()
            raise

    async def _lead(self) -> None:
        """Run everything pending as one batch, then hand the leadership on."""
        try:
            # Shielded: the followers' results depend on these batches, whatever happens to
            # the leader's own caller (the thread cannot be abandoned half-way anyway).
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()  # let requests made in this same tick join
                batch, self._pending = self._pending, []
                await self._run(batch)
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._pending:
            successor = self._pending[0]
            successor.lead = True
            successor.done.set()
        else:
            self._leading = False
            if self._idle is not None:
                self._idle.set()

    async def _run(self, batch: list[_Request]) -> None:
        for request in batch:
            request.taken = True
        try:
            await self._execute(batch)
        finally:
            for request in batch:
                if request.served is None:  # only if _execute itself broke: say so to all
                    request.served = Served(None, error=RuntimeError("the SQLite batch failed"))
                request.done.set()

    async def _execute(self, batch: list[_Request]) -> None:
        self._last_batch = anyio.current_time()
        if self._doorbell is not None:  # every batch looks for others' commits
            self._rings_seen = self._doorbell.rings
        requests = [(r.op, r.writes) for r in batch]
        watched = frozenset(self._subscribers)
        watch_ids = [*self._subscribers, *self._running] if self._cross_process else []
        try:
            report = await self._thread.run(partial(self._store.run, requests, watched, watch_ids))
        except Exception as exc:  # the batch as a whole failed: nothing was committed
            for request in batch:
                request.served = Served(None, error=exc)
            return
        for request, served in zip(batch, report.served, strict=True):
            request.served = served
        self._announce(report, watch_ids)

    def _check_loop(self) -> None:
        """Drop what a finished event loop left behind, when another loop calls.

        A backend serves one loop at a time; a queue may outlive a loop (``anyio.run`` once,
        then again). Normally a loop leaves nothing (every batch hands over, every stream
        closes its context), but a loop that stopped abruptly can leave a batch that never
        handed over (whose requests nobody waits for) and streams whose events belong to it.
        """
        token = anyio.lowlevel.current_token()
        if token == self._token:
            return
        previous, self._token = self._token, token
        if previous is None or not _finished(previous):
            return
        self._pending = []
        self._leading = False
        self._idle = None
        self._listeners.clear()
        self._subscribers.clear()
        self._seen.clear()
        self._running.clear()
        if self._doorbell is not None:
            self._doorbell.reset()

    # -- notifications ---------------------------------------------------------------------------

    @property
    def _cross_process(self) -> bool:
        # A private in-memory database has no other connection to hear from.
        return not self.settings.in_memory and bool(self._listeners or self._subscribers)

    def _announce(self, report: BatchReport, watch_ids: Sequence[str]) -> None:
        """Deliver what a committed batch changed: others' commits first, then ours."""
        if report.foreign:
            self._notify(Notice("jobs"))
            self._refresh(report.watched_rows, watch_ids)
            for update in report.messages:
                self._deliver(update)
        for served in report.served:
            tx = served.tx
            if tx is None:
                continue
            for update in tx.updates:
                self._deliver(update)
            for job_id, fence in tx.cancelled:
                self._running.pop(job_id, None)
                self._notify(Notice("cancel", job_id, fence))
            if tx.wake:
                self._notify(Notice("jobs"))

    def _refresh(self, rows: Iterable[tuple[Any, ...]], watch_ids: Sequence[str]) -> None:
        """Publish remote changes of subscribed jobs (each ``update_seq`` once, see
        :meth:`_deliver`), ``gone`` for those deleted; stop jobs cancelled remotely."""
        unseen = {job_id for job_id in watch_ids if job_id in self._running}
        missing = {job_id for job_id in watch_ids if job_id in self._subscribers}
        for row in rows:  # queries.WATCH: the job's update, then its fence
            job_id, status, fence = row[0], row[1], row[-1]
            missing.discard(job_id)
            if job_id in self._subscribers:
                try:
                    update = update_of(row)
                except CorruptRow as exc:  # set aside by the next look (see _next)
                    logger.error("%s; setting it aside", exc)
                    self._corrupt.add(job_id)
                else:
                    self._deliver(update)
            if job_id in unseen:
                unseen.discard(job_id)
                running = self._running[job_id]
                if (status, fence) != ("processing", running):
                    del self._running[job_id]  # finished, reclaimed or cancelled elsewhere
                    if status == "cancelled" and fence == running:
                        self._notify(Notice("cancel", job_id, running))
        for job_id in unseen:  # gone altogether (purged): nothing left to stop
            del self._running[job_id]
        now = self.local_now()
        for job_id in missing:  # deleted by another process
            self._deliver(gone_update(job_id, now))

    def _notify(self, notice: Notice) -> None:
        for box in self._listeners:
            box.put(notice)

    def _deliver(self, update: UpdateRecord) -> None:
        """Hand ``update`` to the job's subscribers: a state change once per ``update_seq``
        (the same state may be built here and read back after another process's commit; a
        stale one may be read back after a newer one was delivered), a custom update always,
        ``gone`` once."""
        job_id = update.job_id
        boxes = self._subscribers.get(job_id)
        if not boxes:
            return
        seen = self._seen.get(job_id, 0)
        if seen == _GONE:
            return
        if update.gone:
            self._seen[job_id] = _GONE
        elif update.data is None:
            if update.update_seq <= seen:
                return
            self._seen[job_id] = update.update_seq
        for box in boxes:
            box.put(update)

    async def _next(self, box: Mailbox[T | _Closed]) -> T:
        """The next item of a listener's or subscriber's mailbox, looking for other processes'
        commits meanwhile (a look is a batch, and every batch looks): at once when the doorbell
        rings, else every ``poll_interval``.

        :raises QueueClosedError: once the backend is closed
        """
        while True:
            if self._closed:
                raise self._closed_error()
            if self._corrupt:
                await self._set_aside()
            if not self._cross_process:
                return _open(await box.get(), self)
            wait = self._last_batch + self.settings.poll_interval - anyio.current_time()
            if wait > 0 and not self._rung():
                item = await self._wait(box, wait)
                if not isinstance(item, _Nothing):
                    return _open(item, self)
                if not self._rung():
                    continue  # the interval is over: look
            if self._rung() and not self._subscribers and not self._running:
                # Only idle workers wait here: wake them, and their claim looks (every batch
                # does), one batch sooner than a look of its own followed by that claim.
                self._rings_seen = self._doorbell.rings if self._doorbell else 0
                self._notify(Notice("jobs"))
                continue
            try:
                await self._call(_probe, writes=False)
            except BackendUnavailable:
                self._last_batch = anyio.current_time()  # locked: try again later

    def _rung(self) -> bool:
        """Whether the doorbell rang since the last batch began."""
        return self._doorbell is not None and self._doorbell.rings > self._rings_seen

    async def _wait(self, box: Mailbox[T], timeout: float) -> T | _Nothing:
        """The next item of ``box``, or ``_NOTHING`` once ``timeout`` has passed or the
        doorbell has rung, whichever comes first."""
        doorbell = self._doorbell
        # What was taken out of the box is kept outside the scope: the deadline may strike
        # after the item was taken (as the task group ends), and the item must not go with it.
        got: list[T] = []
        with anyio.move_on_after(timeout):
            if doorbell is None:
                got.append(await box.get())
            else:
                async with anyio.create_task_group() as tg:

                    async def ring() -> None:
                        await doorbell.wait(self._rings_seen)
                        tg.cancel_scope.cancel()

                    tg.start_soon(ring)
                    got.append(await box.get())
                    tg.cancel_scope.cancel()
        return got[0] if got else _NOTHING

    async def _open_doorbell(self) -> None:
        """Bind this backend's doorbell, once. The next wait looks first: a commit made before
        it was bound rang no one."""
        if self._doorbell_tried or self.settings.in_memory:
            return
        self._doorbell_tried = True
        directory = wake_directory(self.settings.path)
        doorbell = await anyio.to_thread.run_sync(Doorbell.open, directory)
        if doorbell is None:
            return
        if self._closed:  # closed meanwhile: nothing will ever close it
            doorbell.close()
            await anyio.to_thread.run_sync(doorbell.remove)
            return
        self._doorbell = doorbell
        if self._store.ringer is not None:
            self._store.ringer.own = doorbell.name
        self._last_batch = -float("inf")

    async def _set_aside(self) -> None:
        """Set aside the watched jobs another process left corrupt (so their subscribers get a
        FAILED update rather than nothing)."""
        job_ids, self._corrupt = sorted(self._corrupt), set()
        now = self.local_now()
        for job_id in job_ids:
            try:
                await self._call(partial(writes.set_aside, job_id=job_id, now=now))
            except BackendUnavailable:
                self._corrupt.add(job_id)  # locked: next time

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[Notice]]:
        return self._listen()

    @asynccontextmanager
    async def _listen(self) -> AsyncIterator[AsyncIterator[Notice]]:
        if self._closed:
            raise self._closed_error()
        self._check_loop()
        await self._open_doorbell()
        box: Mailbox[Notice | _Closed] = Mailbox(_BUFFER)
        self._listeners.add(box)
        try:
            yield _Stream(self, box)
        finally:
            self._listeners.discard(box)
            if not self._listeners:
                self._running.clear()  # tracked only to stop them when cancelled elsewhere

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[AsyncIterator[UpdateRecord]]:
        return self._subscribe(job_id)

    @asynccontextmanager
    async def _subscribe(self, job_id: str) -> AsyncIterator[AsyncIterator[UpdateRecord]]:
        if not self.settings.in_memory:
            await self._open_doorbell()
            # Catch up with other processes first, so custom updates they sent before this
            # subscription are not delivered as if they were new.
            await self._call(_probe, writes=False)
        if self._closed:
            raise self._closed_error()
        box: Mailbox[UpdateRecord | _Closed] = Mailbox(_BUFFER)
        self._subscribers.setdefault(job_id, set()).add(box)
        try:
            yield _Updates(self, box)
        finally:
            boxes = self._subscribers.get(job_id)
            if boxes is not None:
                boxes.discard(box)
                if not boxes:
                    del self._subscribers[job_id]
                    self._seen.pop(job_id, None)

    async def publish(self, update: UpdateRecord) -> None:
        """Deliver a custom update to this backend's subscribers at once, and leave it in the
        file for a minute for other processes' subscribers, who see it within their
        ``poll_interval``. A private in-memory database delivers locally only."""
        self._deliver(update)
        if not self.settings.in_memory:
            await self._call(partial(writes.post_message, update=update, origin=self._store.origin))

    # -- writes ----------------------------------------------------------------------------------

    async def enqueue_many(self, records: Sequence[JobRecord], *, now: float) -> list[str]:
        return await self._call(partial(writes.enqueue_many, records=records, now=now))

    async def claim_pending_job(
        self,
        job_types: Sequence[str] | None,
        *,
        limit: int = 1,
        worker_id: str,
        lease: float,
        now: float,
    ) -> list[JobRecord]:
        op = partial(
            writes.claim,
            job_types=job_types,
            limit=limit,
            worker_id=worker_id,
            lease=lease,
            now=now,
        )
        claimed = await self._call(op)
        if self._listeners:
            self._running.update((r.id, r.fence) for r in claimed)
        return claimed

    async def finish(self, outcome: Outcome, *, now: float) -> bool:
        (done,) = await self.finish_many([outcome], now=now)
        return done

    async def finish_many(self, outcomes: Sequence[Outcome], *, now: float) -> list[bool]:
        done = await self._call(partial(writes.finish_many, outcomes=outcomes, now=now))
        for outcome, stored in zip(outcomes, done, strict=True):
            if stored:  # a refused (stale) report must not forget the job's current claim
                self._running.pop(outcome.job_id, None)
        return done

    async def cancel(self, job_id: str, reason: str | None, *, now: float) -> bool:
        return await self._call(partial(writes.cancel, job_id=job_id, reason=reason, now=now))

    async def retry(self, job_id: str, *, delay: float, now: float) -> bool:
        return await self._call(partial(writes.retry, job_id=job_id, delay=delay, now=now))

    async def update_progress(self, update: ProgressUpdate, *, now: float) -> bool:
        (done,) = await self.update_progress_many([update], now=now)
        return done

    async def update_progress_many(
        self, updates: Sequence[ProgressUpdate], *, now: float
    ) -> list[bool]:
        return await self._call(partial(writes.update_progress_many, updates=updates, now=now))

    async def renew(self, lease: Lease, *, duration: float, now: float) -> bool:
        (held,) = await self.renew_many([lease], duration=duration, now=now)
        return held

    async def renew_many(
        self, leases: Sequence[Lease], *, duration: float, now: float
    ) -> list[bool]:
        return await self._call(
            partial(writes.renew_many, leases=leases, duration=duration, now=now)
        )

    async def reclaim_expired(self, *, now: float) -> list[str]:
        return await self._call(partial(writes.reclaim_expired, now=now))

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, job_id: str, *, now: float) -> JobRecord | None:
        """The job; a corrupt row is set aside first (see :mod:`.writes`), so this
        returns it FAILED with an error that says so."""
        try:
            return await self._call(partial(reads.get, job_id=job_id, now=now), writes=False)
        except CorruptRow:
            return await self._call(partial(writes.set_aside_and_get, job_id=job_id, now=now))

    async def list_jobs(
        self,
        status: str | None,
        *,
        job_type: str | None,
        limit: int,
        offset: int,
        now: float,
    ) -> list[JobRecord]:
        # A write: due jobs are promoted and expired ones deleted first, as claims would.
        op = partial(
            reads.list_jobs, status=status, job_type=job_type, limit=limit, offset=offset, now=now
        )
        return await self._call(op)

    async def register_worker(self, worker: WorkerRecord, *, now: float) -> None:
        await self._call(partial(registry.register_worker, worker=worker, now=now))

    async def remove_worker(self, worker_id: str) -> None:
        await self._call(partial(registry.remove_worker, worker_id=worker_id))

    async def list_workers(self, *, now: float) -> list[WorkerRecord]:
        return await self._call(partial(registry.live_workers, now=now), writes=False)

    async def stats(self, *, now: float) -> QueueStats:
        return await self._call(partial(reads.stats, now=now))

    async def purge(
        self,
        statuses: Iterable[str],
        *,
        before: float | None,
        job_type: str | None,
        now: float,
    ) -> int:
        op = partial(
            writes.purge, statuses=list(statuses), before=before, job_type=job_type, now=now
        )
        return await self._call(op)

    async def next_due(self, job_types: Sequence[str] | None, *, now: float) -> float | None:
        # Every type's: waking early for another type's job is harmless.
        return await self._call(reads.next_due, writes=False)

    # -- lifecycle -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Finish the batches in flight, then close the connection. Safe to call twice."""
        if self._closed:
            return
        self._check_loop()  # a close from a later loop: nothing of the earlier one to wait for
        self._closed = True
        for listener in self._listeners:  # their readers raise QueueClosedError
            listener.put(_CLOSED)
        for boxes in self._subscribers.values():
            for box in boxes:
                box.put(_CLOSED)
        # Shielded: a cancelled close must still release the file.
        with anyio.CancelScope(shield=True):
            while self._leading:
                self._idle = anyio.Event()
                await self._idle.wait()
            try:
                await self._thread.run(self._store.close)
            finally:
                await self._thread.stop()
                await self._close_doorbell()

    async def _close_doorbell(self) -> None:
        doorbell, self._doorbell = self._doorbell, None
        if doorbell is not None:
            doorbell.close()
            await anyio.to_thread.run_sync(doorbell.remove)


def _open(item: T | _Closed, backend: SQLiteBackend) -> T:
    if isinstance(item, _Closed):
        raise backend._closed_error()
    return item


def _finished(token: Any) -> bool:
    """Whether the event loop of an anyio ``EventLoopToken`` has finished."""
    native: Any = getattr(token, "native_token", None)
    is_closed = getattr(native, "is_closed", None)
    if is_closed is not None:  # an asyncio loop
        return bool(is_closed()) or not native.is_running()
    run_sync_soon = getattr(native, "run_sync_soon", None)
    if run_sync_soon is None:
        return True
    try:  # a trio token: accepts a callback until its run has ended
        run_sync_soon(_nothing)
    except Exception:  # trio.RunFinishedError
        return True
    return False


def _nothing() -> None:
    pass


def _probe(tx: Tx) -> None:
    """An empty request: its batch looks for other processes' commits, nothing more."""


class _Stream(Generic[T]):
    """A listener's or subscriber's stream: a plain async iterator (no async generator to
    finalize when the reader stops early)."""

    def __init__(self, backend: SQLiteBackend, box: Mailbox[T | _Closed]) -> None:
        self._backend = backend
        self._box = box

    def __aiter__(self) -> _Stream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._backend._next(self._box)


class _Updates(_Stream[UpdateRecord]):
    """A subscriber's stream: it ends after a ``gone`` update (the job was deleted)."""

    _ended = False

    async def __anext__(self) -> UpdateRecord:
        if self._ended:
            raise StopAsyncIteration
        update = await self._backend._next(self._box)
        self._ended = update.gone
        return update
