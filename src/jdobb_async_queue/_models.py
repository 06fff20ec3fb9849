"""The public data models: Job, JobStatus, JobPriority, JobUpdate, QueueStats.

These are pydantic models, the face users see. Backends and the runtime carry jobs as the leaner
:class:`~jdobb_async_queue._records.JobRecord` and convert at the boundary (``get``, ``claim``,
``JobContext.job``), so no per-job validation sits on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ._records import JobRecord

__all__ = [
    "Job",
    "JobPriority",
    "JobStatus",
    "JobUpdate",
    "QueueStats",
    "PRIORITY_WEIGHTS",
    "WorkerInfo",
]


class JobStatus(str, Enum):
    """Where a job is in its life. The transitions are in :mod:`jdobb_async_queue._states`."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """``True`` for COMPLETE, FAILED and CANCELLED."""
        return self in TERMINAL_STATUSES


#: COMPLETE, FAILED and CANCELLED (a str enum: plain status strings are found in it too).
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED})


class JobPriority(str, Enum):
    """How urgently a job is claimed: every HIGH job before any NORMAL, every NORMAL before LOW."""

    LOW = "low"  # weight: 1
    NORMAL = "normal"  # weight: 5
    HIGH = "high"  # weight: 10

    @property
    def weight(self) -> int:
        """The priority's weight: LOW 1, NORMAL 5, HIGH 10 (higher is claimed first)."""
        return PRIORITY_WEIGHTS[self]


#: The weight of each priority (higher is claimed first).
PRIORITY_WEIGHTS: dict[JobPriority, int] = {
    JobPriority.LOW: 1,
    JobPriority.NORMAL: 5,
    JobPriority.HIGH: 10,
}


class Job(BaseModel):
    """A job as stored by the queue.

    The first fourteen fields describe the job and its outcome; the rest are what scheduling,
    retries, leases and dependencies need. Datetimes are timezone-aware UTC.
    """

    model_config = ConfigDict(frozen=False)

    id: str
    job_type: str
    data: dict[str, Any] = {}
    status: JobStatus = JobStatus.PENDING
    priority: JobPriority = JobPriority.NORMAL
    progress: float = 0.0  # 0.0 to 1.0
    message: str | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    metadata: dict[str, Any] = {}
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    ttl: int | None = None  # seconds kept after reaching a terminal state
    #: Not claimed before this time (``delay``, ``execute_at`` or a retry's backoff); None: at once.
    execute_at: datetime | None = None
    #: Attempts started so far (a claim starts one).
    attempts: int = 0
    #: Failed attempts retried automatically before the job is FAILED for good.
    max_retries: int = 0
    #: Base delay of the exponential retry backoff, in seconds.
    retry_delay: float = 1.0
    #: Seconds one attempt may run before it is cancelled and failed; None: no limit.
    timeout: float | None = None
    #: When the current (or last) attempt started.
    started_at: datetime | None = None
    #: Jobs that must be COMPLETE before this one can be claimed.
    depends_on: list[str] = Field(default_factory=list)
    #: While this job is pending or processing, no other job with this key is enqueued.
    unique_key: str | None = None
    #: The worker holding the job's lease while it is PROCESSING.
    worker_id: str | None = None
    #: When the current lease runs out unless renewed.
    lease_expires_at: datetime | None = None

    @property
    def is_done(self) -> bool:
        """``True`` when the job is COMPLETE, FAILED or CANCELLED."""
        return self.status in TERMINAL_STATUSES

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the last attempt to completion; None until then."""
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()


class JobUpdate(BaseModel):
    """One change of a job, as the :class:`~jdobb_async_queue.Broadcaster` delivers it."""

    job_id: str
    status: JobStatus
    progress: float = 0.0
    message: str | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    timestamp: datetime
    #: Free-form data sent with :meth:`Broadcaster.send`; None for state changes.
    data: dict[str, Any] | None = None


class QueueStats(BaseModel):
    """Counts of jobs by status, from :meth:`JobQueue.stats`.

    ``pending`` counts every PENDING job; ``scheduled`` and ``waiting`` are the parts of it that
    are not yet due and that wait on dependencies.
    """

    model_config = ConfigDict(frozen=True)

    pending: int = 0
    processing: int = 0
    complete: int = 0
    failed: int = 0
    cancelled: int = 0
    scheduled: int = 0
    waiting: int = 0


#: How an attempt ended, as :class:`JobOutcome` reports it.
OutcomeStatus = Literal["complete", "failed", "retrying", "lost", "released"]


class _JobOnRead:
    """The ``job`` field of :class:`JobOutcome`: the :class:`Job` given to the constructor, or
    one built from the claimed record the first time it is read, then kept.

    Callbacks that read only ``job_type``, ``status`` and ``duration`` (metrics) are called on
    every attempt; building a pydantic ``Job`` for each costs about half of what a whole no-op
    job costs the worker (``bench/ops_overhead.py``).
    """

    def __get__(self, outcome: JobOutcome | None, owner: type | None = None) -> Job:
        if outcome is None:
            raise AttributeError("job")  # read on the class: there is no default
        held = outcome.__dict__
        job: Job | None = held.get("_job")
        if job is None:
            job = held["_job"] = held["_to_job"](held["_claimed"])
        return job

    def __set__(self, outcome: JobOutcome, job: Job) -> None:
        outcome.__dict__["_job"] = job


@dataclass(frozen=True)
class JobOutcome:
    """How one attempt of a job ended in a worker, as ``Worker.on_outcome`` callbacks see it.

    ``status`` is one of:

    - ``"complete"``: the handler returned; ``results`` holds what it returned;
    - ``"failed"``: it raised, timed out or returned an invalid result, with no retry left;
    - ``"retrying"``: the same, with a retry left (the job goes back to PENDING, backed off);
    - ``"lost"``: the job was taken away while it ran (cancelled, or the worker's lease on it
      lost): nothing is reported for it;
    - ``"released"``: the worker stopped hard (drain deadline, or ``run()`` cancelled) and
      handed the job back, due at once.

    A worker builds ``job`` only when a callback reads it; :attr:`job_id`, :attr:`job_type`,
    :attr:`attempt` and :attr:`queue_wait` are read without building it.
    """

    #: The job as this attempt claimed it (``job.attempts`` is this attempt's number).
    job: Job
    status: OutcomeStatus
    #: Why it failed (``"failed"``, ``"retrying"``), else None.
    error: str | None
    #: What the handler returned (``"complete"``), else None.
    results: dict[str, Any] | None
    #: Seconds the attempt ran, on this worker's monotonic clock.
    duration: float

    # The four below are worked out from ``job`` on first read and kept. A worker's outcome
    # has them already (``claimed_outcome``): a ``cached_property`` is found in the instance's
    # ``__dict__`` first, so reading one there is a plain lookup, with no call.

    @cached_property
    def job_id(self) -> str:
        """``job.id``."""
        return self.job.id

    @cached_property
    def job_type(self) -> str:
        """``job.job_type``."""
        return self.job.job_type

    @cached_property
    def attempt(self) -> int:
        """``job.attempts``: this attempt's number, 1 for the first."""
        return self.job.attempts

    @cached_property
    def queue_wait(self) -> float | None:
        """Seconds from the job's enqueue (or its due time, if later) to the start of this
        attempt, on the store's clock; None if the job has no start time."""
        job = self.job
        if job.started_at is None:
            return None
        since = job.created_at
        if job.execute_at is not None and job.execute_at > since:
            since = job.execute_at
        return max((job.started_at - since).total_seconds(), 0.0)


# Installed after the class is made, so dataclass sees a plain required field; its __init__
# then stores ``job`` through the descriptor, and repr, == and replace() read it through it.
setattr(JobOutcome, "job", _JobOnRead())  # noqa: B010


def claimed_outcome(
    claimed: JobRecord,
    to_job: Callable[[JobRecord], Job],
    status: OutcomeStatus,
    error: str | None,
    results: dict[str, Any] | None,
    duration: float,
) -> JobOutcome:
    """The :class:`JobOutcome` of an attempt of ``claimed`` (the record the worker claimed),
    whose ``job`` is ``to_job(claimed)``, built the first time it is read, so ``claimed`` must
    not change afterwards (a worker's claimed records are its own copies, left alone once the
    attempt ends). For the runtime; a test of a callback builds ``JobOutcome(job=..., ...)``.

    Called for every attempt when a callback is registered, so it fills the instance's
    ``__dict__`` item by item (cheaper than ``update`` or ``__init__``'s ``object.__setattr__``)
    and works out ``queue_wait`` inline, as :attr:`JobOutcome.queue_wait` does from the job."""
    outcome = JobOutcome.__new__(JobOutcome)
    held = outcome.__dict__
    held["_claimed"] = claimed
    held["_to_job"] = to_job
    held["status"] = status
    held["error"] = error
    held["results"] = results
    held["duration"] = duration
    held["job_id"] = claimed.id
    held["job_type"] = claimed.job_type
    held["attempt"] = claimed.attempts
    started = claimed.started_at
    if started is None:
        held["queue_wait"] = None
    else:
        since, due = claimed.created_at, claimed.execute_at
        if due is not None and due > since:
            since = due
        held["queue_wait"] = started - since if started > since else 0.0
    return outcome


class WorkerInfo(BaseModel):
    """A live worker, from the store's registry (``await queue.workers()``).

    Every running :class:`~jdobb_async_queue.Worker` registers itself when ``run()`` starts,
    refreshes its entry every few seconds and removes it when it stops; one that died drops out
    ``WORKER_TTL`` seconds (30) after its last heartbeat.
    """

    model_config = ConfigDict(frozen=True)

    #: ``Worker.worker_id``.
    id: str
    host: str
    pid: int
    started_at: datetime
    #: ``max_concurrent``: how many jobs it runs at once.
    concurrency: int
    #: The job types it claims.
    job_types: list[str]
    #: Ids of the jobs it is running now.
    running: list[str]
    #: When it last said it was alive.
    heartbeat_at: datetime
