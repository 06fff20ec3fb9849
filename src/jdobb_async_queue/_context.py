"""JobContext: what a handler gets to read its job and report progress."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from ._jobspec import check_progress
from ._models import Job
from ._records import JobRecord, ProgressUpdate, to_job

if TYPE_CHECKING:
    from ._queue import JobQueue

__all__ = [
    "HandlerFunc",
    "JobContext",
    "current_job",
    "is_async_callable",
    "reset_current_job",
    "set_current_job",
]

#: A job handler: an ``async def`` taking a :class:`JobContext` and returning a
#: JSON-compatible dict (stored as the job's ``results``) or ``None``.
HandlerFunc = Callable[["JobContext"], Awaitable["dict[str, Any] | None"]]

_current: ContextVar[JobContext] = ContextVar("jdobb_async_queue_current_job")


def current_job() -> JobContext:
    """Return the :class:`JobContext` of the job running in this task.

    :raises LookupError: outside a running job
    """
    try:
        return _current.get()
    except LookupError:
        raise LookupError("current_job() is only available while a job runs") from None


def set_current_job(ctx: JobContext) -> Token[JobContext]:
    """Make ``ctx`` what :func:`current_job` returns in this task, until
    :func:`reset_current_job` is given the token (the handler actor does this around each
    attempt; internal, not re-exported)."""
    return _current.set(ctx)


def reset_current_job(token: Token[JobContext]) -> None:
    """Undo the :func:`set_current_job` that returned ``token``."""
    _current.reset(token)


class JobContext:
    """The running job, as its handler sees it.

    :ivar dependency_results: results of the jobs in ``depends_on`` (job id → results)
    """

    __slots__ = ("_job", "_queue", "_record", "dependency_results")

    def __init__(
        self,
        queue: JobQueue,
        record: JobRecord,
        dependency_results: dict[str, dict[str, Any] | None] | None = None,
    ) -> None:
        self._queue = queue
        self._record = record
        self._job: Job | None = None
        self.dependency_results: dict[str, dict[str, Any] | None] = dependency_results or {}

    @property
    def id(self) -> str:
        """The job's id."""
        return self._record.id

    @property
    def job_type(self) -> str:
        """The job's type."""
        return self._record.job_type

    @property
    def data(self) -> dict[str, Any]:
        """The job's payload."""
        return self._record.data

    @property
    def metadata(self) -> dict[str, Any]:
        """The job's metadata."""
        return self._record.metadata

    @property
    def attempt(self) -> int:
        """Which attempt this is (1 for the first)."""
        return self._record.attempts

    @property
    def job(self) -> Job:
        """The whole job, as it was when this attempt claimed it."""
        if self._job is None:
            self._job = to_job(self._record)
        return self._job

    async def update(self, progress: float | None = None, message: str | None = None) -> None:
        """Report progress (0..1) and/or a message; subscribers see it at once.

        An update for a job this worker no longer holds (cancelled, or its lease lost) is
        dropped silently.

        :raises InvalidJobError: (a ``ValueError``) if ``progress`` is outside 0..1
        """
        update = ProgressUpdate(
            job_id=self._record.id,
            progress=check_progress(progress),
            message=message,
            fence=self._record.fence,
        )
        await self._queue.backend.update_progress(update, now=self._queue.clock())


def is_async_callable(func: object) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - async callable objects
    )
