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

The methods are not written out again: each one is derived from the async queue's method of
the same name (its parameters, defaults, return type and docstring), so the two cannot drift.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, cast, overload

import anyio
from anyio.from_thread import BlockingPortal
from typing_extensions import Self

from ._errors import ConfigurationError
from ._queue import DEFAULT_MAX_PAYLOAD
from ._queue import JobQueue as AsyncJobQueue
from .backends.base import QueueBackend

__all__ = ["JobQueue"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_R_co = TypeVar("_R_co", covariant=True)
_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)
_C = TypeVar("_C", bound=type)

_LOOPS = ("asyncio", "trio")

#: The async queue's constructor parameters (the blocking one takes them all, plus ``loop``).
_QUEUE_PARAMETERS = tuple(inspect.signature(AsyncJobQueue).parameters)


# -- deriving the blocking API from the async one --------------------------------------------------
#
# In the class body, ``get = _blocking(lambda queue: queue.get)`` says "get is the async queue's
# get, made blocking". The lambda gives mypy the async method's parameters (a ParamSpec, names,
# kinds and defaults included) and its awaited return type; ``@_derived`` then replaces the
# marker with a plain function that carries the async method's signature and docstring, so
# ``help()``, ``inspect.signature`` and the API reference see an ordinary method.


class _BlockingMethod(Protocol[_P, _R_co]):
    """How mypy sees a blocking twin: on an instance, the async method's parameters, returning
    what it awaits."""

    @overload
    def __get__(self, instance: None, owner: type[Any], /) -> Self: ...
    @overload
    def __get__(self, instance: JobQueue, owner: type[Any], /) -> Callable[_P, _R_co]: ...
    def __call__(self, queue: JobQueue, /, *args: _P.args, **kwargs: _P.kwargs) -> _R_co: ...


class _Mirrored(Protocol[_T_co]):
    """How mypy sees a mirrored member: on an instance, exactly the async queue's (overloads
    included)."""

    @overload
    def __get__(self, instance: None, owner: type[Any], /) -> Self: ...
    @overload
    def __get__(self, instance: JobQueue, owner: type[Any], /) -> _T_co: ...


class _Twin:
    """A placeholder in the class body, turned into the real member by :func:`_derived`."""

    def __init__(self, kind: str, get: Callable[[AsyncJobQueue], Any], note: str | None) -> None:
        self.kind = kind  # "blocking", "mirrored" (a method) or "attribute"
        self.get = get
        self.note = note

    def build(self, owner: type, name: str) -> object:
        if self.get.__code__.co_names != (name,):  # the lambda must read the same name
            raise TypeError(f"{owner.__qualname__}.{name} must mirror queue.{name}")
        original = inspect.getattr_static(AsyncJobQueue, name, None)
        if self.kind == "attribute":
            doc = self.note or getattr(original, "__doc__", None)
            return property(functools.partial(_read, self.get), doc=doc)
        if not callable(original):
            raise TypeError(f"the async JobQueue has no method {name}")
        twin = _blocking_method(self.get) if self.kind == "blocking" else _mirrored_method(self.get)
        functools.update_wrapper(twin, original)
        # Not a wrapper to tools that unwrap (the API reference would show the async method).
        del twin.__wrapped__
        twin.__module__ = __name__
        twin.__qualname__ = f"{owner.__qualname__}.{name}"
        twin.__signature__ = inspect.signature(original)
        twin.__doc__ = _docstring(original, name, self.kind, self.note)
        return twin


def _blocking(
    get: Callable[[AsyncJobQueue], Callable[_P, Awaitable[_R]]],
) -> _BlockingMethod[_P, _R]:
    """The blocking twin of the async queue's method ``get`` reads: it runs the method in the
    queue's loop thread and returns what the method returns."""
    return cast("_BlockingMethod[_P, _R]", _Twin("blocking", get, None))


def _mirrored(get: Callable[[AsyncJobQueue], _T], note: str) -> _Mirrored[_T]:
    """The async queue's (non-async) method ``get`` reads, called in the caller's thread."""
    return cast("_Mirrored[_T]", _Twin("mirrored", get, note))


def _attribute(get: Callable[[AsyncJobQueue], _T], doc: str | None = None) -> _Mirrored[_T]:
    """A read-only property: the async queue's attribute ``get`` reads."""
    return cast("_Mirrored[_T]", _Twin("attribute", get, doc))


def _derived(cls: _C) -> _C:
    """Replace each placeholder of ``cls`` with the member it stands for."""
    for name, member in list(vars(cls).items()):
        if isinstance(member, _Twin):
            setattr(cls, name, member.build(cls, name))
    return cls


def _blocking_method(get: Callable[[AsyncJobQueue], Callable[..., Awaitable[Any]]]) -> Any:
    def twin(self: JobQueue, /, *args: Any, **kwargs: Any) -> Any:
        return self._loop.call(functools.partial(get(self._queue), *args, **kwargs))

    return twin


def _mirrored_method(get: Callable[[AsyncJobQueue], Callable[..., Any]]) -> Any:
    def twin(self: JobQueue, /, *args: Any, **kwargs: Any) -> Any:
        return get(self._queue)(*args, **kwargs)

    return twin


def _read(get: Callable[[AsyncJobQueue], Any], self: JobQueue) -> Any:
    return get(self._queue)


def _docstring(original: Callable[..., Any], name: str, kind: str, note: str | None) -> str:
    summary, _, details = inspect.cleandoc(original.__doc__ or "").partition("\n\n")
    source = f":meth:`jdobb_async_queue.JobQueue.{name}`"
    if kind == "blocking":
        how = f"The blocking twin of {source}: it runs in this queue's loop thread."
    else:
        how = f"{source} of the async queue underneath. {note}"
    return "\n\n".join(part for part in (summary, how, details.strip()) if part)


# -- the queue -------------------------------------------------------------------------------------


@_derived
class JobQueue:
    """A :class:`jdobb_async_queue.JobQueue` whose methods block.

    Takes the same arguments as the async queue, plus ``loop`` (``"asyncio"`` or ``"trio"``) for
    the event loop its thread runs.

    :raises ConfigurationError: for an unknown backend or loop, or a bad URL (the loop thread is
        stopped)
    """

    # The constructor is the one signature written out: it adds ``loop``, which a ParamSpec
    # cannot express. tests/test_sync.py fails if it differs from the async one in anything else.
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
        given = locals()
        if loop not in _LOOPS:
            raise ConfigurationError(f"loop must be 'asyncio' or 'trio', not {loop!r}")
        make = functools.partial(AsyncJobQueue, **{name: given[name] for name in _QUEUE_PARAMETERS})
        thread = _LoopThread(loop)
        try:
            queue: AsyncJobQueue = thread.portal.call(_construct, make)
        except BaseException:
            thread.stop()
            raise
        thread.queue = queue
        # The tasks' blocking twins (enqueue_sync, wait_sync) run through the loop thread. The
        # thread's call, not this object's: the queue must stay collectable (see below).
        queue.tasks.runner = thread.call
        self._queue = queue
        self._loop = thread
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

    backend = _attribute(lambda queue: queue.backend)
    namespace = _attribute(lambda queue: queue.namespace, "The queue's namespace.")
    default_ttl = _attribute(
        lambda queue: queue.default_ttl,
        "Seconds a finished job is kept when ``enqueue`` gives no ``ttl``.",
    )
    clock = _attribute(lambda queue: queue.clock, "The queue's clock (seconds since the epoch).")
    max_payload_bytes = _attribute(
        lambda queue: queue.max_payload_bytes,
        "Largest ``data`` (and ``metadata``) a job may carry, in bytes of JSON "
        "(``None``: no limit).",
    )
    tasks = _attribute(
        lambda queue: queue.tasks,
        "The tasks registered with :meth:`task` (Workers of this queue run them).",
    )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return not self._finalizer.alive

    def call(self, func: Callable[_P, Awaitable[_R]], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Run an async function in this queue's loop thread and return its result, blocking.

        For the async API the blocking one has no twin of, on :attr:`aio`, e.g. a Worker::

            worker = Worker(queue.aio)
            queue.call(worker.run, burst=True)   # run every due job, then return

        :raises RuntimeError: if the queue is closed, or when called from its loop thread
        """
        return self._loop.call(functools.partial(func, *args, **kwargs))

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    enqueue = _blocking(lambda queue: queue.enqueue)
    enqueue_many = _blocking(lambda queue: queue.enqueue_many)
    middleware = _mirrored(
        lambda queue: queue.middleware,
        "The middleware stays async: it runs in this queue's loop thread.",
    )
    get = _blocking(lambda queue: queue.get)
    list_jobs = _blocking(lambda queue: queue.list_jobs)
    workers = _blocking(lambda queue: queue.workers)
    stats = _blocking(lambda queue: queue.stats)
    claim = _blocking(lambda queue: queue.claim)
    update = _blocking(lambda queue: queue.update)
    complete = _blocking(lambda queue: queue.complete)
    fail = _blocking(lambda queue: queue.fail)
    cancel = _blocking(lambda queue: queue.cancel)
    retry = _blocking(lambda queue: queue.retry)
    purge = _blocking(lambda queue: queue.purge)
    task = _mirrored(
        lambda queue: queue.task,
        "The tasks' blocking twins (``enqueue_sync``, ``wait_sync``) run through this "
        "queue's loop thread.",
    )

    def close(self) -> None:
        """Close the queue and stop its loop thread. Safe to call twice.

        Calls still running in other threads (a ``wait_sync``, a Worker run with :meth:`call`)
        are cancelled first (they raise ``concurrent.futures.CancelledError``), then the backend
        is closed.

        :raises RuntimeError: when called from the queue's own loop thread (from a :meth:`call`)
        """
        if threading.current_thread() is self._loop.thread:
            raise RuntimeError("a JobQueue cannot be closed from its own loop thread")
        self._finalizer()


class _LoopThread:
    """An event loop in a daemon thread, serving a blocking portal; on stop, it cancels the
    calls still running, then closes the queue (in the loop, before it ends)."""

    def __init__(self, loop: str) -> None:
        self.queue: AsyncJobQueue | None = None
        self.pid = os.getpid()
        self.stopped = False
        self._ready: Future[BlockingPortal] = Future()
        self._close_error: BaseException | None = None
        # A daemon thread: if the queue is never closed, the interpreter's exit must not wait
        # for it (the finalizer stops it properly before that, from atexit).
        self.thread = threading.Thread(
            target=self._run, args=(loop,), name=f"jdobb-async-queue-{loop}", daemon=True
        )
        self.thread.start()
        self.portal = self._ready.result()

    def call(self, call: Callable[[], Awaitable[_R]]) -> _R:
        """Run ``call()`` in the loop and return its result, blocking.

        :raises RuntimeError: once stopped, in a forked child, or from the loop thread itself
        """
        if self.stopped:
            raise RuntimeError("this JobQueue is closed")
        if os.getpid() != self.pid:
            raise RuntimeError(
                "this JobQueue was created in another process and its loop thread did not "
                "survive the fork: create the queue in each process (after forking)"
            )
        return self.portal.call(call)

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
        self.stopped = True
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
