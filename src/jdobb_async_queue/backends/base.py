"""The backend contract: :class:`QueueBackend`.

A backend stores jobs and applies the state machine of :mod:`jdobb_async_queue._states`
atomically. The built-in ones are ``memory``, ``sqlite`` and ``redis``; pass an instance of your
own subclass as ``JobQueue(backend=...)`` to use another store.

Writing a backend
=================
Implement the abstract methods. Every write is **atomic per call** and **guarded** by the job's
current status (and, for worker reports, its *fence*): two workers can never both claim one job,
and a late report from a worker whose claim was superseded changes nothing. Most methods take a
batch, because the built-in backends serve many requests in one transaction, Lua call or
pipeline; the single forms (:meth:`finish`, :meth:`update_progress`, :meth:`renew`) are what a
small backend implements, and the batch forms loop over them unless overridden.

Time comes from the store. Every call gets ``now`` (float seconds since the epoch, the
caller's clock). Backends on one host (memory, SQLite) use it as their clock. A backend shared
by many hosts with a clock of its own (Redis reads the server's ``TIME``) ignores it and reads
its own, unless :attr:`QueueBackend.test_clock` is set (``JobQueue(clock=...)`` sets it): then
``now`` drives everything, so a :class:`jdobb_async_queue.testing.MockClock` controls every
backend alike. Durations (leases, retry delays) are passed as durations, never as times computed
on the caller's clock, so hosts whose clocks disagree cannot reclaim a lease or run a retry early.

Every stored change of a job (state, progress, message) bumps its ``update_seq``; updates carry
it, and subscribers order and de-duplicate by it, never by timestamps.

How an attempt ends is decided by :mod:`jdobb_async_queue._policy`; a backend applies the
decided :class:`Outcome` and holds no copy of the retry rule. The one decision a backend takes
itself is what happens to a job whose lease ran out (it notices, nobody reports it): it applies
:func:`lost_ends_job` and :func:`lost_error` from the same module.

Notifications are optional: :meth:`listen` (wake-ups for idle workers, cancellation of running
jobs) and :meth:`subscribe` / :meth:`publish` (the Broadcaster). The defaults here fall back to
polling, bounded by the worker's ``poll_interval``; the built-in backends push.

The semantics every method must follow are in its docstring; the contract suite shipped as
:mod:`jdobb_async_queue.testing.contract` checks them: a test module of yours that star-imports it
and defines a ``queue_backend`` fixture runs the whole suite on your backend (see
``docs/backends.md``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal

import anyio
import msgspec

from .._models import QueueStats
from .._policy import MAX_BACKOFF, backoff_delay, dependency_error, lost_ends_job, lost_error
from .._records import (
    JobRecord,
    Lease,
    Outcome,
    ProgressUpdate,
    UpdateRecord,
    WorkerRecord,
    gone_update,
    record_update,
)

__all__ = [
    "MAX_BACKOFF",
    "WORKER_TTL",
    "Notice",
    "QueueBackend",
    "backoff_delay",
    "dependency_error",
    "lost_ends_job",
    "lost_error",
]


#: Seconds after its last heartbeat that a worker drops out of the registry.
WORKER_TTL = 30.0


class Notice(msgspec.Struct, frozen=True):
    """Something a running worker should react to, from :meth:`QueueBackend.listen`.

    ``kind`` is ``"jobs"`` (jobs may have become claimable: wake up and claim) or ``"cancel"``
    (``job_id`` was cancelled while PROCESSING with claim ``fence``: stop its handler). A worker
    stops only the attempt with that fence, so a late notice about an earlier attempt never
    touches a later one; ``fence=None`` means whichever attempt runs.
    """

    kind: Literal["jobs", "cancel"]
    job_id: str | None = None
    fence: int | None = None


class QueueBackend(ABC):
    """Where jobs live. Subclass it to store jobs somewhere new (see the module docs)."""

    #: Name used in messages and by ``JobQueue(backend=<name>)`` for the built-ins.
    name: str = "custom"

    #: The test clock given to ``JobQueue(clock=...)``, or None. When set, every ``now``
    #: argument drives the store; when None, a backend with a clock of its own (a server's)
    #: reads that instead. Reads the backend does by itself (the default polling
    #: :meth:`subscribe`) take their time from here, else from the wall clock.
    test_clock: Callable[[], float] | None = None

    def local_now(self) -> float:
        """This process's idea of now: the test clock if one is set, else the wall clock."""
        clock = self.test_clock
        return time.time() if clock is None else clock()

    # -- writes --------------------------------------------------------------------------------

    @abstractmethod
    async def enqueue_many(self, records: Sequence[JobRecord], *, now: float) -> list[str]:
        """Store new PENDING jobs, all or nothing, and return their ids in order.

        The records arrive complete (id, times, options; ``status="pending"``, ``fence=0``,
        ``pending_deps=0``); the backend sets ``pending_deps`` and its own ordering.

        - A record whose id exists (or repeats in the batch): :class:`DuplicateJobError`, nothing
          stored.
        - A record whose ``unique_key`` is held by a PENDING or PROCESSING job (stored, or earlier
          in the batch) is not stored; its position in the result holds the holder's id, and
          ``depends_on`` entries in the batch naming it are read as naming the holder.
        - ``depends_on`` ids must exist (stored and not expired, or earlier in the batch), else
          :class:`UnknownDependencyError` and nothing is stored. A COMPLETE dependency is
          satisfied; a PENDING/PROCESSING one counts in ``pending_deps``; a FAILED/CANCELLED one
          makes the new job CANCELLED at once, its error :func:`dependency_error`.
        - Wakes idle workers (a ``"jobs"`` notice).
        """

    @abstractmethod
    async def claim_pending_job(
        self,
        job_types: Sequence[str] | None,
        *,
        limit: int = 1,
        worker_id: str,
        lease: float,
        now: float,
    ) -> list[JobRecord]:
        """Atomically claim up to ``limit`` claimable jobs and return them, PROCESSING.

        Claimable: PENDING, ``pending_deps == 0``, ``execute_at`` None or ``<= now``, and
        ``job_type`` in ``job_types`` (None: any). Order: priority (high, normal, low), then the
        order jobs were enqueued. Each claimed job gets ``attempts += 1``, ``fence += 1``,
        ``worker_id``, ``started_at = now``, ``lease_expires_at = now + lease``. No job is ever
        returned to two callers. The cost must not grow with the number of scheduled, waiting or
        finished jobs.
        """

    @abstractmethod
    async def finish(self, outcome: Outcome, *, now: float) -> bool:
        """Apply one :class:`Outcome` to a PROCESSING job whose fence matches (any, if None).

        The outcome is already decided (:mod:`jdobb_async_queue._policy`); apply it:

        - ``complete``: COMPLETE, ``results``, ``progress = 1.0``, ``error = None`` (an earlier
          attempt's error is cleared), ``completed_at = now``.
        - ``retry``: PENDING again, ``error`` set, ``execute_at = now + outcome.delay`` (``now``
          of the store's clock).
        - ``fail``: FAILED with ``error``, ``completed_at = now``.
        - ``release``: PENDING, due at once, ``attempts -= 1`` (the attempt did not count), and
          the attempt's ``progress``, ``message`` and ``started_at`` reset (0, None, None).

        Leaving PROCESSING clears ``worker_id`` and ``lease_expires_at``. Reaching a terminal
        state sets ``expires_at = now + ttl`` (when ttl is set), frees the unique key and, in the
        same atomic step, settles dependents: COMPLETE decrements their ``pending_deps`` (waking
        workers when it reaches 0); FAILED or CANCELLED cancels them, transitively, with
        :func:`dependency_error`. Publishes an update for every job that changed.

        :return: ``False`` (and nothing changed) if the job is unknown, not PROCESSING or fenced
            out.
        """

    async def finish_many(self, outcomes: Sequence[Outcome], *, now: float) -> list[bool]:
        """:meth:`finish` for many outcomes (each atomic on its own)."""
        return [await self.finish(o, now=now) for o in outcomes]

    @abstractmethod
    async def cancel(self, job_id: str, reason: str | None, *, now: float) -> bool:
        """Cancel a PENDING or PROCESSING job: CANCELLED, ``error = reason``, dependents
        cancelled as in :meth:`finish`; a ``"cancel"`` notice reaches the worker running it.

        :return: ``False`` if the job is unknown or already terminal (nothing changes).
        """

    @abstractmethod
    async def retry(self, job_id: str, *, delay: float, now: float) -> bool:
        """Send a FAILED or CANCELLED job back to PENDING (``execute_at = now + delay`` if
        ``delay > 0``), with ``attempts = 0`` and ``error``, ``progress``, ``message``,
        ``results``, ``completed_at``, ``expires_at`` cleared; ``pending_deps`` is counted again
        from its dependencies (missing ones count as satisfied).

        :return: ``False`` (nothing changes) if the job is unknown, in another state, or its
            unique key is now held by another live job.
        """

    @abstractmethod
    async def update_progress(self, update: ProgressUpdate, *, now: float) -> bool:
        """Set ``progress`` and/or ``message`` (those not None) of a PROCESSING job whose fence
        matches (any, if None), and publish the update.

        :return: ``False`` if the job is unknown, not PROCESSING or fenced out.
        """

    async def update_progress_many(
        self, updates: Sequence[ProgressUpdate], *, now: float
    ) -> list[bool]:
        """:meth:`update_progress` for many updates."""
        return [await self.update_progress(u, now=now) for u in updates]

    @abstractmethod
    async def renew(self, lease: Lease, *, duration: float, now: float) -> bool:
        """Extend a lease: ``lease_expires_at = now + duration`` if the job is PROCESSING with
        this fence.

        :return: ``False`` if the lease is lost (job cancelled, finished or reclaimed): the
            worker must stop running it.
        """

    async def renew_many(
        self, leases: Sequence[Lease], *, duration: float, now: float
    ) -> list[bool]:
        """:meth:`renew` for many leases."""
        return [await self.renew(lease, duration=duration, now=now) for lease in leases]

    @abstractmethod
    async def reclaim_expired(self, *, now: float) -> list[str]:
        """Take back every PROCESSING job whose lease expired (``lease_expires_at < now``):
        ``lost += 1``; if :func:`lost_ends_job` (``lost > max_lost``) it ends FAILED with
        :func:`lost_error` (as a terminal state, dependents settled as in :meth:`finish`), else
        it goes back to PENDING, due at once (its attempt still counts). Wakes workers.

        :return: the ids of the jobs taken back (sent to PENDING or FAILED)
        """

    # -- reads ---------------------------------------------------------------------------------

    @abstractmethod
    async def get(self, job_id: str, *, now: float) -> JobRecord | None:
        """Return the job, or ``None`` if unknown or expired (``expires_at <= now``)."""

    @abstractmethod
    async def list_jobs(
        self,
        status: str | None,
        *,
        job_type: str | None,
        limit: int,
        offset: int,
        now: float,
    ) -> list[JobRecord]:
        """Jobs with this status (None: any) and type, expired ones left out.

        PENDING jobs come in the order they would be claimed (claimable ones by priority then
        age, then scheduled ones by due time, then those waiting on dependencies); every other
        status (and ``status=None``) most recently updated first. Must not load every job.
        """

    @abstractmethod
    async def stats(self, *, now: float) -> QueueStats:
        """Counts by status plus ``scheduled`` (pending, not yet due) and ``waiting`` (pending on
        dependencies; a job both waiting and not yet due counts as waiting only), expired jobs
        left out. Must not load every job."""

    @abstractmethod
    async def purge(
        self,
        statuses: Iterable[str],
        *,
        before: float | None,
        job_type: str | None,
        now: float,
    ) -> int:
        """Delete terminal jobs in ``statuses`` (terminal ones only; the queue has checked),
        finished (``completed_at``) before ``before`` if given, of ``job_type`` if given.

        :return: how many were deleted
        """

    @abstractmethod
    async def next_due(self, job_types: Sequence[str] | None, *, now: float) -> float | None:
        """The earliest ``execute_at`` after ``now`` of a PENDING job of these types with no
        pending dependencies, or ``None``: how long an idle worker may sleep."""

    # -- the worker registry (optional: the defaults keep it in this process) -----------------

    async def register_worker(self, worker: WorkerRecord, *, now: float) -> None:
        """Add ``worker`` to the registry, or refresh its entry (``heartbeat_at = now``, of
        the store's clock). An entry whose heartbeat is more than :data:`WORKER_TTL` seconds
        old is dead: :meth:`list_workers` leaves it out, and the store may delete it.

        The default keeps the registry in this backend object, so only workers of this process
        appear: override it to share one registry between processes.
        """
        worker.heartbeat_at = now
        _local_registry(self)[worker.id] = msgspec.structs.replace(worker)

    async def remove_worker(self, worker_id: str) -> None:
        """Remove a worker from the registry (it stopped). Unknown ids are ignored."""
        _local_registry(self).pop(worker_id, None)

    async def list_workers(self, *, now: float) -> list[WorkerRecord]:
        """The live workers (heartbeat at most :data:`WORKER_TTL` seconds before ``now``),
        oldest first."""
        live = [
            msgspec.structs.replace(w)
            for w in _local_registry(self).values()
            if w.heartbeat_at >= now - WORKER_TTL
        ]
        return sorted(live, key=lambda w: (w.started_at, w.id))

    # -- notifications (optional: the defaults poll) -------------------------------------------

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[Notice]]:
        """Open a stream of :class:`Notice` for a running worker.

        The default never yields: workers then poll every ``poll_interval`` and learn of
        cancellations when renewing leases. Override to push.
        """
        return _silence()

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[AsyncIterator[UpdateRecord]]:
        """Open a stream of the updates of one job, for the Broadcaster.

        The stream must deliver every update published after the context is entered; it may
        drop intermediate progress updates for a slow reader but never the terminal one. If the
        job is deleted (purged, expired), it yields an update with ``gone=True`` and ends. The
        default polls :meth:`get` every half second and yields each change (a new
        ``update_seq``), or ``gone`` once the job no longer exists.
        """
        return _poll_updates(self, job_id)

    async def publish(self, update: UpdateRecord) -> None:  # noqa: B027 - optional hook
        """Deliver a custom update (``Broadcaster.send``) to the job's subscribers.

        The default delivers nothing (polling subscribers see state changes only).
        """

    # -- lifecycle -----------------------------------------------------------------------------

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release every connection, thread and file. Calls after this may fail."""


def _local_registry(backend: QueueBackend) -> dict[str, WorkerRecord]:
    registry: dict[str, WorkerRecord] | None = backend.__dict__.get("_jdobb_workers")
    if registry is None:
        registry = backend.__dict__["_jdobb_workers"] = {}
    return registry


@asynccontextmanager
async def _silence() -> AsyncIterator[AsyncIterator[Notice]]:
    yield _Silence()


class _Silence:
    """Notices from a backend that pushes none: waits until cancelled."""

    def __aiter__(self) -> _Silence:
        return self

    async def __anext__(self) -> Notice:
        await anyio.sleep_forever()
        raise StopAsyncIteration  # pragma: no cover - sleep_forever only ends by cancellation


@asynccontextmanager
async def _poll_updates(
    backend: QueueBackend, job_id: str
) -> AsyncIterator[AsyncIterator[UpdateRecord]]:
    yield _PolledUpdates(backend, job_id)


#: Seconds between two reads of a job by the default polling subscription.
POLL_UPDATES_EVERY = 0.5


class _PolledUpdates:
    """Each change of a job (a new ``update_seq``), seen by reading it twice a second.

    The first read is taken when iteration starts; the caller (the Broadcaster) took its own
    snapshot after entering the context and skips what it already has by ``update_seq``. Once
    the job is gone, one ``gone`` update, then the end.

    A plain async iterator, not an async generator: the Broadcaster stops reading at the final
    update, and an unfinished generator would be left for the garbage collector to close.
    """

    def __init__(self, backend: QueueBackend, job_id: str) -> None:
        self._backend = backend
        self._job_id = job_id
        self._seen = -1
        self._ended = False

    def __aiter__(self) -> _PolledUpdates:
        return self

    async def __anext__(self) -> UpdateRecord:
        if self._ended:
            raise StopAsyncIteration
        while True:
            now = self._backend.local_now()
            record = await self._backend.get(self._job_id, now=now)
            if record is None:
                self._ended = True
                return gone_update(self._job_id, now)
            if record.update_seq != self._seen:
                self._seen = record.update_seq
                return record_update(record)
            await anyio.sleep(POLL_UPDATES_EVERY)
