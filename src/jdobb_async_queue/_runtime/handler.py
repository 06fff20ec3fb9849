"""The handler actor: runs one job at a time, each inside its own cancel scope.

Cancellation (``queue.cancel``) and the per-job timeout are both that scope; a hard stop of the
worker cancels from outside it and hands the job back. :class:`JobRunner` is also what
``Worker.process_one`` uses, so a job run by hand gets the same timeout, retry and lease rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._context import HandlerFunc, JobContext
from .._errors import JobQueueError
from .._queue import JobQueue, check_results
from .._records import JobRecord, Outcome
from ..backends.base import new_jitter
from .roster import Roster, RunningJob

__all__ = ["JobRunner", "run_handler"]


class JobRunner:
    """Runs claimed jobs through their handlers and reports each outcome to the backend."""

    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, HandlerFunc],
        roster: Roster,
        report: Callable[[Outcome], Awaitable[None]],
    ) -> None:
        self._queue = queue
        self._backend = queue.backend
        self._handlers = handlers
        self._roster = roster
        self._report = report

    async def execute(self, record: JobRecord) -> None:
        """Run one claimed job to its end and report the outcome (unless it was taken away)."""
        entry = self._roster.add(record.id, record.fence)
        try:
            outcome = await self._attempt(record, entry)
        except anyio.get_cancelled_exc_class():
            # The worker is stopping hard (drain deadline, or run() itself cancelled): hand the
            # job back, due at once. Straight to the backend, shielded, because the reporter may
            # be cancelled too and the release must land.
            with anyio.CancelScope(shield=True):
                release = Outcome(job_id=record.id, kind="release", fence=record.fence)
                await self._backend.finish(release, now=self._queue.clock())
            raise
        finally:
            self._roster.remove(entry)
        if outcome is not None:
            await self._report(outcome)

    async def _attempt(self, record: JobRecord, entry: RunningJob) -> Outcome | None:
        handler = self._handlers.get(record.job_type)
        if handler is None:
            return _failure(record, f"no handler registered for job type {record.job_type!r}")
        ctx = JobContext(self._queue, record, await self._dependency_results(record))
        token = ctx._enter()
        try:
            with entry.scope:
                if record.timeout is not None:
                    entry.scope.deadline = anyio.current_time() + record.timeout
                results = await handler(ctx)
        except Exception as exc:
            return None if entry.lost else _failure(record, _describe(exc))
        finally:
            ctx._leave(token)
        if entry.lost:
            return None
        if entry.scope.cancelled_caught:
            return _failure(record, f"timed out after {record.timeout:g}s")
        return _success(record, results)

    async def _dependency_results(self, record: JobRecord) -> dict[str, dict[str, Any] | None]:
        if not record.depends_on:
            return {}
        now = self._queue.clock()
        found = {}
        for dep_id in record.depends_on:
            dep = await self._backend.get(dep_id, now=now)
            found[dep_id] = None if dep is None else dep.results
        return found


def _success(record: JobRecord, results: object) -> Outcome:
    try:
        checked = check_results(results)
    except JobQueueError as exc:
        return _failure(record, f"handler returned an invalid result: {exc}")
    return Outcome(job_id=record.id, kind="complete", fence=record.fence, results=checked)


def _failure(record: JobRecord, error: str) -> Outcome:
    return Outcome(
        job_id=record.id, kind="fail", fence=record.fence, error=error, jitter=new_jitter()
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def run_handler(
    runner: JobRunner,
    jobs: MemoryObjectReceiveStream[JobRecord],
    credits: MemoryObjectSendStream[None],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Handler actor: offer a credit, run the job that comes, repeat until ``jobs`` closes."""
    async with jobs, credits:
        _offer(credits)
        task_status.started()
        async for record in jobs:
            await runner.execute(record)
            _offer(credits)


def _offer(credits: MemoryObjectSendStream[None]) -> None:
    try:
        credits.send_nowait(None)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the claimer has stopped: no more jobs will come, finish what is queued
