"""The blocking twin of :class:`jdobb_async_queue.JobQueue`, for scripts, Django and Flask.

::

    from jdobb_async_queue.sync import JobQueue

    with JobQueue(backend="sqlite", url="sqlite:///jobs.db") as queue:
        job_id = queue.enqueue("email", data={"to": "a@example.com"})
        print(queue.get(job_id).status)

Each queue runs one event loop in a thread of its own (an anyio blocking portal) and every
method hands its call to that loop, so it works in a program with no event loop at all and from
many threads at once. ``close()`` (or leaving the ``with`` block) stops the thread. Do not call
it from inside a running event loop: await the async ``JobQueue`` there instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._models import Job, JobPriority, JobStatus, QueueStats
from ._queue import DEFAULT_LEASE
from ._queue import JobQueue as AsyncJobQueue
from ._tasks import Task
from .backends.base import QueueBackend

__all__ = ["JobQueue"]

P = ParamSpec("P")
R = TypeVar("R")


class JobQueue:
    """A :class:`jdobb_async_queue.JobQueue` whose methods block.

    Takes the same arguments as the async queue, plus ``loop`` (``"asyncio"`` or ``"trio"``) for
    the event loop its thread runs.

    :raises ConfigurationError: for an unknown backend or a bad URL (the loop thread is stopped)
    """

    def __init__(
        self,
        backend: QueueBackend | str = "memory",
        *,
        url: str | None = None,
        namespace: str = "default",
        default_ttl: int | None = None,
        clock: Callable[[], float] | None = None,
        loop: Literal["asyncio", "trio"] = "asyncio",
    ) -> None:
        self._stack = ExitStack()
        self._portal: BlockingPortal = self._stack.enter_context(start_blocking_portal(loop))
        try:
            make = functools.partial(
                AsyncJobQueue,
                backend,
                url=url,
                namespace=namespace,
                default_ttl=default_ttl,
                clock=clock,
            )
            self._queue: AsyncJobQueue = self._portal.call(_construct, make)
        except BaseException:
            self._stack.close()
            raise
        self._closed = False

    @property
    def aio(self) -> AsyncJobQueue:
        """The async queue underneath (its methods must run in this queue's loop thread)."""
        return self._queue

    @property
    def backend(self) -> QueueBackend:
        """The backend this queue stores its jobs in."""
        return self._queue.backend

    def _run(self, func: Callable[..., Coroutine[Any, Any, R]], *args: Any, **kwargs: Any) -> R:
        return cast(R, self._portal.call(functools.partial(func, *args, **kwargs)))

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
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Blocking :meth:`jdobb_async_queue.JobQueue.list_jobs`."""
        return self._run(
            self._queue.list_jobs, status, job_type=job_type, limit=limit, offset=offset
        )

    def stats(self) -> QueueStats:
        """Blocking :meth:`jdobb_async_queue.JobQueue.stats`."""
        return self._run(self._queue.stats)

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

    def task(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`jdobb_async_queue.JobQueue.task` on this queue; the tasks' blocking twins
        (``enqueue_sync``, ``wait_sync``) run through this queue's loop thread."""
        made = self._queue.task(*args, **kwargs)
        if isinstance(made, Task):
            made._portal = self._portal
            return made

        def decorate(func: Callable[..., Any]) -> Task[Any, Any]:
            task: Task[Any, Any] = made(func)
            task._portal = self._portal
            return task

        return decorate

    def close(self) -> None:
        """Close the queue and stop its loop thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self._queue.close)
        finally:
            self._stack.close()


async def _construct(make: Callable[[], AsyncJobQueue]) -> AsyncJobQueue:
    return make()
