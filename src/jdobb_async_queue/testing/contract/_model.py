"""A plain reference model of one queue, for ``test_state_machine.py``.

Nothing here is clever: a dict of dataclasses, and every operation spelled out from the backend
contract (the docstrings of ``backends/base.py``) by scanning all jobs. It never reads a
backend; the state machine runs each operation on the model and on the backend and compares.

What the model cannot know, it is told or allowed a range:

- a retry's backoff has random jitter: :meth:`Model.fail` returns the window the due time must
  lie in, and the test adopts the backend's value (:meth:`Model.adopt_execute_at`) after
  checking it;
- when a cascade could name more than one dependency in a job's error, ``errors`` holds every
  acceptable message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jdobb_async_queue.backends import DEFAULT_MAX_LOST, dependency_error, lost_error

__all__ = ["ModelJob", "Model", "UnknownDependency", "RANK", "BACKOFF_CAP"]

#: Claim order: HIGH before NORMAL before LOW.
RANK = {"high": 0, "normal": 1, "low": 2}
#: A retry's backoff before jitter is at most this many seconds; jitter adds up to 10 %.
BACKOFF_CAP = 3600.0
BACKOFF_STRETCH = 1.1

PENDING, PROCESSING = "pending", "processing"
COMPLETE, FAILED, CANCELLED = "complete", "failed", "cancelled"
LIVE = frozenset({PENDING, PROCESSING})
BROKEN = frozenset({FAILED, CANCELLED})


class UnknownDependency(Exception):
    """The model's verdict for an enqueue naming a job that does not exist."""


@dataclass
class ModelJob:
    """One job as the model expects the backend to store it."""

    id: str
    job_type: str
    priority: str
    seq: int  # enqueue order: FIFO within a priority
    depends_on: tuple[str, ...]
    unique_key: str | None
    max_retries: int
    retry_delay: float
    status: str = PENDING
    attempts: int = 0
    fence: int = 0
    #: Times its lease ran out; past ``max_lost`` the job is FAILED.
    lost: int = 0
    max_lost: int = DEFAULT_MAX_LOST
    #: Every error message the backend may hold (one, unless a cascade leaves a choice).
    errors: frozenset[str | None] = frozenset({None})
    progress: float = 0.0
    message: str | None = None
    results: dict[str, Any] | None = None
    execute_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    lease_expires_at: float | None = None

    def summary(self) -> str:
        deps = f" deps={list(self.depends_on)}" if self.depends_on else ""
        key = f" key={self.unique_key}" if self.unique_key else ""
        due = f" due={self.execute_at}" if self.execute_at is not None else ""
        lease = f" lease={self.lease_expires_at}" if self.lease_expires_at is not None else ""
        return (
            f"{self.id}: {self.status} {self.job_type}/{self.priority} "
            f"attempts={self.attempts} max_retries={self.max_retries} fence={self.fence}"
            f"{deps}{key}{due}{lease} errors={sorted(map(str, self.errors))}"
        )


@dataclass
class Model:
    """Every job of one queue, and the clock."""

    now: float
    jobs: dict[str, ModelJob] = field(default_factory=dict)
    _seq: int = 0

    # -- questions -----------------------------------------------------------------------------

    def holder(self, key: str | None) -> str | None:
        """The live (PENDING or PROCESSING) job holding ``key``, if any."""
        if key is None:
            return None
        for job in self.jobs.values():
            if job.unique_key == key and job.status in LIVE:
                return job.id
        return None

    def waiting(self, job: ModelJob) -> bool:
        """Whether ``job`` has a dependency that is not COMPLETE."""
        return any(self.jobs[d].status != COMPLETE for d in job.depends_on)

    def due(self, job: ModelJob) -> bool:
        return job.execute_at is None or job.execute_at <= self.now

    def next_claim(self, job_types: Sequence[str] | None) -> ModelJob | None:
        """The job ``claim(job_types)`` must return: claimable, then by priority, then FIFO."""
        candidates = [
            job
            for job in self.jobs.values()
            if job.status == PENDING
            and not self.waiting(job)
            and self.due(job)
            and (job_types is None or job.job_type in job_types)
        ]
        return min(candidates, key=lambda j: (RANK[j.priority], j.seq), default=None)

    def group(self, job: ModelJob) -> int:
        """Where a PENDING job stands: 0 claimable, 1 scheduled (not yet due), 2 waiting on
        dependencies. ``list_jobs("pending")`` lists them in this order."""
        if self.waiting(job):
            return 2
        return 0 if self.due(job) else 1

    def next_due(self) -> float | None:
        """The earliest due time of a scheduled job (``next_due``: how long a worker may sleep)."""
        dues = [
            j.execute_at
            for j in self.jobs.values()
            if j.status == PENDING and self.group(j) == 1 and j.execute_at is not None
        ]
        return min(dues, default=None)

    def next_deadline(self) -> float | None:
        """The earliest future moment something changes on its own: a lease runs out or a
        PENDING job falls due. (Stepping onto it exactly tests both boundaries: a job is due at
        ``execute_at <= now``; a lease is expired only at ``lease_expires_at < now``.)"""
        moments = [
            t
            for j in self.jobs.values()
            for t in (j.lease_expires_at, j.execute_at if j.status == PENDING else None)
            if t is not None and t > self.now
        ]
        return min(moments, default=None)

    def pending_deps(self, job: ModelJob) -> int:
        return sum(self.jobs[d].status != COMPLETE for d in job.depends_on)

    def stats(self) -> dict[str, int]:
        counts = dict.fromkeys((PENDING, PROCESSING, COMPLETE, FAILED, CANCELLED), 0)
        for job in self.jobs.values():
            counts[job.status] += 1
        groups = [self.group(j) for j in self.jobs.values() if j.status == PENDING]
        # Disjoint parts of PENDING, as list_jobs orders them: a job waiting on dependencies
        # counts as waiting whether or not it is due.
        counts["scheduled"] = groups.count(1)
        counts["waiting"] = groups.count(2)
        return counts

    # -- operations (each returns what the backend must return) --------------------------------

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set_time(self, now: float) -> None:
        assert now >= self.now
        self.now = now

    def enqueue(
        self,
        job_id: str,
        job_type: str,
        *,
        priority: str = "normal",
        delay: float = 0,
        max_retries: int = 0,
        retry_delay: float = 1.0,
        depends_on: Sequence[str] = (),
        unique_key: str | None = None,
    ) -> str:
        holder = self.holder(unique_key)
        if holder is not None:
            return holder  # nothing stored
        if any(d not in self.jobs for d in depends_on):
            raise UnknownDependency
        job = ModelJob(
            id=job_id,
            job_type=job_type,
            priority=priority,
            seq=self._seq,
            depends_on=tuple(dict.fromkeys(depends_on)),
            unique_key=unique_key,
            max_retries=max_retries,
            retry_delay=retry_delay,
            execute_at=self.now + delay if delay > 0 else None,
        )
        self._seq += 1
        self.jobs[job_id] = job
        broken = [d for d in job.depends_on if self.jobs[d].status in BROKEN]
        if broken:
            job.errors = frozenset(dependency_error(d, self.jobs[d].status) for d in broken)
            self._end(job, CANCELLED)
        return job_id

    def claim(self, job_types: Sequence[str] | None, lease: float) -> str | None:
        job = self.next_claim(job_types)
        if job is None:
            return None
        job.status = PROCESSING
        job.attempts += 1
        job.fence += 1
        job.started_at = self.now
        job.lease_expires_at = self.now + lease
        return job.id

    def _held(self, job_id: str, fence: int | None) -> ModelJob | None:
        job = self.jobs.get(job_id)
        if job is None or job.status != PROCESSING or (fence is not None and fence != job.fence):
            return None
        return job

    def update(
        self, job_id: str, progress: float | None, message: str | None, fence: int | None = None
    ) -> bool:
        job = self._held(job_id, fence)
        if job is None:
            return False
        if progress is not None:
            job.progress = progress
        if message is not None:
            job.message = message
        return True

    def complete(
        self, job_id: str, results: dict[str, Any] | None, fence: int | None = None
    ) -> bool:
        job = self._held(job_id, fence)
        if job is None:
            return False
        job.results = results
        job.progress = 1.0
        job.errors = frozenset({None})  # an earlier attempt's error is cleared
        self._end(job, COMPLETE)
        return True

    def fail(
        self, job_id: str, error: str, retry: bool, fence: int | None = None
    ) -> tuple[float, float] | bool:
        """Fail the attempt. Returns ``False`` if refused, ``True`` if the job is FAILED for
        good, or the window ``(earliest, latest)`` its retry must be due in (then the caller
        must :meth:`adopt_execute_at`)."""
        job = self._held(job_id, fence)
        if job is None:
            return False
        job.errors = frozenset({error})
        if retry and job.attempts <= job.max_retries:
            job.status = PENDING
            job.lease_expires_at = None
            base = min(job.retry_delay * 2.0 ** (job.attempts - 1), BACKOFF_CAP)
            job.execute_at = None  # unknown until adopted
            return (self.now + base, self.now + base * BACKOFF_STRETCH)
        self._end(job, FAILED)
        return True

    def adopt_execute_at(self, job_id: str, execute_at: float | None) -> None:
        self.jobs[job_id].execute_at = execute_at

    def release(self, job_id: str, fence: int | None) -> bool:
        job = self._held(job_id, fence)
        if job is None:
            return False
        job.attempts -= 1
        job.progress, job.message, job.started_at = 0.0, None, None
        self._requeue(job)
        return True

    def renew(self, job_id: str, fence: int, duration: float) -> bool:
        job = self._held(job_id, fence)
        if job is None:
            return False
        job.lease_expires_at = self.now + duration
        return True

    def reclaim_expired(self) -> set[str]:
        expired = [
            j
            for j in self.jobs.values()
            if j.status == PROCESSING
            and j.lease_expires_at is not None
            and j.lease_expires_at < self.now
        ]
        for job in expired:
            job.lost += 1
            if job.lost > job.max_lost:
                job.errors = frozenset({lost_error(job.lost)})
                self._end(job, FAILED)
            else:
                self._requeue(job)
        return {j.id for j in expired}

    def cancel(self, job_id: str, reason: str | None) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.status not in LIVE:
            return False
        job.errors = frozenset({reason})
        self._end(job, CANCELLED)
        return True

    def retry(self, job_id: str, delay: float) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.status not in BROKEN:
            return False
        if self.holder(job.unique_key) not in (None, job.id):
            return False
        job.status = PENDING
        job.attempts = job.lost = 0
        job.errors = frozenset({None})
        job.progress = 0.0
        job.message = None
        job.results = None
        job.completed_at = None
        job.execute_at = self.now + delay if delay > 0 else None
        return True

    # -- consequences ----------------------------------------------------------------------------

    def _requeue(self, job: ModelJob) -> None:
        """PROCESSING -> PENDING, due at once (release, reclaim)."""
        job.status = PENDING
        job.lease_expires_at = None
        job.execute_at = None

    def _end(self, job: ModelJob, status: str) -> None:
        job.status = status
        job.completed_at = self.now
        job.lease_expires_at = None
        if status in BROKEN:
            self._cancel_dependents(job)

    def _cancel_dependents(self, origin: ModelJob) -> None:
        """``origin`` just ended FAILED or CANCELLED: cancel every PENDING job depending on it,
        transitively. A cancelled job's error names one of its dependencies that ended in this
        cascade (which one depends on the order a backend walks the graph)."""
        ended = {origin.id}
        cancelled: list[ModelJob] = []
        frontier = [origin.id]
        while frontier:
            parent = frontier.pop()
            for job in self.jobs.values():
                if job.status == PENDING and parent in job.depends_on:
                    job.status = CANCELLED
                    job.completed_at = self.now
                    cancelled.append(job)
                    ended.add(job.id)
                    frontier.append(job.id)
        for job in cancelled:
            job.errors = frozenset(
                dependency_error(p, self.jobs[p].status) for p in job.depends_on if p in ended
            )
