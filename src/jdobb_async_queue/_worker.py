"""Worker: a handler registry plus the public ``run()`` / ``stop()`` of the actor runtime."""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio
import anyio.lowlevel

from ._context import HandlerFunc
from ._errors import ConfigurationError
from ._jobspec import as_sequence
from ._queue import DEFAULT_LEASE, JobQueue
from ._runtime.handler import JobRunner, OutcomeHook
from ._runtime.reporter import store_outcome
from ._runtime.roster import Roster
from ._runtime.supervisor import CrewSettings, supervise

__all__ = ["Worker"]

H = TypeVar("H", bound=HandlerFunc)
C = TypeVar("C", bound=OutcomeHook)


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
        if not inspect.iscoroutinefunction(handler) and not inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        ):
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
        if not callable(callback) or inspect.iscoroutinefunction(callback):
            raise ConfigurationError(
                f"on_outcome takes a plain function of a JobOutcome, not {callback!r}"
            )
        self._hooks.append(callback)
        return callback

    def _all_handlers(self) -> dict[str, HandlerFunc]:
        handlers: dict[str, HandlerFunc] = {}
        tasks = self.queue._tasks
        if tasks is not None:
            handlers.update(tasks.handlers())
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

    # -- running -----------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """Whether ``run()`` is in progress."""
        return self._done is not None and not self._done.is_set()

    async def run(self, *, burst: bool = False) -> None:
        """Process jobs until :meth:`stop` is called.

        :param burst: return instead of waiting once no job is claimable and none is running
            (scheduled jobs not yet due are left for later)

        :raises ConfigurationError: if a job type has no handler, or the worker has none
        :raises RuntimeError: if the worker is already running
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
        )
        self._stop, self._done = anyio.Event(), anyio.Event()
        try:
            await supervise(self.queue, handlers, settings, self._stop)
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish (up to ``drain_timeout``), and wait for
        :meth:`run` to return. Does nothing if the worker is not running."""
        # Two checkpoints first, so a run() that was just started as a task (the reference's
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
        """
        handlers, types = self._resolve()
        claimed = await self.queue.backend.claim_pending_job(
            types, limit=1, worker_id=self.worker_id, lease=self.lease, now=self.queue.clock()
        )
        if not claimed:
            return False
        report = partial(store_outcome, self.queue)
        runner = JobRunner(self.queue, handlers, Roster(), report, self._hooks)
        await runner.execute(claimed[0])
        return True


def _positive(value: float, what: str, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (value >= 0 if allow_zero else value > 0):
        raise ConfigurationError(
            f"{what} must be a number {'>=' if allow_zero else '>'} 0, not {value!r}"
        )
