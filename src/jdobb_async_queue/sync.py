"""The blocking twin of :class:`jdobb_async_queue.JobQueue`, for scripts, Django and Flask.

::

    from jdobb_async_queue.sync import JobQueue

    with JobQueue(backend="sqlite", url="sqlite:///jobs.db") as queue:
        job_id = queue.enqueue("email", data={"to": "a@example.com"})
        print(queue.get(job_id).status)

Each queue runs one event loop in a thread of its own (an anyio blocking portal) and every
method hands its call to that loop, so it works in a program with no event loop at all and from
many threads at once. ``close()`` (or leaving the ``with`` block) stops the thread; a queue that
is never closed is closed when it is garbage-collected or when the interpreter exits. Do not
call it from inside a running event loop: await the async ``JobQueue`` there instead.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

import anyio
from anyio.from_thread import BlockingPortal

from ._errors import ConfigurationError
from ._models import Job, JobPriority, JobStatus, QueueStats, WorkerInfo
from ._queue import DEFAULT_LEASE, DEFAULT_MAX_PAYLOAD, EnqueueMiddleware
from ._queue import JobQueue as AsyncJobQueue
from ._records import DEFAULT_MAX_LOST
from ._tasks import Task, make_task
from .backends.base import QueueBackend

if TYPE_CHECKING:
    from ._queue import _TaskDecorator

__all__ = ["JobQueue"]

P = ParamSpec("P")
R = TypeVar("R")

_LOOPS = ("asyncio", "trio")


class JobQueue:
    """A :class:`jdobb_async_queue.JobQueue` whose methods block.

    Takes the same arguments as the async queue, plus ``loop`` (``"asyncio"`` or ``"trio"``) for
    the event loop its thread runs.

    :raises ConfigurationError: for an unknown backend or loop, or a bad URL (the loop thread is
        stopped)
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
        loop: Literal["asyncio", "trio"] = "asyncio",
    ) -> None:
        if loop not in _LOOPS:
            raise ConfigurationError(f"loop must be 'asyncio' or 'trio', not {loop!r}")
        thread = _LoopThread(loop)
        try:
            make = functools.partial(
                AsyncJobQueue,
                backend,
                url=url,
                namespace=namespace,
                default_ttl=default_ttl,
                clock=clock,
                max_payload_bytes=max_payload_bytes,
            )
            queue: AsyncJobQueue = thread.portal.call(_construct, make)
        except BaseException:
            thread.stop()
            raise
        thread.queue = queue
        self._portal = thread.portal
        self._queue = queue
        self._thread = thread.thread
        self._pid = thread.pid
        # Closes the queue if it is garbage-collected or still open when the interpreter exits
        # (atexit, while the loop thread still runs): an open queue must not hang the exit.
        self._finalizer = weakref.finalize(self, thread.stop)

    def __repr__(self) -> str:
        state = "open" if self._finalizer.alive else "closed"
        return f"<jdobb_async_queue.sync.JobQueue {type(self.backend).__name__} {state}>"

    @property
    def aio(self) -> AsyncJobQueue:
        """The async queue underneath (its methods must run in this queue's loop thread: use
        :meth:`call`)."""
        return self._queue

    @property
    def backend(self) -> QueueBackend:
        """The backend this queue stores its jobs in."""
        return self._queue.backend

    @property
    def namespace(self) -> str:
        """The queue's namespace."""
        return self._queue.namespace

    @property
    def default_ttl(self) -> int | None:
        """Seconds a finished job is kept when ``enqueue`` gives no ``ttl``."""
        return self._queue.default_ttl

    @property
    def clock(self) -> Callable[[], float]:
        """The queue's clock (seconds since the epoch)."""
        return self._queue.clock

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return not self._finalizer.alive

    def call(self, func: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run an async function in this queue's loop thread and return its result, blocking.

        For the async API the blocking one has no twin of, on :attr:`aio`, e.g. a Worker::

            worker = Worker(queue.aio)
            queue.call(worker.run, burst=True)   # run every due job, then return

        :raises RuntimeError: if the queue is closed, or when called from its loop thread
        """
        return self._run(func, *args, **kwargs)

    def _run(self, func: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any) -> R:
        return self._in_loop(functools.partial(func, *args, **kwargs))

    def _in_loop(self, call: Callable[[], Awaitable[R]]) -> R:
        if not self._finalizer.alive:
            raise RuntimeError("this JobQueue is closed")
        if os.getpid() != self._pid:
            raise RuntimeError(
                "this JobQueue was created in another process and its loop thread did not "
                "survive the fork: create the queue in each process (after forking)"
            )
        return self._portal.call(call)

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def enqueue(
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
        """Blocking :meth:`jdobb_async_queue.JobQueue.enqueue`."""
        return self._run(
            self._queue.enqueue,
            job_type,
            data,
            priority=priority,
            ttl=ttl,
            metadata=metadata,
            job_id=job_id,
            delay=delay,
            execute_at=execute_at,
            max_retries=max_retries,
            retry_delay=retry_delay,
            timeout=timeout,
            depends_on=depends_on,
            unique_key=unique_key,
            max_lost=max_lost,
        )

    def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[str]:
        """Blocking :meth:`jdobb_async_queue.JobQueue.enqueue_many`."""
        return self._run(self._queue.enqueue_many, list(items))

    def get(self, job_id: str) -> Job | None:
        """Blocking :meth:`jdobb_async_queue.JobQueue.get`."""
        return self._run(self._queue.get, job_id)

    def claim(
        self, job_types: list[str] | None = None, *, lease: float = DEFAULT_LEASE
    ) -> Job | None:
        """Blocking :meth:`jdobb_async_queue.JobQueue.claim`."""
        return self._run(self._queue.claim, job_types, lease=lease)

    def update(
        self, job_id: str, progress: float | None = None, message: str | None = None
    ) -> bool:
        """Blocking :meth:`jdobb_async_queue.JobQueue.update`."""
        return self._run(self._queue.update, job_id, progress, message)

    def complete(self, job_id: str, results: dict[str, Any] | None = None) -> bool:
        """Blocking :meth:`jdobb_async_queue.JobQueue.complete`."""
        return self._run(self._queue.complete, job_id, results)

    def fail(self, job_id: str, error: str, *, retry: bool = True) -> bool:
        """Blocking :meth:`jdobb_async_queue.JobQueue.fail`."""
        return self._run(self._queue.fail, job_id, error, retry=retry)

    def cancel(self, job_id: str, reason: str | None = None) -> bool:
        """Blocking :meth:`jdobb_async_queue.JobQueue.cancel`."""
        return self._run(self._queue.cancel, job_id, reason)

    def retry(self, job_id: str, *, delay: float = 0) -> bool:
        """Blocking :meth:`jdobb_async_queue.JobQueue.retry`."""
        return self._run(self._queue.retry, job_id, delay=delay)

    def list_jobs(
        self,
        status: JobStatus | str | None = None,
        *,
        job_type: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Blocking :meth:`jdobb_async_queue.JobQueue.list_jobs`."""
        return self._run(
            self._queue.list_jobs, status, job_type=job_type, limit=limit, offset=offset
        )

    def stats(self) -> QueueStats:
        """Blocking :meth:`jdobb_async_queue.JobQueue.stats`."""
        return self._run(self._queue.stats)

    def workers(self) -> list[WorkerInfo]:
        """Blocking :meth:`jdobb_async_queue.JobQueue.workers`."""
        return self._run(self._queue.workers)

    def middleware(self, middleware: EnqueueMiddleware) -> EnqueueMiddleware:
        """:meth:`jdobb_async_queue.JobQueue.middleware` (the middleware stays async: it runs
        in this queue's loop thread)."""
        return self._queue.middleware(middleware)

    def purge(
        self,
        statuses: Iterable[JobStatus | str] | None = None,
        *,
        before: datetime | None = None,
        job_type: str | None = None,
    ) -> int:
        """Blocking :meth:`jdobb_async_queue.JobQueue.purge`."""
        chosen = None if statuses is None else list(statuses)
        return self._run(self._queue.purge, chosen, before=before, job_type=job_type)

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
        """:meth:`jdobb_async_queue.JobQueue.task` on this queue; the tasks' blocking twins
        (``enqueue_sync``, ``wait_sync``) run through this queue's loop thread."""
        if callable(name):
            return self._adopt(make_task(self._queue, name, None, options, unique_key))

        def decorate(func: Callable[..., Any]) -> Task[Any, Any]:
            return self._adopt(make_task(self._queue, func, name, options, unique_key))

        return decorate

    def _adopt(self, task: Task[Any, Any]) -> Task[Any, Any]:
        task._runner = self._in_loop
        return task

    def close(self) -> None:
        """Close the queue and stop its loop thread. Safe to call twice.

        Calls still running in other threads (a ``wait_sync``, a Worker run with :meth:`call`)
        are cancelled first (they raise ``concurrent.futures.CancelledError``), then the backend
        is closed.

        :raises RuntimeError: when called from the queue's own loop thread (from a :meth:`call`)
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("a JobQueue cannot be closed from its own loop thread")
        self._finalizer()


class _LoopThread:
    """An event loop in a daemon thread, serving a blocking portal; on stop, it cancels the
    calls still running, then closes the queue (in the loop, before it ends)."""

    def __init__(self, loop: str) -> None:
        self.queue: AsyncJobQueue | None = None
        self.pid = os.getpid()
        self._ready: Future[BlockingPortal] = Future()
        self._close_error: BaseException | None = None
        # A daemon thread: if the queue is never closed, the interpreter's exit must not wait
        # for it (the finalizer stops it properly before that, from atexit).
        self.thread = threading.Thread(
            target=self._run, args=(loop,), name=f"jdobb-async-queue-{loop}", daemon=True
        )
        self.thread.start()
        self.portal = self._ready.result()

    def _run(self, loop: str) -> None:
        try:
            anyio.run(self._serve, backend=loop)
        except BaseException as exc:  # handed to the thread that waits for the portal
            if self._ready.done():
                raise
            self._ready.set_exception(exc)

    async def _serve(self) -> None:
        async with BlockingPortal() as portal:
            self._ready.set_result(portal)
            await portal.sleep_until_stopped()
        # Every call has ended (or been cancelled): nothing uses the backend any more.
        if self.queue is not None:
            try:
                await self.queue.close()
            except BaseException as exc:
                self._close_error = exc  # raised by stop(), in the thread that closes

    def stop(self) -> None:
        """Cancel the calls still running, close the queue, end the loop and its thread."""
        if os.getpid() != self.pid:
            return  # a forked child (atexit there): the loop thread exists in the parent only
        if threading.current_thread() is self.thread:
            return  # from the loop itself (a finalizer run there): it cannot wait for itself
        try:
            self.portal.call(self.portal.stop, True)
        except RuntimeError:
            pass  # the portal has stopped already
        self.thread.join()
        if self._close_error is not None:
            error, self._close_error = self._close_error, None
            raise error


async def _construct(make: Callable[[], AsyncJobQueue]) -> AsyncJobQueue:
    return make()
