"""What backends store and hand to the runtime: lean msgspec structs, no validation on the hot path.

:class:`JobRecord` is a job as a backend sees it (times are float seconds since the epoch, the
status and priority plain strings). :func:`to_job` turns one into the public pydantic
:class:`~jdobb_async_queue.Job` at the boundary.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

import msgspec

from ._models import Job, JobPriority, JobStatus, JobUpdate, WorkerInfo

__all__ = [
    "JobRecord",
    "Outcome",
    "ProgressUpdate",
    "Lease",
    "UpdateRecord",
    "PRIORITY_RANK",
    "DEFAULT_MAX_LOST",
    "to_job",
    "to_update",
    "record_update",
    "gone_update",
    "WorkerRecord",
    "to_worker",
    "utc",
]

#: How many times a job's lease may run out before it is FAILED (``enqueue(max_lost=)``).
DEFAULT_MAX_LOST = 5

#: Claim order of the priorities: lower is claimed first.
PRIORITY_RANK: dict[str, int] = {"high": 0, "normal": 1, "low": 2}


class JobRecord(msgspec.Struct, kw_only=True):
    """One job as a backend stores it.

    Fields the backend owns (set on enqueue, claim and every transition): ``status``,
    ``attempts``, ``fence``, ``worker_id``, ``lease_expires_at``, ``started_at``, ``updated_at``,
    ``completed_at``, ``expires_at``, ``pending_deps``, ``lost``, ``update_seq``.
    """

    id: str
    job_type: str
    data: dict[str, Any] = {}
    status: str = "pending"
    priority: str = "normal"
    progress: float = 0.0
    message: str | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    metadata: dict[str, Any] = {}
    created_at: float = 0.0
    updated_at: float = 0.0
    completed_at: float | None = None
    ttl: int | None = None
    #: Not claimable before this time (None: at once).
    execute_at: float | None = None
    attempts: int = 0
    max_retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    started_at: float | None = None
    depends_on: list[str] = []
    unique_key: str | None = None
    worker_id: str | None = None
    lease_expires_at: float | None = None
    #: Bumped by every claim: a worker's late report about an older claim is ignored.
    fence: int = 0
    #: Dependencies not yet COMPLETE; claimable only at 0.
    pending_deps: int = 0
    #: When a terminal job is deleted (completed_at + ttl), None: kept.
    expires_at: float | None = None
    #: How many times its lease ran out (its worker died or stalled); past ``max_lost`` it fails.
    lost: int = 0
    #: Lease run-outs allowed before the job is FAILED (see ``_policy.lost_ends_job``).
    max_lost: int = DEFAULT_MAX_LOST
    #: The job's update sequence number: 1 when stored, +1 on every change of its state,
    #: progress or message. Subscribers order and de-duplicate updates by it, never by time.
    update_seq: int = 0


class Outcome(msgspec.Struct, kw_only=True, frozen=True):
    """How an attempt ended, as decided by :mod:`jdobb_async_queue._policy`: the transition a
    backend applies to a PROCESSING job whose fence matches.

    ``fence`` is the claim's fence; ``None`` applies to whoever holds the job. ``kind``:

    - ``"complete"``: COMPLETE with ``results``;
    - ``"retry"``: PENDING again with ``error``, due ``delay`` seconds after the store's now;
    - ``"fail"``: FAILED with ``error``;
    - ``"release"``: PENDING, due at once, the attempt not counted (a hard stop handed it back).
    """

    job_id: str
    kind: Literal["complete", "retry", "fail", "release"]
    fence: int | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    #: For ``"retry"``: seconds from the store's now until the job is due again.
    delay: float = 0.0


class ProgressUpdate(msgspec.Struct, kw_only=True, frozen=True):
    """A progress report for a PROCESSING job."""

    job_id: str
    progress: float | None = None
    message: str | None = None
    fence: int | None = None


class Lease(msgspec.Struct, kw_only=True, frozen=True):
    """A lease a worker holds on a PROCESSING job, identified by the claim's fence."""

    job_id: str
    fence: int


class UpdateRecord(msgspec.Struct, kw_only=True, frozen=True):
    """A job update as backends publish it (see :class:`~jdobb_async_queue.JobUpdate`)."""

    job_id: str
    status: str
    progress: float = 0.0
    message: str | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    timestamp: float = 0.0
    data: dict[str, Any] | None = None
    #: The job's ``update_seq`` when this state was stored. A custom update (``data`` set,
    #: nothing stored) carries the sequence number of the state it was sent in.
    update_seq: int = 0
    #: The job is gone (purged, expired, deleted): the last update a subscriber gets.
    gone: bool = False


class WorkerRecord(msgspec.Struct, kw_only=True):
    """A running worker as the store's registry keeps it (times: seconds since the epoch)."""

    id: str
    host: str
    pid: int
    started_at: float
    concurrency: int
    job_types: list[str] = []
    #: Ids of the jobs it is running.
    running: list[str] = []
    #: When it last said it was alive; it drops out ``WORKER_TTL`` seconds later.
    heartbeat_at: float = 0.0


def to_worker(r: WorkerRecord) -> WorkerInfo:
    """Build the public :class:`~jdobb_async_queue.WorkerInfo` from a registry record."""
    return WorkerInfo(
        id=r.id,
        host=r.host,
        pid=r.pid,
        started_at=_utc(r.started_at),
        concurrency=r.concurrency,
        job_types=list(r.job_types),
        running=list(r.running),
        heartbeat_at=_utc(r.heartbeat_at),
    )


def utc(ts: float | None) -> datetime | None:
    """Seconds since the epoch as an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def to_job(r: JobRecord) -> Job:
    """Build the public :class:`~jdobb_async_queue.Job` from a record (no copying of payloads)."""
    return Job.model_construct(
        id=r.id,
        job_type=r.job_type,
        data=r.data,
        status=JobStatus(r.status),
        priority=JobPriority(r.priority),
        progress=r.progress,
        message=r.message,
        results=r.results,
        error=r.error,
        metadata=r.metadata,
        created_at=_utc(r.created_at),
        updated_at=_utc(r.updated_at),
        completed_at=utc(r.completed_at),
        ttl=r.ttl,
        execute_at=utc(r.execute_at),
        attempts=r.attempts,
        max_retries=r.max_retries,
        retry_delay=r.retry_delay,
        timeout=r.timeout,
        started_at=utc(r.started_at),
        depends_on=list(r.depends_on),
        unique_key=r.unique_key,
        worker_id=r.worker_id,
        lease_expires_at=utc(r.lease_expires_at),
    )


def record_update(r: JobRecord) -> UpdateRecord:
    """The update that announces ``r``'s current state."""
    return UpdateRecord(
        job_id=r.id,
        status=r.status,
        progress=r.progress,
        message=r.message,
        results=r.results,
        error=r.error,
        timestamp=r.updated_at,
        update_seq=r.update_seq,
    )


def gone_update(job_id: str, timestamp: float) -> UpdateRecord:
    """The update that tells subscribers ``job_id`` no longer exists."""
    return UpdateRecord(job_id=job_id, status="cancelled", timestamp=timestamp, gone=True)


def to_update(u: UpdateRecord) -> JobUpdate:
    """Build the public :class:`~jdobb_async_queue.JobUpdate` from a published record."""
    return JobUpdate.model_construct(
        job_id=u.job_id,
        status=JobStatus(u.status),
        progress=u.progress,
        message=u.message,
        results=u.results,
        error=u.error,
        timestamp=_utc(u.timestamp),
        data=u.data,
    )
