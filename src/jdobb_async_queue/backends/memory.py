"""The memory backend: every job in this process's memory, for tests and development.

Atomicity comes for free: every method runs to its end without awaiting, so no other task can
observe a half-applied transition. Claims read per-type heaps of ready jobs, so their cost does
not depend on how many jobs are scheduled, waiting on dependencies or finished.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec

from .._errors import DuplicateJobError, QueueClosedError, UnknownDependencyError
from .._models import JobStatus, QueueStats
from .._policy import dependency_error, lost_ends_job, lost_error
from .._records import (
    JSON_FIELDS,
    PRIORITY_RANK,
    JobRecord,
    Lease,
    Outcome,
    ProgressUpdate,
    UpdateRecord,
    gone_update,
)
from .._records import record_update as _update_of
from .._states import Event, transition
from ._hub import LocalHub
from .base import Notice, QueueBackend

__all__ = ["MemoryBackend"]

_READY, _SCHEDULED, _WAITING = "ready", "scheduled", "waiting"
_TERMINAL = frozenset({"complete", "failed", "cancelled"})
_LIVE = frozenset({"pending", "processing"})


class MemoryBackend(QueueBackend):
    """Jobs in a dict, with heaps for claim order, due times, leases and retention."""

    name = "memory"

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._order: dict[str, int] = {}  # enqueue order, FIFO within a priority
        self._counter = itertools.count()
        self._where: dict[str, str] = {}  # PENDING jobs only: ready / scheduled / waiting
        self._ready: dict[str, list[tuple[int, int, str]]] = {}  # job_type -> (rank, order, id)
        self._scheduled: list[tuple[float, int, str]] = []  # (execute_at, order, id)
        self._leases: list[tuple[float, str, int, int]] = []  # (expires, id, fence, order)
        self._expiry: list[tuple[float, str]] = []  # (expires_at, id)
        self._dependents: dict[str, dict[str, None]] = {}  # dependency -> jobs waiting on it
        self._unique: dict[str, str] = {}
        self._by_status: dict[str, dict[str, None]] = {s: {} for s in (*_LIVE, *_TERMINAL)}
        self._where_count: Counter[str] = Counter()
        self._hub = LocalHub()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosedError("the memory backend")

    async def aclose(self) -> None:
        self._closed = True
        self._hub.close("the memory backend")  # its subscribers and listeners end

    # -- bookkeeping ------------------------------------------------------------------------

    def _set_status(self, r: JobRecord, status: str, now: float) -> None:
        del self._by_status[r.status][r.id]
        r.status = status
        r.updated_at = now
        r.update_seq += 1
        self._by_status[status][r.id] = None

    def _touch(self, r: JobRecord, now: float) -> None:
        r.updated_at = now
        r.update_seq += 1
        index = self._by_status[r.status]
        del index[r.id]
        index[r.id] = None

    def _set_where(self, job_id: str, where: str | None) -> None:
        old = self._where.pop(job_id, None)
        if old is not None:
            self._where_count[old] -= 1
        if where is not None:
            self._where[job_id] = where
            self._where_count[where] += 1

    def _place(self, r: JobRecord, now: float) -> None:
        """File a PENDING job under ready, scheduled or waiting."""
        if r.pending_deps > 0:
            self._set_where(r.id, _WAITING)
        elif r.execute_at is not None and r.execute_at > now:
            self._set_where(r.id, _SCHEDULED)
            heapq.heappush(self._scheduled, (r.execute_at, self._order[r.id], r.id))
        else:
            self._set_where(r.id, _READY)
            heap = self._ready.setdefault(r.job_type, [])
            heapq.heappush(heap, (PRIORITY_RANK[r.priority], self._order[r.id], r.id))

    def _promote(self, now: float) -> None:
        """Move scheduled jobs that are due into the ready heaps."""
        heap = self._scheduled
        while heap and heap[0][0] <= now:
            due, order, job_id = heapq.heappop(heap)
            r = self._jobs.get(job_id)
            if (
                r is not None
                and self._where.get(job_id) == _SCHEDULED
                and r.execute_at == due
                and self._order[job_id] == order
            ):
                self._place(r, now)

    def _expire(self, now: float) -> None:
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, job_id = heapq.heappop(heap)
            r = self._jobs.get(job_id)
            if r is not None and r.expires_at == expires_at and r.status in _TERMINAL:
                self._delete(r, now)

    def _delete(self, r: JobRecord, now: float) -> None:
        """Delete a terminal job. A job still waiting on it (retried by hand while ``r`` was
        FAILED or CANCELLED) can never run now: it is cancelled, transitively."""
        del self._jobs[r.id]
        del self._order[r.id]
        del self._by_status[r.status][r.id]
        if self._hub.watches(r.id):
            self._hub.publish(gone_update(r.id, now))
        for dep_id in self._dependents.pop(r.id, {}):
            d = self._jobs[dep_id]  # an edge lasts only while its job waits
            d.error = dependency_error(r.id, "deleted")
            self._end(d, "cancelled", now)

    def _alive(self, job_id: str, now: float) -> JobRecord | None:
        r = self._jobs.get(job_id)
        if r is None or (r.expires_at is not None and r.expires_at <= now):
            return None
        return r

    def _emit(self, r: JobRecord) -> None:
        if self._hub.watches(r.id):
            self._hub.publish(_update_of(r))

    def _wake(self) -> None:
        self._hub.notify(Notice("jobs"))

    # -- terminal states and their consequences ----------------------------------------------

    def _end(self, r: JobRecord, status: str, now: float) -> list[str]:
        """Put ``r`` in a terminal state and settle its dependents; return ids it woke."""
        self._leave_processing(r)
        self._set_where(r.id, None)
        self._set_status(r, status, now)
        r.completed_at = now
        if r.ttl is not None:
            r.expires_at = now + r.ttl
            heapq.heappush(self._expiry, (r.expires_at, r.id))
        if r.unique_key is not None and self._unique.get(r.unique_key) == r.id:
            del self._unique[r.unique_key]
        for dep_id in r.depends_on:  # the edges of what it still waited on are moot now
            edges = self._dependents.get(dep_id)
            if edges is not None:
                edges.pop(r.id, None)
        self._emit(r)
        return self._settle_dependents(r, now)

    def _settle_dependents(self, r: JobRecord, now: float) -> list[str]:
        woken: list[str] = []
        for dep_id in self._dependents.pop(r.id, {}):
            d = self._jobs[dep_id]  # an edge lasts only while its job waits
            if r.status == "complete":
                d.pending_deps -= 1
                if d.pending_deps == 0:
                    self._place(d, now)
                    woken.append(dep_id)
            else:
                d.error = dependency_error(r.id, r.status)
                woken.extend(self._end(d, "cancelled", now))
        return woken

    def _leave_processing(self, r: JobRecord) -> None:
        r.worker_id = None
        r.lease_expires_at = None

    # -- writes ------------------------------------------------------------------------------

    async def enqueue_many(self, records: Sequence[JobRecord], *, now: float) -> list[str]:
        self._check_open()
        self._expire(now)
        ids, fresh, alias = self._admit(records, now)
        for r in fresh:
            self._store(r, alias, now)
        if fresh:
            self._wake()
        return ids

    def _admit(
        self, records: Sequence[JobRecord], now: float
    ) -> tuple[list[str], list[JobRecord], dict[str, str]]:
        """Check a batch without changing anything: ids, unique keys, dependencies."""
        ids: list[str] = []
        fresh: list[JobRecord] = []
        alias: dict[str, str] = {}  # dropped duplicate-key id -> holder id
        batch_ids: set[str] = set()
        keys: dict[str, str] = {}
        for r in records:
            if r.id in batch_ids or r.id in self._jobs:
                raise DuplicateJobError(r.id)
            batch_ids.add(r.id)
            holder = self._holder(r.unique_key, keys)
            if holder is not None:
                alias[r.id] = holder
                ids.append(holder)
                continue
            unknown = [
                d
                for d in r.depends_on
                if alias.get(d, d) not in batch_ids and self._alive(alias.get(d, d), now) is None
            ]
            if unknown:
                raise UnknownDependencyError(unknown)
            if r.unique_key is not None:
                keys[r.unique_key] = r.id
            ids.append(r.id)
            fresh.append(r)
        return ids, fresh, alias

    def _holder(self, key: str | None, batch_keys: dict[str, str]) -> str | None:
        # _unique only ever names live jobs: keys are freed when their job ends.
        if key is None:
            return None
        return batch_keys.get(key) or self._unique.get(key)

    def _store(self, r: JobRecord, alias: dict[str, str], now: float) -> None:
        r.depends_on = [alias.get(d, d) for d in r.depends_on]
        self._jobs[r.id] = r
        self._order[r.id] = next(self._counter)
        self._by_status["pending"][r.id] = None
        if r.unique_key is not None:
            self._unique[r.unique_key] = r.id
        broken = self._count_deps(r, broken_waits=False)
        if broken is not None:
            r.error = dependency_error(broken.id, broken.status)
            self._end(r, "cancelled", now)
        else:
            self._place(r, now)

    def _count_deps(self, r: JobRecord, *, broken_waits: bool) -> JobRecord | None:
        """Set ``pending_deps`` and reverse edges; return the first dependency that ended
        FAILED or CANCELLED. With ``broken_waits`` such a dependency counts as pending (a retried
        job waits for its dependency to be retried and complete)."""
        r.pending_deps = 0
        broken: JobRecord | None = None
        for dep_id in dict.fromkeys(r.depends_on):
            d = self._jobs.get(dep_id)
            if d is None or d.status == "complete":
                continue
            if d.status in ("failed", "cancelled"):
                broken = broken or d
                if not broken_waits:
                    continue
            r.pending_deps += 1
            self._dependents.setdefault(dep_id, {})[r.id] = None
        return broken

    async def claim_pending_job(
        self,
        job_types: Sequence[str] | None,
        *,
        limit: int = 1,
        worker_id: str,
        lease: float,
        now: float,
    ) -> list[JobRecord]:
        self._check_open()
        self._promote(now)
        types = list(self._ready) if job_types is None else job_types  # []: no type at all
        heaps = [self._ready[t] for t in types if t in self._ready]
        claimed: list[JobRecord] = []
        while len(claimed) < limit:
            heap = min((h for h in heaps if h), key=lambda h: h[0], default=None)
            if heap is None:
                break
            _, order, job_id = heapq.heappop(heap)
            r = self._jobs.get(job_id)
            # A stale entry (the job moved on, or was deleted and its id used again) is skipped.
            if r is None or self._where.get(job_id) != _READY or self._order[job_id] != order:
                continue
            self._claim(r, worker_id, lease, now)
            claimed.append(_copy(r))
        return claimed

    def _claim(self, r: JobRecord, worker_id: str, lease: float, now: float) -> None:
        self._set_where(r.id, None)
        self._set_status(r, "processing", now)
        r.attempts += 1
        r.fence += 1
        r.worker_id = worker_id
        r.started_at = now
        r.lease_expires_at = now + lease
        heapq.heappush(self._leases, (r.lease_expires_at, r.id, r.fence, self._order[r.id]))
        self._emit(r)

    def _held(self, job_id: str, fence: int | None) -> JobRecord | None:
        r = self._jobs.get(job_id)
        if r is None or r.status != "processing" or (fence is not None and fence != r.fence):
            return None
        return r

    async def finish(self, outcome: Outcome, *, now: float) -> bool:
        self._check_open()
        r = self._held(outcome.job_id, outcome.fence)
        if r is None:
            return False
        woken: list[str] = []
        kind = outcome.kind
        if kind == "complete":
            r.results = outcome.results
            r.progress = 1.0
            r.error = None
            woken = self._end(r, "complete", now)
        elif kind == "release":
            r.attempts -= 1
            r.progress, r.message, r.started_at = 0.0, None, None
            self._requeue(r, None, now)
            woken = [r.id]
        elif kind == "retry":
            r.error = outcome.error
            self._requeue(r, now + outcome.delay, now)
            woken = [r.id]  # the claimer must learn the new due time
        else:
            r.error = outcome.error
            woken = self._end(r, "failed", now)
        if woken:
            self._wake()
        return True

    def _requeue(self, r: JobRecord, execute_at: float | None, now: float) -> None:
        """PROCESSING -> PENDING (retry later, release, reclaim)."""
        self._leave_processing(r)
        self._set_status(r, "pending", now)
        r.execute_at = execute_at
        self._place(r, now)
        self._emit(r)

    async def cancel(self, job_id: str, reason: str | None, *, now: float) -> bool:
        self._check_open()
        r = self._alive(job_id, now)
        if r is None or transition_refused(r.status, Event.CANCEL):
            return False
        was_processing = r.status == "processing"
        fence = r.fence
        r.error = reason
        woken = self._end(r, "cancelled", now)
        if was_processing:
            self._hub.notify(Notice("cancel", job_id, fence))
        if woken:
            self._wake()
        return True

    async def retry(self, job_id: str, *, delay: float, now: float) -> bool:
        self._check_open()
        self._expire(now)  # an expired dependency is gone, not FAILED: it counts as met
        r = self._alive(job_id, now)
        if r is None or transition_refused(r.status, Event.RETRY):
            return False
        key = r.unique_key
        if key is not None and self._unique.get(key, job_id) != job_id:
            return False
        if key is not None:
            self._unique[key] = job_id
        r.attempts = r.lost = 0
        r.error = r.message = r.results = None
        r.progress = 0.0
        r.completed_at = r.expires_at = None
        r.execute_at = now + delay if delay > 0 else None
        self._set_status(r, "pending", now)
        self._count_deps(r, broken_waits=True)
        self._place(r, now)
        self._emit(r)
        self._wake()
        return True

    async def update_progress(self, update: ProgressUpdate, *, now: float) -> bool:
        self._check_open()
        r = self._held(update.job_id, update.fence)
        if r is None:
            return False
        if update.progress is not None:
            r.progress = update.progress
        if update.message is not None:
            r.message = update.message
        self._touch(r, now)
        self._emit(r)
        return True

    async def renew(self, lease: Lease, *, duration: float, now: float) -> bool:
        self._check_open()
        r = self._held(lease.job_id, lease.fence)
        if r is None:
            return False
        r.lease_expires_at = now + duration
        heapq.heappush(self._leases, (r.lease_expires_at, r.id, r.fence, self._order[r.id]))
        return True

    async def reclaim_expired(self, *, now: float) -> list[str]:
        self._check_open()
        self._expire(now)  # housekeeping on every worker's lease check
        reclaimed: list[str] = []
        heap = self._leases
        while heap and heap[0][0] < now:
            expires, job_id, fence, order = heapq.heappop(heap)
            r = self._held(job_id, fence)
            if r is not None and r.lease_expires_at == expires and self._order[job_id] == order:
                r.lost += 1
                if lost_ends_job(r.lost, r.max_lost):
                    r.error = lost_error(r.lost)
                    self._end(r, "failed", now)
                else:
                    self._requeue(r, None, now)
                reclaimed.append(job_id)
        if reclaimed:
            self._wake()
        return reclaimed

    # -- reads -------------------------------------------------------------------------------

    async def get(self, job_id: str, *, now: float) -> JobRecord | None:
        self._check_open()
        r = self._alive(job_id, now)
        return None if r is None else _copy(r)

    async def list_jobs(
        self,
        status: str | None,
        *,
        job_type: str | None,
        limit: int,
        offset: int,
        now: float,
    ) -> list[JobRecord]:
        self._check_open()
        self._expire(now)
        self._promote(now)
        if status == "pending":
            ids: Iterable[str] = sorted(self._by_status["pending"], key=self._claim_key)
        elif status is not None:
            ids = reversed(self._by_status[status])
        else:
            everything = (self._jobs[i] for s in self._by_status.values() for i in s)
            ids = (r.id for r in sorted(everything, key=lambda r: -r.updated_at))
        matching = (
            self._jobs[i] for i in ids if job_type is None or self._jobs[i].job_type == job_type
        )
        return [_copy(r) for r in itertools.islice(matching, offset, offset + limit)]

    def _claim_key(self, job_id: str) -> tuple[int, float, int, int]:
        r = self._jobs[job_id]
        group = {_READY: 0, _SCHEDULED: 1, _WAITING: 2}[self._where[job_id]]
        due = r.execute_at if group == 1 and r.execute_at is not None else 0.0
        return (group, due, PRIORITY_RANK[r.priority], self._order[job_id])

    async def stats(self, *, now: float) -> QueueStats:
        self._check_open()
        self._expire(now)
        self._promote(now)
        counts = {s: len(ids) for s, ids in self._by_status.items()}
        return QueueStats(
            **counts,
            scheduled=self._where_count[_SCHEDULED],
            waiting=self._where_count[_WAITING],
        )

    async def purge(
        self,
        statuses: Iterable[str],
        *,
        before: float | None,
        job_type: str | None,
        now: float,
    ) -> int:
        self._check_open()
        # The jobs that had ended when the purge began: not those its expiry step cancels.
        ended = [i for s in statuses for i in self._by_status[s]]
        self._expire(now)
        doomed = [
            r
            for r in map(self._jobs.get, ended)
            if r is not None
            and (before is None or (r.completed_at or 0.0) < before)
            and (job_type is None or r.job_type == job_type)
        ]
        for r in doomed:
            self._delete(r, now)
        return len(doomed)

    async def next_due(self, job_types: Sequence[str] | None, *, now: float) -> float | None:
        self._check_open()
        # The earliest of every type: waking early for another type's job is harmless.
        self._promote(now)
        heap = self._scheduled
        while heap:
            due, order, job_id = heap[0]
            r = self._jobs.get(job_id)
            if (
                r is not None
                and self._where.get(job_id) == _SCHEDULED
                and r.execute_at == due
                and self._order[job_id] == order
            ):
                return due
            heapq.heappop(heap)
        return None

    # -- notifications -----------------------------------------------------------------------

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[Notice]]:
        return self._hub.listen()

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[AsyncIterator[UpdateRecord]]:
        return self._hub.subscribe(job_id)

    async def publish(self, update: UpdateRecord) -> None:
        self._check_open()
        self._hub.publish(update)


def transition_refused(status: str, event: Event) -> bool:
    """Whether the state machine refuses ``event`` from ``status``."""
    return transition(JobStatus(status), event) is None


#: The fields holding JSON values (``_records.JSON_FIELDS``), the only mutable ones.
_JSON_FIELDS = tuple(JSON_FIELDS.items())


def _copy(r: JobRecord) -> JobRecord:
    """A snapshot the caller may keep and change: neither later transitions nor the caller's
    changes show through it (as with a store that serializes). Its JSON values are copies
    (through JSON, which they are known to survive); empty ones cost next to nothing."""
    copy = msgspec.structs.replace(r)
    for name, kind in _JSON_FIELDS:
        value = getattr(r, name)
        if value is not None:
            setattr(copy, name, _json_copy(value) if value else kind())
    return copy


_encode, _decode = msgspec.json.encode, msgspec.json.decode


_SHARED = frozenset({str, int, float, bool, type(None)})  # immutable: shared, not copied


def _json_copy(value: Any) -> Any:
    # A flat JSON value (a list of ids; a dict of scalars and empty containers, e.g. a task's
    # {"args": [], "kwargs": {}}) is copied here, without the JSON round trip; anything else
    # goes through JSON.
    if type(value) is list:
        if all(type(item) in _SHARED for item in value):
            return list(value)
        return _decode(_encode(value))
    flat: dict[str, Any] = {}
    for key, item in value.items():
        kind = type(item)
        if kind in _SHARED:
            flat[key] = item
        elif kind is list and not item:
            flat[key] = []
        elif kind is dict and not item:
            flat[key] = {}
        else:
            copied: dict[str, Any] = _decode(_encode(value))
            return copied
    return flat
