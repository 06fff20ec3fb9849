"""A complete backend in one plain dict: the worked example of ``docs/backends.md``.

    python examples/dict_backend.py       # a tiny demo: enqueue, run a worker in burst mode

It is written the way your own backend would be, on the public seam alone: it imports from
``jdobb_async_queue`` and ``jdobb_async_queue.backends``, nothing private. It passes the whole
shipped contract suite (``tests/test_example_backend.py``).
"""

from __future__ import annotations

import copy
import itertools
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

from jdobb_async_queue import JobContext, JobQueue, JobStatus, Worker
from jdobb_async_queue.backends import (
    PRIORITY_RANK,
    DuplicateJobError,
    Event,
    JobRecord,
    Lease,
    Notice,
    Outcome,
    ProgressUpdate,
    QueueBackend,
    QueueClosedError,
    QueueStats,
    UnknownDependencyError,
    UpdateRecord,
    dependency_error,
    gone_update,
    lost_ends_job,
    lost_error,
    record_update,
    sources,
    transition,
)

__all__ = ["DictBackend"]

#: What each decided outcome is, as an event of the state machine.
OUTCOME_EVENTS = {
    "complete": Event.COMPLETE,
    "fail": Event.FAIL,
    "retry": Event.RETRY_LATER,
    "release": Event.RELEASE,
}
LIVE = ("pending", "processing")
BROKEN = ("failed", "cancelled")


@dataclass
class _Slot:
    """One job in the store, with the two things a record does not carry."""

    job: JobRecord
    #: Enqueue order: first in, first out within a priority.
    order: int
    #: Ids of the dependencies it still waits for (``job.pending_deps`` is their number).
    waits: set[str] = field(default_factory=set)


class DictBackend(QueueBackend):
    """Every job in one dict, found by scanning: simple over fast.

    This backend is for teaching how a backend applies the contract, not for production: claims
    scan every pending job and sort them by (priority rank, enqueue order), and every read scans
    the whole dict, where the contract asks real backends for costs that do not grow with the
    number of scheduled, waiting or finished jobs (see ``MemoryBackend`` for that).

    - **Atomic per call.** No method awaits while it changes anything, so no other task ever
      sees half a transition, and no job is ever claimed twice.
    - **Guarded by the state machine.** Every change of status goes through
      :func:`transition`; a refused one changes nothing and the method returns ``False``.
    - **Numbered updates.** Every stored change of a job's status, progress or message bumps
      its ``update_seq`` and is published to the job's subscribers, in the same step.
    - **Expiry is lazy.** Every call first deletes the finished jobs whose ``expires_at`` has
      passed (:meth:`_sweep`).
    - **Notifications are pushed** to this process's workers and subscribers (``listen``,
      ``subscribe``, ``publish``), through small in-memory inboxes.
    """

    name = "dict"

    def __init__(self) -> None:
        self._jobs: dict[str, _Slot] = {}
        self._orders = itertools.count()
        self._listeners: set[_Inbox[Notice]] = set()
        self._subscribers: dict[str, set[_Inbox[UpdateRecord]]] = {}
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        for inbox in [*self._listeners, *(i for s in self._subscribers.values() for i in s)]:
            inbox.close()  # their readers end with QueueClosedError

    # -- the steps every method is made of ---------------------------------------------------

    def _begin(self, now: float) -> None:
        """Refuse calls after ``aclose``; delete expired jobs."""
        if self._closed:
            raise QueueClosedError("the dict backend")
        self._sweep(now)

    def _sweep(self, now: float) -> None:
        for slot in list(self._jobs.values()):
            r = slot.job
            if r.expires_at is not None and r.expires_at <= now and r.id in self._jobs:
                self._delete(r.id, now)

    def _delete(self, job_id: str, now: float) -> None:
        """Delete a finished job. A job still waiting for it (retried by hand while it was
        FAILED or CANCELLED) can never run now: it is cancelled."""
        del self._jobs[job_id]
        self._publish(gone_update(job_id, now))
        for slot in list(self._jobs.values()):
            if job_id in slot.waits:
                slot.job.error = dependency_error(job_id, "deleted")
                self._end(slot, Event.CANCEL, now)

    def _move(self, r: JobRecord, event: Event) -> None:
        """Change the status as the state machine says (callers have checked the source)."""
        status = transition(JobStatus(r.status), event)
        assert status is not None, f"{event.value} is refused for a {r.status} job"
        r.status = status.value

    def _saved(self, r: JobRecord, now: float) -> None:
        """``r`` changed: number the change and tell its subscribers."""
        r.updated_at = now
        r.update_seq += 1
        self._publish(record_update(r))

    def _held(self, job_id: str, fence: int | None) -> _Slot | None:
        """The PROCESSING job a worker report is about, if the report's fence still holds."""
        slot = self._jobs.get(job_id)
        if slot is None or slot.job.status != "processing":
            return None
        if fence is not None and fence != slot.job.fence:
            return None
        return slot

    def _holder(self, unique_key: str | None) -> str | None:
        """The live (PENDING or PROCESSING) job holding ``unique_key``, if any."""
        if unique_key is None:
            return None
        for slot in self._jobs.values():
            if slot.job.unique_key == unique_key and slot.job.status in LIVE:
                return slot.job.id
        return None

    def _count_deps(self, slot: _Slot, *, broken_waits: bool) -> JobRecord | None:
        """Fill ``waits`` and ``pending_deps`` from the dependencies; return the first that
        ended FAILED or CANCELLED. Missing (deleted) and COMPLETE ones are satisfied. With
        ``broken_waits`` (a retried job) a broken one is waited for: it may be retried too."""
        slot.waits = set()
        broken: JobRecord | None = None
        for dep_id in slot.job.depends_on:
            dep = self._jobs.get(dep_id)
            if dep is None or dep.job.status == "complete":
                continue
            if dep.job.status in BROKEN:
                broken = broken or dep.job
                if not broken_waits:
                    continue
            slot.waits.add(dep_id)
        slot.job.pending_deps = len(slot.waits)
        return broken

    def _requeue(self, slot: _Slot, event: Event, execute_at: float | None, now: float) -> None:
        """PROCESSING -> PENDING: a retry later, a release, a reclaimed lease."""
        r = slot.job
        self._move(r, event)
        r.worker_id = r.lease_expires_at = None
        r.execute_at = execute_at
        self._saved(r, now)

    def _end(self, slot: _Slot, event: Event, now: float) -> None:
        """Put a job in a terminal state and settle its dependents, in the same step."""
        r = slot.job
        self._move(r, event)
        r.worker_id = r.lease_expires_at = None
        r.completed_at = now
        if r.ttl is not None:
            r.expires_at = now + r.ttl
        slot.waits.clear()  # what it still waited for no longer matters
        r.pending_deps = 0
        self._saved(r, now)  # its unique key is free now: _holder looks at live jobs only
        for other in list(self._jobs.values()):
            if r.id not in other.waits:
                continue
            if r.status == "complete":
                other.waits.discard(r.id)
                other.job.pending_deps = len(other.waits)
            elif other.job.status == "pending":  # FAILED or CANCELLED: so are its dependents
                other.job.error = dependency_error(r.id, r.status)
                self._end(other, Event.CANCEL, now)

    # -- writes ------------------------------------------------------------------------------

    async def enqueue_many(self, records: Sequence[JobRecord], *, now: float) -> list[str]:
        self._begin(now)
        # Check the whole batch before storing anything: all or nothing.
        ids: list[str] = []
        fresh: list[JobRecord] = []
        alias: dict[str, str] = {}  # id of a record not stored -> the holder of its unique key
        seen: set[str] = set()
        batch_keys: dict[str, str] = {}
        for r in records:
            if r.id in seen or r.id in self._jobs:
                raise DuplicateJobError(r.id)
            seen.add(r.id)
            key = r.unique_key
            holder = batch_keys.get(key) if key is not None else None
            holder = holder or self._holder(key)
            if holder is not None:
                alias[r.id] = holder
                ids.append(holder)
                continue
            unknown = [
                d for d in r.depends_on if alias.get(d, d) not in seen | self._jobs.keys()
            ]
            if unknown:
                raise UnknownDependencyError(unknown)
            if key is not None:
                batch_keys[key] = r.id
            ids.append(r.id)
            fresh.append(r)
        for r in fresh:
            r = copy.deepcopy(r)  # the store owns its records
            r.depends_on = [alias.get(d, d) for d in r.depends_on]
            slot = self._jobs[r.id] = _Slot(r, next(self._orders))
            broken = self._count_deps(slot, broken_waits=False)
            if broken is not None:
                r.error = dependency_error(broken.id, broken.status)
                self._end(slot, Event.CANCEL, now)
        if fresh:
            self._notify(Notice("jobs"))
        return ids

    async def claim_pending_job(
        self,
        job_types: Sequence[str] | None,
        *,
        limit: int = 1,
        worker_id: str,
        lease: float,
        now: float,
    ) -> list[JobRecord]:
        self._begin(now)
        ready = [
            slot
            for slot in self._jobs.values()
            if _group(slot.job, now) == 0
            and (job_types is None or slot.job.job_type in job_types)
        ]
        ready.sort(key=lambda slot: (PRIORITY_RANK[slot.job.priority], slot.order))
        claimed = []
        for slot in ready[:limit]:
            r = slot.job
            self._move(r, Event.CLAIM)
            r.attempts += 1
            r.fence += 1
            r.worker_id = worker_id
            r.started_at = now
            r.lease_expires_at = now + lease
            self._saved(r, now)
            claimed.append(copy.deepcopy(r))
        return claimed

    async def finish(self, outcome: Outcome, *, now: float) -> bool:
        self._begin(now)
        slot = self._held(outcome.job_id, outcome.fence)
        if slot is None:
            return False
        r, event = slot.job, OUTCOME_EVENTS[outcome.kind]
        if event is Event.COMPLETE:
            r.results, r.progress, r.error = outcome.results, 1.0, None
            self._end(slot, event, now)
        elif event is Event.FAIL:
            r.error = outcome.error
            self._end(slot, event, now)
        elif event is Event.RETRY_LATER:
            r.error = outcome.error
            self._requeue(slot, event, now + outcome.delay, now)
        else:  # RELEASE: the attempt did not count
            r.attempts -= 1
            r.progress, r.message, r.started_at = 0.0, None, None
            self._requeue(slot, event, None, now)
        # A retried or released job, or a dependent a completion freed, may be claimable now
        # (and a worker must learn a retry's new due time): wake the idle workers.
        self._notify(Notice("jobs"))
        return True

    async def cancel(self, job_id: str, reason: str | None, *, now: float) -> bool:
        self._begin(now)
        slot = self._jobs.get(job_id)
        if slot is None or slot.job.status not in sources(Event.CANCEL):
            return False
        was_running, fence = slot.job.status == "processing", slot.job.fence
        slot.job.error = reason
        self._end(slot, Event.CANCEL, now)
        if was_running:  # stop that attempt, and only that one
            self._notify(Notice("cancel", job_id, fence))
        return True

    async def retry(self, job_id: str, *, delay: float, now: float) -> bool:
        self._begin(now)
        slot = self._jobs.get(job_id)
        if slot is None or slot.job.status not in sources(Event.RETRY):
            return False
        r = slot.job
        if self._holder(r.unique_key) is not None:  # another live job took the key meanwhile
            return False
        self._move(r, Event.RETRY)
        r.attempts = r.lost = 0
        r.error = r.message = r.results = None
        r.progress = 0.0
        r.completed_at = r.expires_at = None
        r.execute_at = now + delay if delay > 0 else None
        self._count_deps(slot, broken_waits=True)
        self._saved(r, now)
        self._notify(Notice("jobs"))
        return True

    async def update_progress(self, update: ProgressUpdate, *, now: float) -> bool:
        self._begin(now)
        slot = self._held(update.job_id, update.fence)
        if slot is None:
            return False
        if update.progress is not None:
            slot.job.progress = update.progress
        if update.message is not None:
            slot.job.message = update.message
        self._saved(slot.job, now)
        return True

    async def renew(self, lease: Lease, *, duration: float, now: float) -> bool:
        self._begin(now)
        slot = self._held(lease.job_id, lease.fence)
        if slot is None:
            return False
        slot.job.lease_expires_at = now + duration  # not a change subscribers see
        return True

    async def reclaim_expired(self, *, now: float) -> list[str]:
        self._begin(now)
        reclaimed = []
        for slot in list(self._jobs.values()):
            r = slot.job
            if r.status != "processing" or r.lease_expires_at is None:
                continue
            if r.lease_expires_at >= now:  # a lease is expired after its last second
                continue
            r.lost += 1
            if lost_ends_job(r.lost, r.max_lost):
                r.error = lost_error(r.lost)
                self._end(slot, Event.FAIL, now)
            else:  # back to PENDING, due at once; the attempt still counts
                self._requeue(slot, Event.RELEASE, None, now)
            reclaimed.append(r.id)
        if reclaimed:
            self._notify(Notice("jobs"))
        return reclaimed

    # -- reads -------------------------------------------------------------------------------

    async def get(self, job_id: str, *, now: float) -> JobRecord | None:
        self._begin(now)
        slot = self._jobs.get(job_id)
        return None if slot is None else copy.deepcopy(slot.job)

    async def list_jobs(
        self,
        status: str | None,
        *,
        job_type: str | None,
        limit: int,
        offset: int,
        now: float,
    ) -> list[JobRecord]:
        self._begin(now)
        found = [
            slot
            for slot in self._jobs.values()
            if (status is None or slot.job.status == status)
            and (job_type is None or slot.job.job_type == job_type)
        ]
        if status == "pending":  # claim order: claimable, then scheduled by due time, waiting
            found.sort(key=lambda slot: _pending_order(slot, now))
        else:  # most recently updated first
            found.sort(key=lambda slot: slot.job.updated_at, reverse=True)
        return [copy.deepcopy(slot.job) for slot in found[offset : offset + limit]]

    async def stats(self, *, now: float) -> QueueStats:
        self._begin(now)
        counts = dict.fromkeys(("pending", "processing", "complete", "failed", "cancelled"), 0)
        scheduled = waiting = 0
        for slot in self._jobs.values():
            counts[slot.job.status] += 1
            if slot.job.status == "pending":
                group = _group(slot.job, now)
                scheduled += group == 1
                waiting += group == 2
        return QueueStats(**counts, scheduled=scheduled, waiting=waiting)

    async def purge(
        self,
        statuses: Iterable[str],
        *,
        before: float | None,
        job_type: str | None,
        now: float,
    ) -> int:
        # The jobs that had ended when the purge began, not those its own deletions cancel.
        statuses = set(statuses)
        ended = [slot.job for slot in self._jobs.values() if slot.job.status in statuses]
        self._begin(now)
        doomed = [
            r
            for r in ended
            if r.id in self._jobs
            and (before is None or (r.completed_at or 0.0) < before)
            and (job_type is None or r.job_type == job_type)
        ]
        for r in doomed:
            self._delete(r.id, now)
        return len(doomed)

    async def next_due(self, job_types: Sequence[str] | None, *, now: float) -> float | None:
        self._begin(now)
        dues = [
            slot.job.execute_at
            for slot in self._jobs.values()
            if _group(slot.job, now) == 1
            and (job_types is None or slot.job.job_type in job_types)
        ]
        return min((due for due in dues if due is not None), default=None)

    # -- notifications: pushed to this process's workers and subscribers ---------------------

    def _notify(self, notice: Notice) -> None:
        for inbox in self._listeners:
            inbox.put(notice)

    def _publish(self, update: UpdateRecord) -> None:
        for inbox in self._subscribers.get(update.job_id, ()):
            inbox.put(update)

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[Notice]]:
        inbox: _Inbox[Notice] = _Inbox()
        self._listeners.add(inbox)
        try:
            yield inbox
        finally:
            self._listeners.discard(inbox)

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[AsyncIterator[UpdateRecord]]:
        inbox: _Inbox[UpdateRecord] = _Inbox()
        self._subscribers.setdefault(job_id, set()).add(inbox)
        try:
            yield inbox
        finally:
            inboxes = self._subscribers[job_id]
            inboxes.discard(inbox)
            if not inboxes:
                del self._subscribers[job_id]

    async def publish(self, update: UpdateRecord) -> None:
        if self._closed:
            raise QueueClosedError("the dict backend")
        self._publish(update)


def _group(r: JobRecord, now: float) -> int | None:
    """Where a PENDING job stands: 0 claimable, 1 scheduled (not yet due), 2 waiting on
    dependencies (due or not); None for any other status."""
    if r.status != "pending":
        return None
    if r.pending_deps > 0:
        return 2
    return 1 if r.execute_at is not None and r.execute_at > now else 0


def _pending_order(slot: _Slot, now: float) -> tuple[int, float, int, int]:
    group = _group(slot.job, now) or 0
    due = slot.job.execute_at or 0.0 if group == 1 else 0.0
    return (group, due, PRIORITY_RANK[slot.job.priority], slot.order)


T = TypeVar("T")


class _Inbox(Generic[T]):
    """What one listener or subscriber has not read yet. Putting never waits: when full, the
    oldest item goes, so the newest (for a job, its terminal update) always arrives."""

    def __init__(self, size: int = 256) -> None:
        self._items: deque[T] = deque(maxlen=size)
        self._arrived: anyio.Event | None = None
        self._closed = False

    def close(self) -> None:
        """The backend closed: once empty, the reader gets ``QueueClosedError``."""
        self._closed = True
        if self._arrived is not None:
            self._arrived.set()

    def put(self, item: T) -> None:
        self._items.append(item)
        if self._arrived is not None:
            self._arrived.set()

    # A plain async iterator, not an async generator: its reader may stop at any point.
    def __aiter__(self) -> _Inbox[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._closed:
                raise QueueClosedError("the dict backend")
            self._arrived = anyio.Event()
            await self._arrived.wait()
        return self._items.popleft()


# -- the demo: python examples/dict_backend.py -------------------------------------------------


async def main() -> None:
    queue = JobQueue(backend=DictBackend())
    worker = Worker(queue, job_types=["add"])

    @worker.handler("add")
    async def add(ctx: JobContext) -> dict[str, int]:
        await ctx.update(progress=0.5, message="adding")
        return {"sum": ctx.data["a"] + ctx.data["b"]}

    first = await queue.enqueue("add", {"a": 1, "b": 2})
    second = await queue.enqueue("add", {"a": 40, "b": 2}, depends_on=[first])
    await worker.run(burst=True)  # run until nothing is left to claim
    for job_id in (first, second):
        job = await queue.get(job_id)
        assert job is not None
        print(f"{job_id}: {job.status.value}, results: {job.results}")
    print(f"stats: {await queue.stats()}")
    await queue.close()


if __name__ == "__main__":
    anyio.run(main)
