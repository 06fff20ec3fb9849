"""Function tasks: ``@queue.task`` turns a function into a typed, enqueueable job type.

Stored format (so a producer that cannot import the function can still enqueue it by name with
plain ``queue.enqueue``)::

    job_type = task name (default: "<module>.<qualname>")
    data     = {"args": [...positional...], "kwargs": {...keyword...}}  (empty parts left out)
    results  = {"result": <the function's return value, any JSON value>}
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.lowlevel import RunVar
from typing_extensions import Unpack

from ._broadcast import Broadcaster
from ._codec import CheckedJSON, is_json_scalar
from ._context import HandlerFunc, JobContext, is_async_callable
from ._errors import (
    ConfigurationError,
    InvalidJobError,
    JobCancelled,
    JobFailed,
    SerializationError,
)
from ._jobspec import EnqueueOptions as EnqueueOptions
from ._jobspec import build_record
from ._models import Job, JobStatus, JobUpdate

if TYPE_CHECKING:
    from ._queue import JobQueue

__all__ = [
    "SYNC_TASK_THREADS",
    "BlockingRunner",
    "EnqueueOptions",
    "Task",
    "TaskArgumentError",
    "TaskHandler",
    "TaskRegistry",
    "TaskResult",
    "task_call",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Plain ``def`` tasks of one queue run in worker threads, at most this many at once per event
#: loop (read when a queue's first plain ``def`` task starts in that loop).
SYNC_TASK_THREADS = 16

_DATA_KEYS = frozenset({"args", "kwargs"})


class TaskArgumentError(InvalidJobError, TypeError):
    """The arguments of a task call do not fit the function's signature (or its stored data is
    not ``{"args": [...], "kwargs": {...}}``)."""


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

    # Copied from the function by functools.update_wrapper.
    __name__: str
    __qualname__: str
    __wrapped__: Callable[..., Any]

    def __init__(
        self,
        queue: JobQueue,
        func: Callable[P, Awaitable[R]] | Callable[P, R],
        name: str,
        options: dict[str, Any],
        unique_key: str | Callable[P, str] | None = None,
    ) -> None:
        # First, so that nothing it copies (a __dict__ holding "name", "queue", ...) can
        # overwrite the task's own attributes.
        functools.update_wrapper(self, func, updated=())
        self.queue = queue
        self.func = func
        self.name = name
        self.options = options
        self.unique_key = unique_key
        self._signature = _signature(func)
        self._positional = _positional_arity(self._signature)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly (no queue involved)."""
        result = self.func(*args, **kwargs)
        if inspect.isawaitable(result):
            return cast(R, await result)
        return result

    def with_options(self, **options: Unpack[EnqueueOptions]) -> Task[P, R]:
        """Return a task whose ``enqueue`` uses these ``enqueue`` options; ``self`` is unchanged.

        Options given here replace the task's own (``delay`` and ``execute_at`` replace each
        other).

        :raises InvalidJobError: for an option ``enqueue`` does not have, or a bad value
        """
        given: dict[str, Any] = dict(options)
        unique_key = given.pop("unique_key", self.unique_key)
        merged = dict(self.options)
        if "delay" in given or "execute_at" in given:
            merged.pop("delay", None)
            merged.pop("execute_at", None)
        merged.update(given)
        _check_options(self.name, merged, unique_key)
        return Task(self.queue, self.func, self.name, merged, unique_key)

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Store a call of the function and return the job id.

        :raises TaskArgumentError: if the arguments don't fit the function's signature
        :raises SerializationError: if an argument is not JSON-compatible
        """
        data = self._data(args, kwargs)
        options = self.options
        key = self.unique_key
        if key is not None:
            options = {**options, "unique_key": key(*args, **kwargs) if callable(key) else key}
        try:
            return await self.queue.enqueue(self.name, data, **options)
        except SerializationError as exc:
            if exc.what != "data":  # the options were checked when the task was made
                raise
            raise SerializationError(f"the arguments of {self.name}", exc.detail) from None

    def _data(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The stored data of a call: only its non-empty parts, None for no arguments (so the
        collector has no empty containers to track per job). ``enqueue`` checks it for JSON."""
        arity = self._positional
        if arity is not None and not kwargs and arity[0] <= len(args) <= arity[1]:
            pass  # fits a function of positional parameters only: no need to bind
        elif self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TaskArgumentError(f"{self.name}: {exc}") from None
        if not args and not kwargs:
            return None
        data: dict[str, Any] = {}
        if args:
            data["args"] = list(args)
        if kwargs:
            data["kwargs"] = kwargs
        return data

    async def get_result(self, job_id: str) -> TaskResult[R] | None:
        """Return what became of a call, or None for an unknown job."""
        job = await self.queue.get(job_id)
        return None if job is None else _task_result(job)

    async def wait(self, job_id: str, *, timeout: float | None = None) -> R:
        """Wait for a call to end (on pushed updates) and return the function's value.

        :raises JobFailed: if the job ended FAILED (``error`` holds the job's error)
        :raises JobCancelled: if it was cancelled (``error`` holds the reason)
        :raises TimeoutError: if ``timeout`` seconds pass first
        :raises JobNotFoundError: for an unknown job
        """
        last: JobUpdate | None = None
        with anyio.fail_after(timeout):
            async with aclosing(Broadcaster(self.queue).subscribe(job_id)) as updates:
                async for update in updates:
                    last = update
        # The subscription ends after the terminal update, which carries the outcome: no second
        # read, so a job whose ttl deletes it at once still reports its result.
        if last is None or not last.status.is_terminal:
            raise RuntimeError(f"the updates of job {job_id} stopped before it ended")
        if last.status is JobStatus.CANCELLED:
            raise JobCancelled(job_id, last.error)
        if last.status is JobStatus.FAILED:
            raise JobFailed(job_id, last.error)
        return cast(R, (last.results or {}).get("result"))

    async def cancel(self, job_id: str, reason: str | None = None) -> bool:
        """Cancel a pending or running call (``queue.cancel``); ``False`` if it had ended.

        A running ``async def`` call is cancelled at its next ``await``; a running plain ``def``
        call is abandoned (its thread runs on, its result discarded).
        """
        return await self.queue.cancel(job_id, reason)

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
        runner = self.queue.tasks.runner
        if runner is not None:
            return runner(call)
        started = False

        async def run() -> Any:
            nonlocal started
            started = True
            return await call()

        try:
            return anyio.from_thread.run(run)
        except RuntimeError:
            if started:
                raise  # raised by the call itself, not by the lack of an event loop
            raise RuntimeError(
                f"{self.name}: the blocking twins need a jdobb_async_queue.sync.JobQueue, or a "
                "thread started by anyio; from async code, await enqueue()/wait() instead"
            ) from None


#: Runs a coroutine function to its end from synchronous code, and returns its result.
BlockingRunner = Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]


class TaskRegistry:
    """The tasks of one queue, and the worker-thread limiter of its plain ``def`` tasks."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        #: How the blocking twins of these tasks (``enqueue_sync``, ``wait_sync``) run their
        #: call: ``None`` (from a thread anyio started), or what the blocking
        #: ``jdobb_async_queue.sync.JobQueue`` sets, its loop thread.
        self.runner: BlockingRunner | None = None
        # One limiter per event loop: a limiter belongs to the loop it was made in, and a queue
        # may outlive one (``anyio.run`` twice, or asyncio then trio).
        self._limiter: RunVar[anyio.CapacityLimiter | None] = RunVar(
            f"jdobb_async_queue.task_threads.{id(self):x}", None
        )

    def add(self, task: Task[Any, Any]) -> None:
        """Register ``task``.

        :raises ConfigurationError: if another task has its name
        """
        if task.name in self._tasks:
            raise ConfigurationError(f"a task named {task.name!r} is already registered")
        self._tasks[task.name] = task

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        """The names of the registered tasks, in registration order."""
        return list(self._tasks)

    def handlers(self) -> dict[str, HandlerFunc]:
        """A job handler per task, for Workers of the queue."""
        # A snapshot (list() is atomic): a thread may register a task meanwhile.
        return {name: self._handler(task) for name, task in list(self._tasks.items())}

    def _handler(self, task: Task[Any, Any]) -> HandlerFunc:
        return TaskHandler(self, task)

    def _threads(self) -> anyio.CapacityLimiter:
        limiter = self._limiter.get()
        if limiter is None:  # created lazily: a limiter belongs to a running event loop
            limiter = anyio.CapacityLimiter(SYNC_TASK_THREADS)
            self._limiter.set(limiter)
        return limiter


class TaskHandler:
    """The job handler of one task: awaited like any handler."""

    __slots__ = ("func", "is_async", "registry", "task")

    def __init__(self, registry: TaskRegistry, task: Task[Any, Any]) -> None:
        self.registry = registry
        self.task = task
        self.func = task.func
        self.is_async = is_async_callable(task.func)

    def __repr__(self) -> str:
        return f"<TaskHandler {self.task.name}>"

    async def __call__(self, ctx: JobContext) -> dict[str, Any]:
        func = self.func
        data = ctx.data
        args, kwargs = _call_args(self.task, data) if data else _NO_ARGUMENTS
        try:
            if self.is_async:
                call = func(*args, **kwargs)  # a bad signature raises here, not in the body
                return _boxed_result(await call)
            boxed = functools.partial(_boxed, func, *args, **kwargs)
            # abandon_on_cancel: a timeout or cancel must not wait for the thread, which
            # cannot be interrupted; it finishes in the background, result discarded.
            (call,) = await anyio.to_thread.run_sync(
                boxed, limiter=self.registry._threads(), abandon_on_cancel=True
            )
        except TypeError:
            _check_binding(self.task, args, kwargs)  # arguments that don't fit: say so clearly
            raise
        value = await call if inspect.isawaitable(call) else call
        return _boxed_result(value)


def _boxed_result(value: Any) -> dict[str, Any]:
    """A task's results, ``{"result": value}``: marked as checked when ``value`` is a JSON
    scalar (None, the common case, included), so the runner does not check it again."""
    if is_json_scalar(value):
        return CheckedJSON(result=value)
    return {"result": value}


#: The arguments of a call stored without any (``{}``): never changed, only unpacked.
_NO_ARGUMENTS: tuple[list[Any], dict[str, Any]] = ([], {})


def make_task(
    queue: JobQueue,
    func: Callable[..., Any],
    name: str | None,
    options: dict[str, Any],
    unique_key: str | Callable[..., str] | None,
) -> Task[Any, Any]:
    """Build a task for ``func`` and register it on ``queue``.

    :raises ConfigurationError: for something that is not a function, a bad name, or a name
        already registered on ``queue``
    :raises InvalidJobError: for a bad option
    """
    if isinstance(func, Task):  # the function of a task of another queue
        func = func.func
    if not callable(func):
        raise ConfigurationError(f"@queue.task decorates a function, not {func!r}")
    task_name = _task_name(func, name)
    _check_options(task_name, options, unique_key)
    task: Task[Any, Any] = Task(queue, func, task_name, options, unique_key)
    queue.tasks.add(task)
    return task


def _task_name(func: Callable[..., Any], name: str | None) -> str:
    if name is not None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a task's name must be a non-empty string, not {name!r}")
        return name
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise ConfigurationError(
            f"{func!r} has no __module__/__qualname__ to name its task: "
            "give one, @queue.task(name=...)"
        )
    return f"{module}.{qualname}"


def _check_options(
    name: str, options: dict[str, Any], unique_key: str | Callable[..., str] | None
) -> None:
    """Refuse an unknown option or a bad value now, not at the first ``enqueue``."""
    if unique_key is not None and not callable(unique_key) and not isinstance(unique_key, str):
        raise InvalidJobError(
            f"unique_key must be a string, a function returning one, or None, not {unique_key!r}"
        )
    build_record(name, None, options, now=0.0, default_ttl=None)


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):  # some builtins have none: arguments are not checked
        return None


def _positional_arity(signature: inspect.Signature | None) -> tuple[int, float] | None:
    """(fewest, most) positional arguments a call may pass without keywords, for a function
    with no required keyword-only parameter; None when only ``Signature.bind`` can tell."""
    if signature is None:
        return None
    fewest, most = 0, 0.0
    for p in signature.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            most += 1
            if p.default is p.empty:
                fewest = int(most)
        elif p.kind is p.VAR_POSITIONAL:
            most = float("inf")
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            return None
    return fewest, most


def _boxed(func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any]:
    # Boxed: trio's to_thread refuses a function whose return value is a coroutine.
    return (func(*args, **kwargs),)


def task_call(task: Task[Any, Any], data: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The arguments stored ``data`` calls ``task`` with, checked against its signature.

    :raises TaskArgumentError: for data not in the task format, or arguments that don't fit
    """
    args, kwargs = _call_args(task, data)
    _check_binding(task, args, kwargs)
    return args, kwargs


def _call_args(task: Task[Any, Any], data: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    known = ("args" in data) + ("kwargs" in data)
    if len(data) != known or type(args) is not list or type(kwargs) is not dict:
        shown = repr(data) if len(repr(data)) <= 80 else repr(data)[:77] + "..."
        raise TaskArgumentError(
            f'{task.name}: task data must be {{"args": [...], "kwargs": {{...}}}}, not {shown}'
        )
    return args, kwargs


def _check_binding(task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> None:
    """Raise :class:`TaskArgumentError` if the stored arguments don't fit the function.

    Only called once a call has raised ``TypeError``: binding costs microseconds per job, and
    the call itself would have refused a bad signature anyway.
    """
    if task._signature is not None:
        try:
            task._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskArgumentError(f"{task.name}: {exc}") from None


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
