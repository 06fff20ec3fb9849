"""Worker: a handler registry plus the public ``run()`` / ``stop()`` of the actor runtime."""

from __future__ import annotations

import math
import os
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
from typing_extensions import Unpack

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from ._codec import checked_copy
from ._context import HandlerFunc, is_async_callable
from ._errors import (
    BackendUnavailable,
    ConfigurationError,
    MissingDependencyError,
    QueueClosedError,
    exception_leaves,
)
from ._jobspec import as_sequence, build_record
from ._queue import DEFAULT_LEASE, JobQueue
from ._records import JobRecord
from ._runtime import backoff
from ._runtime.backoff import retrying
from ._runtime.handler import JobRunner, Middleware, OutcomeHook
from ._runtime.periodic import Schedule, load_croniter
from ._runtime.reporter import store_outcome
from ._runtime.roster import Roster
from ._runtime.supervisor import CrewSettings, supervise
from ._tasks import task_call

if TYPE_CHECKING:
    from ._tasks import EnqueueOptions, Task

__all__ = ["Worker"]

#: The shortest interval ``every`` takes: occurrences are told apart by the millisecond.
MIN_INTERVAL = 0.001

#: ``enqueue`` options a schedule sets itself.
_SCHEDULE_SETS = frozenset({"job_id", "delay", "execute_at", "depends_on"})

H = TypeVar("H", bound=HandlerFunc)
C = TypeVar("C", bound=OutcomeHook)
M = TypeVar("M", bound=Middleware)


class Worker:
    """Claims jobs from a queue and runs them through registered handlers.

    :param queue: the queue to take jobs from
    :param job_types: job types to run (None: those with a registered handler or task)
    :param poll_interval: longest sleep, in seconds, between looks at an idle queue (backends
        that push wake-ups wake the worker sooner)
    :param max_concurrent: jobs run at once (one handler actor each)
    :param lease: seconds a claim lasts unless renewed; the worker renews every third of it,
        and a job whose worker died is run again once its lease has run out
    :param drain_timeout: on ``stop()``, seconds running jobs get to finish before they are
        cancelled and handed back to the queue
    :param worker_id: a name for this worker in jobs' ``worker_id`` (default: host pid + random)
    :raises ConfigurationError: for a non-positive interval, lease or concurrency
    """

    def __init__(
        self,
        queue: JobQueue,
        *,
        job_types: list[str] | None = None,
        poll_interval: float = 1.0,
        max_concurrent: int = 1,
        lease: float = DEFAULT_LEASE,
        drain_timeout: float = 30.0,
        worker_id: str | None = None,
    ) -> None:
        _positive(poll_interval, "poll_interval")
        _positive(lease, "lease")
        _positive(drain_timeout, "drain_timeout", allow_zero=True)
        if (
            isinstance(max_concurrent, bool)
            or not isinstance(max_concurrent, int)
            or max_concurrent < 1
        ):
            raise ConfigurationError(f"max_concurrent must be an int >= 1, not {max_concurrent!r}")
        self.queue = queue
        self.job_types = as_sequence(job_types, "job_types")
        self.poll_interval = float(poll_interval)
        self.max_concurrent = max_concurrent
        self.lease = float(lease)
        self.drain_timeout = float(drain_timeout)
        self.worker_id = worker_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._handlers: dict[str, HandlerFunc] = {}
        self._hooks: list[OutcomeHook] = []
        self._middleware: list[Middleware] = []
        self._schedules: dict[str, Schedule] = {}
        self._stop: anyio.Event | None = None
        self._done: anyio.Event | None = None

    # -- handlers ----------------------------------------------------------------------------

    def handler(self, job_type: str) -> Callable[[H], H]:
        """Decorator: register an ``async def handler(ctx) -> dict | None`` for ``job_type``.

        :raises ConfigurationError: if the function is not async or the type already has one
        """

        def register(func: H) -> H:
            self.register_handler(job_type, func)
            return func

        return register

    def register_handler(self, job_type: str, handler: HandlerFunc) -> None:
        """Register ``handler`` for ``job_type``.

        :raises ConfigurationError: if ``handler`` is not an async function or ``job_type``
            already has a handler
        """
        if not isinstance(job_type, str) or not job_type:
            raise ConfigurationError(f"job_type must be a non-empty string, not {job_type!r}")
        if not is_async_callable(handler):
            raise ConfigurationError(f"the handler for {job_type!r} must be an async function")
        if job_type in self._handlers:
            raise ConfigurationError(f"job type {job_type!r} already has a handler")
        self._handlers[job_type] = handler

    def on_outcome(self, callback: C) -> C:
        """Register ``callback(outcome: JobOutcome) -> None``, called each time an attempt
        ends in this worker (usable as a decorator): for logs and metrics.

        It is called in the handler's task as the attempt ends, before the outcome is stored
        (the worker stores outcomes in batches), so it must be quick and must not block; hand
        slow work to a task of your own. One that raises is logged and changes nothing. Takes
        effect at the next :meth:`run` or :meth:`process_one`.

        :raises ConfigurationError: if ``callback`` is not callable, or is an async function
        """
        if not callable(callback) or is_async_callable(callback):
            raise ConfigurationError(
                f"on_outcome takes a plain function of a JobOutcome, not {callback!r}"
            )
        self._hooks.append(callback)
        return callback

    def middleware(self, middleware: M) -> M:
        """Register ``async middleware(ctx, call_next)`` around every attempt this worker runs
        (usable as a decorator): ``await call_next()`` runs the handler (or the next
        middleware) and returns its result, which the middleware returns in turn. Tracing
        (:mod:`jdobb_async_queue.tracing`) is one. The first registered runs outermost; an
        exception it raises fails the attempt as the handler's would. Takes effect at the next
        :meth:`run` or :meth:`process_one`.

        :raises ConfigurationError: if ``middleware`` is not an async function
        """
        if not is_async_callable(middleware):
            raise ConfigurationError(
                f"middleware must be an async function (ctx, call_next), not {middleware!r}"
            )
        self._middleware.append(middleware)
        return middleware

    def every(
        self,
        interval: float | timedelta,
        job_type: str | Task[..., Any],
        data: dict[str, Any] | None = None,
        *,
        offset: float | timedelta = 0.0,
        name: str | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> None:
        """Enqueue a job of ``job_type`` (or a call of a task, without arguments) every
        ``interval``, while this worker runs.

        Occurrences fall on whole multiples of ``interval`` since the Unix epoch, plus
        ``offset`` (``every(3600, ...)`` at the top of each UTC hour, ``every(86400, ...,
        offset=6 * 3600)`` at 06:00 UTC), and each is stored once however many workers have
        the schedule: its job id is ``"every:<name>:<milliseconds since the epoch>"``. Each
        occurrence is enqueued when it falls due, as a job any worker of the type may run;
        occurrences that fall while no worker keeps the schedule are skipped, not caught up.
        Not kept by ``run(burst=True)`` or ``process_one()``; read when ``run()`` starts.

        :param interval: seconds (or a ``timedelta``), at least a millisecond
        :param data: the jobs' payload (for a task: its stored arguments, default none)
        :param offset: seconds (or a ``timedelta``) after each multiple, 0 <= offset < interval
        :param name: tells schedules apart (default: the job type); part of the job ids
        :param options: ``enqueue`` options for every occurrence (``priority``, ``ttl``,
            ``max_retries``, ``timeout``, ``unique_key``, ...; not ``job_id``, ``delay``,
            ``execute_at`` or ``depends_on``, which the schedule decides). With a
            ``unique_key``, an occurrence that falls due while the previous one is still
            pending or running is skipped.
        :raises ConfigurationError: for a bad interval or name, or a name already scheduled
        :raises InvalidJobError: for a bad job type, payload or option (``TaskArgumentError``
            for a task's ``data`` that is not a call its function takes)
        """
        seconds = _seconds(interval)
        if seconds is None or seconds < MIN_INTERVAL:
            raise ConfigurationError(
                f"interval must be a number of seconds >= {MIN_INTERVAL:g}, not {interval!r}"
            )
        shift = _seconds(offset)
        if shift is None or not 0 <= shift < seconds:
            raise ConfigurationError(
                f"offset must be a number of seconds from 0 to below the interval, not {offset!r}"
            )
        self._add_schedule(
            "every()", job_type, data, name, dict(options), interval=seconds, offset=shift
        )

    def cron(
        self,
        expression: str,
        job_type: str | Task[..., Any],
        data: dict[str, Any] | None = None,
        *,
        tz: tzinfo | None = None,
        name: str | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> None:
        """Enqueue a job of ``job_type`` (or a call of a task) at the times a cron expression
        matches, while this worker runs; needs ``pip install 'jdobb-async-queue[cron]'``.

        Like :meth:`every` in all else: each occurrence is stored once however many workers
        have the schedule (job id ``"cron:<name>:<milliseconds since the epoch>"``), when it
        falls due; missed ones are skipped; not kept by a burst or ``process_one()``.

        :param expression: five fields (minute hour day month weekday, as crontab(5) has them,
            with names like ``MON`` and ``JAN``), or six with seconds last, e.g.
            ``"0 3 * * MON-FRI"``
        :param tz: the time zone the expression reads (default UTC), e.g.
            ``zoneinfo.ZoneInfo("Europe/Riga")``; daylight saving is followed
        :param name: tells schedules apart (default: the job type); part of the job ids
        :param options: ``enqueue`` options, as for :meth:`every`
        :raises MissingDependencyError: when croniter is not installed
        :raises ConfigurationError: for a bad expression, time zone or name, or a name already
            scheduled
        :raises InvalidJobError: for a bad job type, payload or option
        """
        try:
            croniter = load_croniter()
        except ImportError:
            raise MissingDependencyError("Worker.cron", "cron", "croniter", feature=True) from None
        if not isinstance(expression, str) or not croniter.is_valid(expression):
            raise ConfigurationError(f"not a cron expression: {expression!r}")
        if tz is not None and not isinstance(tz, tzinfo):
            raise ConfigurationError(f"tz must be a datetime.tzinfo, not {tz!r}")
        try:  # a valid expression may still never match again ("0 0 30 2 *": February 30)
            croniter(expression, datetime.now(tz or timezone.utc)).get_next(datetime)
        except Exception as exc:
            raise ConfigurationError(f"{expression!r} never matches again: {exc}") from None
        self._add_schedule(
            "cron()",
            job_type,
            data,
            name,
            dict(options),
            expression=expression,
            tz=tz or timezone.utc,
        )

    def _add_schedule(
        self,
        method: str,
        job_type: str | Task[..., Any],
        data: dict[str, Any] | None,
        name: str | None,
        given: dict[str, Any],
        **when: Any,
    ) -> None:
        """Check a schedule's job, options and name, then keep it (``when``: its times)."""
        fixed = _SCHEDULE_SETS & set(given)
        if fixed:
            raise ConfigurationError(
                f"{method} decides {', '.join(sorted(fixed))} itself: leave it out"
            )
        if not isinstance(job_type, str):  # a Task: its name, options and unique key
            given = {**_task_options(job_type, data), **given}
            job_type = job_type.name
        build_record(job_type, data, given, now=0.0, default_ttl=None)  # refuse bad input now
        key = job_type if name is None else name
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"a schedule's name must be a non-empty string, not {key!r}")
        if key in self._schedules:
            raise ConfigurationError(f"a schedule named {key!r} already exists: give a name=")
        payload = None if data is None else checked_copy(data, "data")  # later changes: ignored
        self._schedules[key] = Schedule(key, job_type, data=payload, options=given, **when)

    def _all_handlers(self) -> dict[str, HandlerFunc]:
        handlers: dict[str, HandlerFunc] = self.queue.tasks.handlers()
        handlers.update(self._handlers)
        return handlers

    def _resolve(self) -> tuple[dict[str, HandlerFunc], list[str]]:
        handlers = self._all_handlers()
        types = list(handlers) if self.job_types is None else self.job_types
        if not types:
            raise ConfigurationError("the worker has no job types: register a handler first")
        missing = [t for t in types if t not in handlers]
        if missing:
            raise ConfigurationError(f"no handler registered for job type(s): {', '.join(missing)}")
        return handlers, types

    def check(self) -> list[str]:
        """The job types this worker will claim, checked as ``run()`` checks them.

        :raises ConfigurationError: if it has no job types, or one has no handler
        """
        return list(self._resolve()[1])

    # -- running -----------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """Whether ``run()`` is in progress."""
        return self._done is not None and not self._done.is_set()

    @property
    def is_claiming(self) -> bool:
        """Whether ``run()`` is in progress and not stopping (what a health probe wants)."""
        return self.is_running and self._stop is not None and not self._stop.is_set()

    async def run(self, *, burst: bool = False) -> None:
        """Process jobs until :meth:`stop` is called.

        :param burst: return instead of waiting once no job is claimable and none is running
            (scheduled jobs not yet due are left for later)

        :raises ConfigurationError: if a job type has no handler, or the worker has none
        :raises RuntimeError: if the worker is already running
        :raises QueueClosedError: when its queue is closed while it runs (it stops at once;
            jobs it held come back when their leases run out)
        :raises BackendUnavailable: in a burst, when the store stays unreachable longer than
            the burst rides out (``BURST_OUTAGE_LIMIT`` seconds); a worker that is not in a burst
            rides out any outage
        """
        if self.is_running:
            raise RuntimeError("this worker is already running")
        handlers, types = self._resolve()
        settings = CrewSettings(
            job_types=types,
            worker_id=self.worker_id,
            max_concurrent=self.max_concurrent,
            poll_interval=self.poll_interval,
            lease=self.lease,
            drain_timeout=self.drain_timeout,
            burst=burst,
            hooks=tuple(self._hooks),
            middleware=tuple(self._middleware),
            schedules=tuple(self._schedules.values()),
        )
        self._stop, self._done = anyio.Event(), anyio.Event()
        try:
            await supervise(self.queue, handlers, settings, self._stop)
        except BaseExceptionGroup as group:
            # The store went away under the crew (closed, or an outage a burst gave up on):
            # one plain error, as the docs say, rather than the task groups' nesting.
            leaves = exception_leaves(group)
            if not all(isinstance(leaf, (QueueClosedError, BackendUnavailable)) for leaf in leaves):
                raise
            raise leaves[0] from None
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish (up to ``drain_timeout``), and wait for
        :meth:`run` to return. Does nothing if the worker is not running."""
        # Two checkpoints first, so a run() that was just started as a task (the usual
        # ``create_task(worker.run())`` followed by ``stop()``) has begun and can be stopped:
        # asyncio runs the new task at the next one; trio runs it in the next batch, in random
        # order with us, so it has certainly begun by the second.
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        if self._stop is None or self._done is None or self._done.is_set():
            return
        self._stop.set()
        await self._done.wait()

    async def process_one(self) -> bool:
        """Claim at most one job of this worker's types and run it to its end, here.

        Same timeout, retry and lease rules as :meth:`run` (the lease is not renewed, so a job
        longer than ``lease`` may be recovered by another worker).

        :return: ``False`` when no job was due
        :raises BackendUnavailable: when the store stays unreachable for longer than
            ``BURST_OUTAGE_LIMIT`` seconds (claiming, or reading the job's dependencies' results)
            or the outcome cannot be stored; a job it
            claimed comes back when its lease runs out
        :raises QueueClosedError: when the queue is closed
        """
        handlers, types = self._resolve()

        async def claim() -> list[JobRecord]:
            return await self.queue.backend.claim_pending_job(
                types, limit=1, worker_id=self.worker_id, lease=self.lease, now=self.queue.clock()
            )

        claimed = await retrying(claim, "claiming a job", give_up_after=backoff.BURST_OUTAGE_LIMIT)
        if not claimed:
            return False
        report = partial(store_outcome, self.queue)
        runner = JobRunner(
            self.queue,
            handlers,
            Roster(),
            report,
            self._hooks,
            self._middleware,
            give_up_after=backoff.BURST_OUTAGE_LIMIT,
        )
        await runner.execute(claimed[0])
        return True


def _task_options(task: Task[..., Any], data: dict[str, Any] | None) -> dict[str, Any]:
    """The options a task's scheduled calls get: its own, less those the schedule decides, and
    its unique key (a function of the arguments is applied to ``data``'s).

    :raises TaskArgumentError: if ``data`` is not a call the function takes
    """
    args, kwargs = task_call(task, data or {})
    options = {k: v for k, v in task.options.items() if k not in _SCHEDULE_SETS}
    key = task.unique_key
    if key is not None:
        options["unique_key"] = key(*args, **kwargs) if callable(key) else key
    return options


def _seconds(value: object) -> float | None:
    """A finite number of seconds from a number or a ``timedelta``; None for anything else."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _positive(value: float, what: str, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (value >= 0 if allow_zero else value > 0):
        raise ConfigurationError(
            f"{what} must be a number {'>=' if allow_zero else '>'} 0, not {value!r}"
        )
