"""The SQLite backend: durable jobs in one file, shared by every process that opens it.

``JobQueue(backend="sqlite", url="sqlite:///jobs.db")``. The stdlib ``sqlite3`` driver runs in
anyio worker threads, so the backend works the same under asyncio and trio and never blocks
the event loop. The SQL layer lives in :mod:`._sqlite`; this module is its async face:

- **group commit** -- every call appends a request to a pending list. If no batch is running,
  the caller becomes the *leader*: it takes everything pending to a worker thread and runs it as
  one transaction (one commit for many enqueues, completions, progress updates and claims),
  then hands each request its result or its own error. Calls that arrive meanwhile wait, and
  the first of them leads the next batch. A lone call goes out at once; no background task is
  needed, so a queue used without a Worker or ``async with`` works the same.
- **notifications** -- in this process, notices and job updates go straight to the listening
  workers and subscribers once their transaction has committed. Other processes' commits are
  seen through ``PRAGMA data_version`` (checked by every batch, and polled every
  ``poll_interval`` while someone listens or subscribes): they wake idle workers, re-read the
  subscribed jobs and the jobs running here, and so deliver remote updates and cancellations.
  Custom updates (``Broadcaster.send``) travel through a small table, kept a minute. The polling
  happens inside the streams' ``__anext__`` (no task outlives a call), one look per interval
  for the whole backend.

See ``docs/sqlite.md`` for durability, multi-process use and the URL options.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, Generic, TypeVar, cast

import anyio

from .._errors import BackendUnavailable
from .._models import QueueStats
from .._records import JobRecord, Lease, Outcome, ProgressUpdate, UpdateRecord, record_update
from ._hub import Mailbox
from ._sqlite import reads, writes
from ._sqlite.store import BatchReport, Op, SchemaVersionError, Served, Settings, Store
from ._sqlite.tx import Tx, update_of
from .base import Notice, QueueBackend

__all__ = ["SQLiteBackend", "SchemaVersionError"]

T = TypeVar("T")
_BUFFER = 256  # per listener / subscriber mailbox (a full one drops its oldest entry)


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
        ``poll_interval`` (seconds between looks for other processes' commits; default 0.1)
    :raises ConfigurationError: for a malformed URL or an unknown option

    The file is opened by the first call, in a worker thread; that call raises
    :class:`~jdobb_async_queue.BackendUnavailable` if the file cannot be opened or stays locked
    beyond ``busy_timeout``, :class:`~jdobb_async_queue.ConfigurationError` if it is not a
    SQLite database (or not a queue), and :class:`SchemaVersionError` if a newer version of this
    library wrote it. A failed open is retried by the next call. After :meth:`aclose`, every
    call raises :class:`~jdobb_async_queue.BackendUnavailable`.
    """

    name = "sqlite"

    def __init__(self, url: str) -> None:
        self.settings = Settings.from_url(url)
        self._store = Store(self.settings, origin=uuid.uuid4().hex)
        self._pending: list[_Request] = []
        self._leading = False
        self._closed = False
        self._idle: anyio.Event | None = None
        self._limiter: tuple[object, anyio.CapacityLimiter] | None = None
        self._last_batch = -float("inf")
        self._listeners: set[Mailbox[Notice]] = set()
        self._subscribers: dict[str, set[Mailbox[UpdateRecord]]] = {}
        self._seen: dict[str, tuple[Any, ...]] = {}  # subscribed job -> last state published
        self._running: dict[str, int] = {}  # claimed here while a worker listens -> fence

    # -- group commit ----------------------------------------------------------------------------

    async def _call(self, op: Callable[[Tx], T], *, writes: bool = True) -> T:
        if self._closed:
            raise BackendUnavailable(f"the SQLite backend on {self.settings.path} is closed")
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
        requests = [(r.op, r.writes) for r in batch]
        watched = frozenset(self._subscribers)
        watch_ids = [*self._subscribers, *self._running] if self._cross_process else []
        try:
            report = await anyio.to_thread.run_sync(
                self._store.run, requests, watched, watch_ids, limiter=self._thread_limiter()
            )
        except Exception as exc:  # the batch as a whole failed: nothing was committed
            for request in batch:
                request.served = Served(None, error=exc)
            return
        for request, served in zip(batch, report.served, strict=True):
            request.served = served
        self._announce(report, watch_ids)

    def _thread_limiter(self) -> anyio.CapacityLimiter:
        # Our own, so threads the application starts never hold up a batch; one per event loop,
        # because a limiter belongs to the loop that made it (a queue may outlive one).
        token = anyio.lowlevel.current_token()
        if self._limiter is None or self._limiter[0] != token:
            self._limiter = (token, anyio.CapacityLimiter(1))
        return self._limiter[1]

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
            for job_id in tx.cancelled:
                self._running.pop(job_id, None)
                self._notify(Notice("cancel", job_id))
            if tx.wake:
                self._notify(Notice("jobs"))

    def _refresh(self, rows: Iterable[tuple[Any, ...]], watch_ids: Sequence[str]) -> None:
        """Publish remote changes of subscribed jobs; stop jobs cancelled remotely."""
        unseen = {job_id for job_id in watch_ids if job_id in self._running}
        for job_id, status, fence, *state in rows:
            if job_id in self._subscribers:
                self._deliver(update_of((job_id, status, *state)))
            if job_id in unseen:
                unseen.discard(job_id)
                if (status, fence) != ("processing", self._running[job_id]):
                    del self._running[job_id]  # finished, reclaimed or cancelled elsewhere
                    if status == "cancelled":
                        self._notify(Notice("cancel", job_id))
        for job_id in unseen:  # gone altogether (purged): nothing left to stop
            del self._running[job_id]

    def _notify(self, notice: Notice) -> None:
        for box in self._listeners:
            box.put(notice)

    def _deliver(self, update: UpdateRecord) -> None:
        boxes = self._subscribers.get(update.job_id)
        if not boxes:
            return
        if update.data is None:  # a state change: publish each state once
            state = _state(update)
            if self._seen.get(update.job_id) == state:
                return
            self._seen[update.job_id] = state
        for box in boxes:
            box.put(update)

    async def _next(self, box: Mailbox[T]) -> T:
        """The next item of a listener's or subscriber's mailbox, polling for other processes'
        commits meanwhile (a poll is a batch, and every batch looks)."""
        while True:
            if not self._cross_process or self._closed:
                return await box.get()
            wait = self._last_batch + self.settings.poll_interval - anyio.current_time()
            if wait > 0:
                with anyio.move_on_after(wait):
                    return await box.get()
                continue
            try:
                await self._call(_probe, writes=False)
            except BackendUnavailable:
                self._last_batch = anyio.current_time()  # locked or closed: try again later

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[Notice]]:
        return self._listen()

    @asynccontextmanager
    async def _listen(self) -> AsyncIterator[AsyncIterator[Notice]]:
        box: Mailbox[Notice] = Mailbox(_BUFFER)
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
            # Catch up with other processes first, so custom updates they sent before this
            # subscription are not delivered as if they were new.
            await self._call(_probe, writes=False)
        box: Mailbox[UpdateRecord] = Mailbox(_BUFFER)
        self._subscribers.setdefault(job_id, set()).add(box)
        try:
            yield _Stream(self, box)
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
        record = await self._call(partial(reads.get, job_id=job_id, now=now), writes=False)
        if record is not None and job_id in self._subscribers:
            # A subscriber's first read (the Broadcaster's snapshot) counts as published, so a
            # later look at other processes' commits does not repeat that state.
            self._seen.setdefault(job_id, _state(record_update(record)))
        return record

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
        self._closed = True
        # Shielded: a cancelled close must still release the file.
        with anyio.CancelScope(shield=True):
            while self._leading:
                self._idle = anyio.Event()
                await self._idle.wait()
            await anyio.to_thread.run_sync(self._store.close)


def _state(update: UpdateRecord) -> tuple[Any, ...]:
    return (update.status, update.progress, update.message, update.timestamp)


def _probe(tx: Tx) -> None:
    """An empty request: its batch looks for other processes' commits, nothing more."""


class _Stream(Generic[T]):
    """A listener's or subscriber's stream: a plain async iterator (no async generator to
    finalize when the reader stops early)."""

    def __init__(self, backend: SQLiteBackend, box: Mailbox[T]) -> None:
        self._backend = backend
        self._box = box

    def __aiter__(self) -> _Stream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._backend._next(self._box)
