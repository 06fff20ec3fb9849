"""JobQueue: the producer's and inspector's view of a queue.

It validates every argument (nothing invalid reaches a backend), builds records, and turns
backend records into public models. It works with no Worker running and without ``async with``:
each call goes straight to the backend.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from . import _policy
from ._codec import CheckedJSON, checked_copy, is_json_scalar
from ._context import is_async_callable
from ._errors import ConfigurationError, InvalidJobError
from ._jobspec import as_sequence, build_record, check_progress, check_ttl, enqueue_record
from ._models import TERMINAL_STATUSES, Job, JobPriority, JobStatus, QueueStats, WorkerInfo
from ._records import DEFAULT_MAX_LOST, JobRecord, Outcome, ProgressUpdate, to_job, to_worker
from ._tasks import Task, TaskRegistry, make_task
from .backends import QueueBackend, open_backend

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["DEFAULT_LEASE", "EnqueueMiddleware", "JobQueue"]

#: A ``JobQueue.middleware``: ``await middleware(records, call_next)`` stores them (or not).
EnqueueMiddleware = Callable[
    [list[JobRecord], Callable[[], Awaitable[list[str]]]], Awaitable[list[str]]
]

#: ``list_jobs(limit=None)`` asks the backend for this many: more than any store holds.
NO_LIMIT = 2**62
#: Times ``fail`` reads a job again when a newer claim superseded the attempt it decided on.
_FAIL_READS = 3

#: Largest job payload by default, in bytes of JSON (``JobQueue(max_payload_bytes=...)``).
DEFAULT_MAX_PAYLOAD = 1024 * 1024

#: Seconds a claim holds its job before another worker may take it over (renewed while running).
DEFAULT_LEASE = 30.0


class JobQueue:
    """A queue of jobs stored in one backend.

    :param backend: a :class:`~jdobb_async_queue.backends.QueueBackend` instance, or a name
        (``"memory"``, ``"sqlite"``, ``"redis"``), or a URL whose scheme names one
    :param url: connection URL for ``sqlite`` (``sqlite:///jobs.db``, ``sqlite:///:memory:``) and
        ``redis`` (``redis://host:port/db``, ``rediss://...``, ``unix:///path.sock``)
    :param namespace: key prefix that isolates queues sharing one Redis server
    :param default_ttl: seconds a job is kept after it reaches a terminal state when ``enqueue``
        gives no ``ttl``; ``None`` keeps it until purged
    :param clock: returns the time in seconds since the epoch (tests pass a
        :class:`~jdobb_async_queue.testing.MockClock`); when given, it drives the store too,
        even one with a clock of its own (Redis reads the server's ``TIME`` otherwise)
    :param max_payload_bytes: largest ``data`` (and ``metadata``) a job may carry, in bytes of
        JSON; a bigger one is refused with :class:`PayloadTooLargeError` and nothing is stored
        (``None``: no limit)
    :raises ConfigurationError: for an unknown backend name or a URL it cannot take
    :raises MissingDependencyError: when the backend's extra is not installed
    """

    def __init__(
        self,
        backend: QueueBackend | str = "memory",
        *,
        url: str | None = None,
        namespace: str = "default",
        default_ttl: int | None = None,
        clock: Callable[[], float] | None = None,
        max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        check_ttl(default_ttl, "default_ttl")
        if max_payload_bytes is not None and (
            isinstance(max_payload_bytes, bool)
            or not isinstance(max_payload_bytes, int)
            or max_payload_bytes <= 0
        ):
            raise ConfigurationError(
                f"max_payload_bytes must be an int > 0 or None, not {max_payload_bytes!r}"
            )
        self.max_payload_bytes = max_payload_bytes
        self._backend = open_backend(backend, url, namespace)
        self.namespace = namespace
        self.default_ttl = default_ttl
        self.clock: Callable[[], float] = clock or time.time
        if clock is not None:
            # A test clock drives the store too, even one with a clock of its own (Redis).
            self._backend.test_clock = clock
        self._closed = False
        #: The tasks registered with :meth:`task` (Workers of this queue run them).
        self.tasks = TaskRegistry()
        self._middleware: list[EnqueueMiddleware] = []

    @property
    def backend(self) -> QueueBackend:
        """The backend this queue stores its jobs in."""
        return self._backend

    async def __aenter__(self) -> JobQueue:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- producing ---------------------------------------------------------------------------

    async def enqueue(
        self,
        job_type: str,
        data: dict[str, Any] | None = None,
        *,
        priority: JobPriority = JobPriority.NORMAL,
        ttl: int | None = None,
        metadata: dict[str, Any] | None = None,
        job_id: str | None = None,
        delay: float | timedelta | None = None,
        execute_at: datetime | None = None,
        max_retries: int = 0,
        retry_delay: float = 1.0,
        timeout: float | None = None,
        depends_on: Sequence[str] | None = None,
        unique_key: str | None = None,
        max_lost: int = DEFAULT_MAX_LOST,
    ) -> str:
        """Store a new PENDING job and return its id.

        :param job_type: which handler runs it
        :param data: the payload, a JSON-compatible dict
        :param priority: HIGH jobs are claimed before NORMAL, NORMAL before LOW
        :param ttl: seconds to keep the job after it ends (default: the queue's ``default_ttl``)
        :param metadata: JSON-compatible dict stored beside the payload
        :param job_id: your own id (default: a random one)
        :param delay: not claimed before this many seconds from now
        :param execute_at: not claimed before this time (a naive datetime is local time)
        :param max_retries: failed attempts retried, with exponential backoff, before FAILED
        :param retry_delay: base of the backoff: attempt k is retried after
            ``retry_delay * 2**(k-1)`` seconds plus up to 10% jitter, capped at one hour
        :param timeout: seconds one attempt may run; then it is cancelled and failed
        :param depends_on: ids of jobs that must be COMPLETE first
        :param unique_key: while a PENDING/PROCESSING job holds this key, return its id instead
        :param max_lost: times the job's lease may run out (its worker died or stalled) before
            it is FAILED instead of run again: a poison job cannot take workers down forever
        :raises DuplicateJobError: when ``job_id`` is taken
        :raises UnknownDependencyError: when ``depends_on`` names an unknown job
        :raises SerializationError: when ``data`` or ``metadata`` is not JSON-compatible
        :raises InvalidJobError: (a ``ValueError``) for any other bad argument
        """
        now = self.clock()
        # The options go by name, as this signature (their one declaration) spells them.
        record = enqueue_record(
            job_type,
            data,
            locals(),
            now=now,
            default_ttl=self.default_ttl,
            max_payload=self.max_payload_bytes,
        )
        (stored,) = await self._store([record], now)
        return stored

    async def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[str]:
        """Store many jobs in one atomic backend call: all of them, or none.

        Each item takes ``enqueue``'s parameter names (``job_type`` required); ``depends_on``
        may name ids given earlier in the same batch.

        :return: the ids, in order (for a unique key already held, the holder's id)
        :raises InvalidJobError: for a bad item (nothing is stored)
        """
        now = self.clock()
        records = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping) or "job_type" not in item:
                raise InvalidJobError(f"item {index} must be a mapping with a 'job_type'")
            options = {k: v for k, v in item.items() if k not in ("job_type", "data")}
            records.append(
                build_record(
                    item["job_type"],
                    item.get("data"),
                    options,
                    now=now,
                    default_ttl=self.default_ttl,
                    max_payload=self.max_payload_bytes,
                )
            )
        if not records:
            return []
        return await self._store(records, now)

    def middleware(self, middleware: EnqueueMiddleware) -> EnqueueMiddleware:
        """Register ``async middleware(records, call_next)`` around every enqueue of this
        queue (usable as a decorator): ``records`` are the jobs about to be stored (their
        ``metadata`` may still be changed), ``await call_next()`` stores them and returns their
        ids, which the middleware returns in turn. Tracing (:mod:`jdobb_async_queue.tracing`)
        is one. The first registered runs outermost.

        :raises ConfigurationError: if ``middleware`` is not an async function
        """
        if not is_async_callable(middleware):
            raise ConfigurationError(
                f"middleware must be an async function (records, call_next), not {middleware!r}"
            )
        self._middleware.append(middleware)
        return middleware

    async def _store(self, records: list[JobRecord], now: float) -> list[str]:
        if not self._middleware:
            return await self._backend.enqueue_many(records, now=now)

        async def call(index: int) -> list[str]:
            if index == len(self._middleware):
                return await self._backend.enqueue_many(records, now=now)
            return await self._middleware[index](records, partial(call, index + 1))

        return await call(0)

    # -- reading -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        """Return the job, or ``None`` if there is none with this id (or its ttl ran out)."""
        record = await self._backend.get(job_id, now=self.clock())
        return None if record is None else to_job(record)

    async def list_jobs(
        self,
        status: JobStatus | str | None = None,
        *,
        job_type: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[Job]:
        """List jobs: PENDING ones in the order they would be claimed, every other status most
        recently updated first.

        :param limit: at most this many (``None``: no limit)
        :raises InvalidJobError: for an unknown status, or a limit/offset that is not an
            int from 0 to 2**63 - 1
        """
        name = None if status is None else _status(status).value
        for value, what in ((limit, "limit"), (offset, "offset")):
            if value is None and what == "limit":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
                raise InvalidJobError(f"{what} must be an int from 0 to 2**63 - 1, not {value!r}")
        records = await self._backend.list_jobs(
            name,
            job_type=job_type,
            limit=NO_LIMIT if limit is None else limit,
            offset=offset,
            now=self.clock(),
        )
        return [to_job(r) for r in records]

    async def workers(self) -> list[WorkerInfo]:
        """The live workers of this store, oldest first: every running ``Worker`` registers
        itself, refreshes its entry every few seconds and removes it when it stops; one that
        died drops out ``WORKER_TTL`` (30) seconds after its last heartbeat."""
        records = await self._backend.list_workers(now=self.clock())
        return [to_worker(r) for r in records]

    async def stats(self) -> QueueStats:
        """Count jobs by status (plus ``scheduled`` and ``waiting`` pending jobs)."""
        return await self._backend.stats(now=self.clock())

    # -- consuming by hand -------------------------------------------------------------------

    async def claim(
        self, job_types: list[str] | None = None, *, lease: float = DEFAULT_LEASE
    ) -> Job | None:
        """Atomically claim the next claimable job (PROCESSING now) or return ``None``.

        :param job_types: only these types (None: any)
        :param lease: seconds before a worker's lease recovery may hand it to someone else
        """
        types = as_sequence(job_types, "job_types")
        claimed = await self._backend.claim_pending_job(
            types, limit=1, worker_id=_manual_worker_id(), lease=lease, now=self.clock()
        )
        return to_job(claimed[0]) if claimed else None

    async def update(
        self, job_id: str, progress: float | None = None, message: str | None = None
    ) -> bool:
        """Record progress (0..1) and/or a message for a PROCESSING job.

        :raises InvalidJobError: (a ``ValueError``) if ``progress`` is outside 0..1
        :return: ``False`` if the job is unknown or not PROCESSING
        """
        update = ProgressUpdate(job_id=job_id, progress=check_progress(progress), message=message)
        return await self._backend.update_progress(update, now=self.clock())

    async def complete(self, job_id: str, results: dict[str, Any] | None = None) -> bool:
        """Mark a PROCESSING job COMPLETE with ``results``.

        :raises SerializationError: if ``results`` is not JSON-compatible (nothing changes)
        :return: ``False`` if the job is unknown or not PROCESSING
        """
        copied = None if results is None else _results(results)
        outcome = Outcome(job_id=job_id, kind="complete", results=copied)
        return await self._backend.finish(outcome, now=self.clock())

    async def fail(self, job_id: str, error: str, *, retry: bool = True) -> bool:
        """Fail the current attempt of a PROCESSING job.

        With retries left (and ``retry``), the job goes back to PENDING after its backoff;
        otherwise it is FAILED with ``error``.

        :return: ``True`` whether it scheduled a retry or failed the job; ``False`` if the job is
            unknown or not PROCESSING
        """
        # Decided on the attempt we read, applied only to that attempt (its fence): if another
        # claim superseded it meanwhile, the decision is stale and is read again.
        for _ in range(_FAIL_READS):
            record = await self._backend.get(job_id, now=self.clock())
            if record is None or record.status != "processing":
                return False
            outcome = _policy.decide_failure(record, str(error), retry=retry)
            if await self._backend.finish(outcome, now=self.clock()):
                return True
        return False

    async def cancel(self, job_id: str, reason: str | None = None) -> bool:
        """Cancel a PENDING or PROCESSING job (a running handler is cancelled promptly).

        Jobs depending on it are cancelled too.

        :return: ``False`` if the job is unknown or already finished
        """
        return await self._backend.cancel(job_id, reason, now=self.clock())

    async def retry(self, job_id: str, *, delay: float = 0) -> bool:
        """Send a FAILED or CANCELLED job back to PENDING, its attempts and outcome cleared.

        :raises InvalidJobError: for a negative delay
        :return: ``False`` (nothing changes) for an unknown job or any other state
        """
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
            raise InvalidJobError(f"delay must be a number of seconds >= 0, not {delay!r}")
        return await self._backend.retry(job_id, delay=float(delay), now=self.clock())

    async def purge(
        self,
        statuses: Iterable[JobStatus | str] | None = None,
        *,
        before: datetime | None = None,
        job_type: str | None = None,
    ) -> int:
        """Delete finished jobs and return how many.

        :param statuses: which terminal statuses (default: COMPLETE, FAILED and CANCELLED)
        :param before: only jobs that finished before this time
        :param job_type: only jobs of this type
        :raises InvalidJobError: (a ``ValueError``) if ``statuses`` names PENDING or PROCESSING
        """
        chosen = TERMINAL_STATUSES if statuses is None else {_status(s) for s in statuses}
        live = sorted(s.value for s in chosen - TERMINAL_STATUSES)
        if live:
            raise InvalidJobError(f"purge deletes finished jobs only, not {', '.join(live)}")
        if before is not None and not isinstance(before, datetime):
            raise InvalidJobError(f"before must be a datetime, not {before!r}")
        return await self._backend.purge(
            sorted(s.value for s in chosen),
            before=None if before is None else before.timestamp(),
            job_type=job_type,
            now=self.clock(),
        )

    # -- tasks -------------------------------------------------------------------------------

    @overload
    def task(self, name: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def task(self, name: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        name: str | None = None,
        *,
        priority: JobPriority = ...,
        max_retries: int = ...,
        retry_delay: float = ...,
        timeout: float | None = ...,
        unique_key: str | Callable[..., str] | None = None,
    ) -> _TaskDecorator: ...

    def task(
        self,
        name: str | Callable[..., Any] | None = None,
        *,
        unique_key: str | Callable[..., str] | None = None,
        **options: Any,
    ) -> Any:
        """Register a function as a task: ``@queue.task`` or ``@queue.task("name", ...)``.

        The function may be ``async def`` or plain ``def`` (run in a worker thread). Workers of
        this queue with ``job_types=None`` run its tasks. See :class:`~jdobb_async_queue.Task`.

        :param name: the task's job type (default: ``"<module>.<qualname>"``)
        :param unique_key: a key, or a function of the task's arguments returning one
        :param options: default ``enqueue`` options (``priority``, ``max_retries``,
            ``retry_delay``, ``timeout``, ...)
        :raises ConfigurationError: if a task of that name is already registered
        """
        if callable(name):
            return make_task(self, name, None, options, unique_key)

        def decorate(func: Callable[..., Any]) -> Task[Any, Any]:
            return make_task(self, func, name, options, unique_key)

        return decorate

    async def close(self) -> None:
        """Release the backend's connections, threads and files. Safe to call twice."""
        if not self._closed:
            self._closed = True
            await self._backend.aclose()


class _TaskDecorator(Protocol):
    @overload
    def __call__(self, func: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> Task[P, R]: ...


def _status(value: JobStatus | str) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        choices = ", ".join(s.value for s in JobStatus)
        raise InvalidJobError(f"unknown status {value!r}: use one of {choices}") from None


def _results(results: object) -> dict[str, Any]:
    if not isinstance(results, dict):
        raise InvalidJobError(f"results must be a dict or None, not {type(results).__name__}")
    copied: dict[str, Any] = checked_copy(results, "results")
    return copied


def check_results(results: object) -> dict[str, Any] | None:
    """Check a handler's return value: a JSON-compatible dict or None.

    A flat dict (str keys, JSON scalar values: the common ``{"result": 42}``) is JSON as it is
    and only copied; anything else makes the JSON round trip.
    """
    if results is None or type(results) is CheckedJSON:
        return results
    if type(results) is dict:
        for key, value in results.items():
            if type(key) is not str or not is_json_scalar(value):
                return _results(results)
        return dict(results)
    return _results(results)


def _manual_worker_id() -> str:
    return f"claim:{os.getpid()}"
