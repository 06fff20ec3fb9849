"""The handler actor: runs one job at a time, each inside its own cancel scope.

Cancellation (``queue.cancel``) and the per-job timeout are both that scope; a hard stop of the
worker cancels from outside it and hands the job back. :class:`JobRunner` is also what
``Worker.process_one`` uses, so a job run by hand gets the same timeout, retry and lease rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .. import _policy
from .._context import HandlerFunc, JobContext, reset_current_job, set_current_job
from .._errors import BackendUnavailable, JobQueueError, QueueClosedError
from .._models import JobOutcome, OutcomeStatus, claimed_outcome
from .._queue import JobQueue, check_results
from .._records import JobRecord, Outcome, to_job
from .backoff import retrying
from .dispatch import Dispatch
from .reporter import SHIELD_LIMIT, note_refused
from .roster import Roster, RunningJob

__all__ = ["JobRunner", "Middleware", "OutcomeHook", "run_handler"]

#: A ``Worker.on_outcome`` callback.
OutcomeHook = Callable[[JobOutcome], None]
#: A ``Worker.middleware``: ``await middleware(ctx, call_next)`` runs the attempt (or not).
Middleware = Callable[[JobContext, Callable[[], Awaitable[Any]]], Awaitable[Any]]

logger = logging.getLogger("jdobb_async_queue.worker")


class JobRunner:
    """Runs claimed jobs through their handlers and reports each outcome to the backend."""

    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, HandlerFunc],
        roster: Roster,
        report: Callable[[Outcome], Awaitable[None]],
        hooks: Sequence[OutcomeHook] = (),
        middleware: Sequence[Middleware] = (),
        *,
        give_up_after: float | None = None,
    ) -> None:
        """:param give_up_after: seconds a read the attempt needs (its dependencies' results)
        rides out an outage before :class:`BackendUnavailable` is raised (a burst's and
        ``process_one``'s limit); None: never give up"""
        self._give_up_after = give_up_after
        self._middleware = tuple(middleware)
        self._inner_first = self._middleware[::-1]
        self._queue = queue
        self._backend = queue.backend
        self._handlers = handlers
        self._roster = roster
        self._report = report
        self._hooks = tuple(hooks)

    async def execute(self, record: JobRecord) -> None:
        """Run one claimed job to its end and report the outcome (unless it was taken away)."""
        entry = self._roster.add(record.id, record.fence)
        started = time.perf_counter()
        try:
            outcome = await self._attempt(record, entry)
        except anyio.get_cancelled_exc_class():
            # The worker is stopping hard (drain deadline, or run() itself cancelled): hand the
            # job back, due at once.
            await self.release([record])
            if self._hooks:
                self._tell(record, "released", None, started)
            raise
        finally:
            self._roster.remove(entry)
        if self._hooks:
            self._tell(record, _policy.label(outcome), outcome, started)
        if outcome is not None:
            await self._report(outcome)

    def _tell(
        self, record: JobRecord, status: OutcomeStatus, outcome: Outcome | None, started: float
    ) -> None:
        """Call the ``on_outcome`` callbacks; one that raises is logged and changes nothing."""
        told = claimed_outcome(
            record,
            to_job,  # built only if a callback reads outcome.job
            status,
            None if outcome is None else outcome.error,
            None if outcome is None else outcome.results,
            time.perf_counter() - started,
        )
        for hook in self._hooks:
            try:
                hook(told)
            except Exception:
                logger.exception("an on_outcome callback failed for job %s", record.id)

    async def _attempt(self, record: JobRecord, entry: RunningJob) -> Outcome | None:
        handler = self._handlers.get(record.job_type)
        if handler is None:
            return _failure(record, f"no handler registered for job type {record.job_type!r}")
        ctx = JobContext(self._queue, record, await self._dependency_results(record))
        results: Any
        token = set_current_job(ctx)
        try:
            with entry.scope:
                if record.timeout is not None:
                    entry.scope.deadline = anyio.current_time() + record.timeout
                if self._middleware:
                    results = await self._through_middleware(ctx, handler)
                else:
                    results = await handler(ctx)
        except Exception as exc:
            return None if entry.lost else _failure(record, _describe(exc))
        finally:
            reset_current_job(token)
        if entry.lost:
            return None
        if entry.scope.cancelled_caught:
            return _failure(record, f"timed out after {record.timeout:g}s")
        return _success(record, results)

    def _through_middleware(self, ctx: JobContext, handler: HandlerFunc) -> Awaitable[Any]:
        """The attempt inside the middleware, the first registered outermost: each is handed a
        ``call_next`` that starts the next one (the last one's runs the handler). Built of
        partials, so a middleware costs the attempt one call and one coroutine, no more."""
        call_next: Callable[[], Awaitable[Any]] = partial(handler, ctx)
        for middleware in self._inner_first:
            call_next = partial(middleware, ctx, call_next)
        return call_next()

    async def release(self, records: list[JobRecord]) -> None:
        """Hand claimed jobs back (PENDING, due at once), while being cancelled.

        Straight to the backend, because the reporter may be cancelled too; shielded so the
        release lands, but bounded, so a backend that no longer answers cannot hang a stop, and
        one that is unreachable is logged, not raised in place of the cancellation (either way
        the jobs' leases bring them back).
        """
        if not records:
            return
        outcomes = [_policy.release(r) for r in records]
        with anyio.move_on_after(SHIELD_LIMIT, shield=True):
            try:
                stored = await self._backend.finish_many(outcomes, now=self._queue.clock())
            except (BackendUnavailable, QueueClosedError) as exc:
                logger.warning(
                    "could not hand back %d job(s) on stopping (their leases bring them back): %s",
                    len(records),
                    exc,
                )
                return
            note_refused(outcomes, stored)

    async def _dependency_results(self, record: JobRecord) -> dict[str, dict[str, Any] | None]:
        if not record.depends_on:
            return {}
        now = self._queue.clock()
        found = {}
        for dep_id in record.depends_on:
            get = partial(self._backend.get, dep_id, now=now)
            dep = await retrying(
                get, "reading a dependency's results", give_up_after=self._give_up_after
            )
            found[dep_id] = None if dep is None else dep.results
        return found


def _success(record: JobRecord, results: object) -> Outcome:
    try:
        checked = check_results(results)
    except JobQueueError as exc:
        return _failure(record, f"handler returned an invalid result: {exc}")
    return _policy.complete(record, checked)


def _failure(record: JobRecord, error: str) -> Outcome:
    return _policy.decide_failure(record, error)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def run_handler(
    runner: JobRunner,
    dispatch: Dispatch,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Handler actor: wait, idle, for a job, run it, repeat until the dispatch closes."""
    with dispatch.joined():
        task_status.started()
        try:
            while (record := await dispatch.take()) is not None:
                await runner.execute(record)
        except anyio.get_cancelled_exc_class():
            # A hard stop: jobs claimed for idle handlers but not started yet go back too.
            await runner.release(dispatch.abandon())
            raise
