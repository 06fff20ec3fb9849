"""Function tasks: ``@queue.task`` turns a function into a typed, enqueueable job type.

Stored format (so a producer that cannot import the function can still enqueue it by name with
plain ``queue.enqueue``)::

    job_type = task name (default: "<module>.<qualname>")
    data     = {"args": [...positional...], "kwargs": {...keyword...}}
    results  = {"result": <the function's return value, any JSON value>}
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.to_thread

from ._broadcast import Broadcaster
from ._codec import dump_json
from ._context import HandlerFunc, JobContext
from ._errors import ConfigurationError, InvalidJobError, JobCancelled, JobFailed
from ._jobspec import ENQUEUE_OPTIONS
from ._models import Job, JobStatus

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from ._queue import JobQueue

__all__ = ["SYNC_TASK_THREADS", "Task", "TaskArgumentError", "TaskRegistry", "TaskResult"]

P = ParamSpec("P")
R = TypeVar("R")

#: Plain ``def`` tasks of one queue run in worker threads, at most this many at once.
SYNC_TASK_THREADS = 16


class TaskArgumentError(InvalidJobError, TypeError):
    """The arguments given to ``Task.enqueue`` do not fit the function's signature."""


@dataclass(frozen=True)
class TaskResult(Generic[R]):
    """What became of one call of a task."""

    job_id: str
    status: JobStatus
    #: The function's return value (None until COMPLETE).
    result: R | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    attempts: int
    max_retries: int

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the last attempt to completion; None until then."""
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    @property
    def is_done(self) -> bool:
        """``True`` when the job is COMPLETE, FAILED or CANCELLED."""
        return self.status.is_terminal


class Task(Generic[P, R]):
    """A function registered on a queue with ``@queue.task``.

    ``await task.enqueue(*args, **kwargs)`` stores a call; a Worker of the queue runs it.
    ``await task(*args, **kwargs)`` calls the function directly, here.
    """

    def __init__(
        self,
        queue: JobQueue,
        func: Callable[P, Awaitable[R]] | Callable[P, R],
        name: str,
        options: dict[str, Any],
        unique_key: str | Callable[P, str] | None = None,
    ) -> None:
        self.queue = queue
        self.func = func
        self.name = name
        self.options = options
        self.unique_key = unique_key
        self._signature = inspect.signature(func)
        self._portal: BlockingPortal | None = None
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly (no queue involved)."""
        result = self.func(*args, **kwargs)
        if inspect.isawaitable(result):
            return cast(R, await result)
        return result

    def with_options(self, **options: Any) -> Task[P, R]:
        """Return a task whose ``enqueue`` uses these ``enqueue`` options; ``self`` is unchanged.

        :raises InvalidJobError: for an option ``enqueue`` does not have
        """
        _check_options(options)
        twin: Task[P, R] = Task(self.queue, self.func, self.name, {**self.options, **options})
        twin.unique_key, twin._portal = self.unique_key, self._portal
        return twin

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Store a call of the function and return the job id.

        :raises TaskArgumentError: if the arguments don't fit the function's signature
        :raises SerializationError: if an argument is not JSON-compatible
        """
        data = self._data(args, kwargs)
        options = dict(self.options)
        key = self.unique_key
        if callable(key):
            options["unique_key"] = key(*args, **kwargs)
        elif key is not None:
            options["unique_key"] = key
        return await self.queue.enqueue(self.name, data, **options)

    def _data(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskArgumentError(f"{self.name}: {exc}") from None
        data = {"args": list(args), "kwargs": kwargs}
        dump_json(data, f"the arguments of {self.name}")
        return data

    async def get_result(self, job_id: str) -> TaskResult[R] | None:
        """Return what became of a call, or None for an unknown job."""
        job = await self.queue.get(job_id)
        return None if job is None else _task_result(job)

    async def wait(self, job_id: str, *, timeout: float | None = None) -> R:
        """Wait for a call to end (on pushed updates) and return the function's value.

        :raises JobFailed: if the job ended FAILED (``error`` holds the job's error)
        :raises JobCancelled: if it was cancelled
        :raises TimeoutError: if ``timeout`` seconds pass first
        :raises JobNotFoundError: for an unknown job
        """
        with anyio.fail_after(timeout):
            async for _ in Broadcaster(self.queue).subscribe(job_id):
                pass
        job = await self.queue.get(job_id)
        if job is None or job.status is JobStatus.CANCELLED:
            raise JobCancelled(job_id, None if job is None else job.error)
        if job.status is JobStatus.FAILED:
            raise JobFailed(job_id, job.error)
        return cast(R, (job.results or {}).get("result"))

    async def cancel(self, job_id: str) -> bool:
        """Cancel a pending or running call (``queue.cancel``)."""
        return await self.queue.cancel(job_id)

    # -- blocking twins ------------------------------------------------------------------------

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Blocking :meth:`enqueue`, for synchronous code.

        Works on a task of a ``jdobb_async_queue.sync.JobQueue``, and from a thread started by
        anyio (``anyio.to_thread.run_sync``, or a plain ``def`` task).
        """
        return cast(str, self._blocking(functools.partial(self.enqueue, *args, **kwargs)))

    def wait_sync(self, job_id: str, *, timeout: float | None = None) -> R:
        """Blocking :meth:`wait`, for synchronous code (see :meth:`enqueue_sync`)."""
        return cast(R, self._blocking(functools.partial(self.wait, job_id, timeout=timeout)))

    def _blocking(self, call: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        if self._portal is not None:
            return self._portal.call(call)
        try:
            return anyio.from_thread.run(call)
        except RuntimeError:
            raise RuntimeError(
                f"{self.name}: the blocking twins need a jdobb_async_queue.sync.JobQueue, or a "
                "thread started by anyio; from async code, await enqueue()/wait() instead"
            ) from None


class TaskRegistry:
    """The tasks of one queue, and the worker-thread limiter of its plain ``def`` tasks."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._limiter: anyio.CapacityLimiter | None = None

    def add(self, task: Task[Any, Any]) -> None:
        """Register ``task``.

        :raises ConfigurationError: if another task has its name
        """
        if task.name in self._tasks:
            raise ConfigurationError(f"a task named {task.name!r} is already registered")
        self._tasks[task.name] = task

    def handlers(self) -> dict[str, HandlerFunc]:
        """A job handler per task, for Workers of the queue."""
        return {name: self._handler(task) for name, task in self._tasks.items()}

    def _handler(self, task: Task[Any, Any]) -> HandlerFunc:
        func = task.func
        is_async = inspect.iscoroutinefunction(func)

        async def run_task(ctx: JobContext) -> dict[str, Any]:
            args, kwargs = _call_args(ctx.data)
            if is_async:
                value = await func(*args, **kwargs)
            else:
                call = functools.partial(func, *args, **kwargs)
                # abandon_on_cancel: a timeout or cancel must not wait for the thread, which
                # cannot be interrupted; it finishes in the background, its result discarded.
                value = await anyio.to_thread.run_sync(
                    call, limiter=self._threads(), abandon_on_cancel=True
                )
            return {"result": value}

        return run_task

    def _threads(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # created lazily: a limiter belongs to a running event loop
            self._limiter = anyio.CapacityLimiter(SYNC_TASK_THREADS)
        return self._limiter


def make_task(
    queue: JobQueue,
    func: Callable[..., Any],
    name: str | None,
    options: dict[str, Any],
    unique_key: str | Callable[..., str] | None,
) -> Task[Any, Any]:
    """Build a task for ``func`` and register it on ``queue``."""
    if not callable(func):
        raise ConfigurationError(f"@queue.task decorates a function, not {func!r}")
    _check_options(options)
    task_name = name or f"{func.__module__}.{func.__qualname__}"
    task: Task[Any, Any] = Task(queue, func, task_name, options, unique_key)
    queue._task_registry().add(task)
    return task


def _check_options(options: dict[str, Any]) -> None:
    unknown = set(options) - ENQUEUE_OPTIONS
    if unknown:
        raise InvalidJobError(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")


def _call_args(data: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise TaskArgumentError('task data must be {"args": [...], "kwargs": {...}}')
    return args, kwargs


def _task_result(job: Job) -> TaskResult[Any]:
    return TaskResult(
        job_id=job.id,
        status=job.status,
        result=(job.results or {}).get("result"),
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        attempts=job.attempts,
        max_retries=job.max_retries,
    )
