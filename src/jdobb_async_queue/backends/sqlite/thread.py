"""The database thread: one long-lived thread per backend that runs the store's work.

``anyio.to_thread.run_sync`` hands each call to a pooled thread and back through the event
loop's own machinery: 60 to 150 µs a round trip here (asyncio, then trio), more than a whole
single-job transaction costs (about 30 µs). This thread takes its work from a
:class:`queue.SimpleQueue` and, when a piece is done, writes one byte to a socket pair whose
other end the waiting task watches with ``anyio.wait_readable``: a round trip of 30 to 70 µs,
the same code under asyncio and trio, and no state tied to one event loop (a queue may outlive
a loop).

One task waits at a time (the backend runs one batch at a time): a second concurrent
:meth:`DatabaseThread.run` would make the event loop raise ``BusyResourceError``.
"""

from __future__ import annotations

import queue
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

__all__ = ["DatabaseThread"]

T = TypeVar("T")
_STOP = None

# anyio 4.7 renamed it (the old name warns since); before 4.7 only the old one exists.
_wait_readable: Callable[[socket.socket], Any] = (
    getattr(anyio, "wait_readable", None) or anyio.wait_socket_readable
)


class _Work(Generic[T]):
    __slots__ = ("done", "error", "func", "result")

    def __init__(self, func: Callable[[], T]) -> None:
        self.func = func
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def __call__(self) -> None:
        try:
            self.result = self.func()
        except BaseException as exc:  # handed to the waiting task, which raises it
            self.error = exc
        self.done = True  # last: the waiting task reads result and error once this is set


class DatabaseThread:
    """Runs functions in one dedicated thread, started by the first call.

    :param name: the thread's name (shown by debuggers and ``threading.enumerate()``)
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._requests: queue.SimpleQueue[_Work[Any] | None] | None = None
        self._thread: threading.Thread | None = None
        self._bell: socket.socket | None = None  # the event loop's end: readable when work is done

    async def run(self, func: Callable[[], T]) -> T:
        """Run ``func()`` in the thread and return its result (or raise its exception).

        A caller cancelled meanwhile does not stop ``func``: it runs to its end in the thread
        and its result is dropped (the backend shields its calls, so that never happens there).

        :raises RuntimeError: if the thread has ended (its socket was closed)
        """
        requests, bell = self._start()
        work = _Work(func)
        requests.put(work)
        while not work.done:
            await _wait_readable(bell)
            if not _drain(bell) and not work.done:
                raise RuntimeError(f"{self._name}: the database thread has ended")
        if work.error is not None:
            raise work.error
        return work.result  # type: ignore[return-value]

    async def stop(self) -> None:
        """Let the thread finish what it was given, then end it and close its sockets."""
        thread, requests = self._thread, self._requests
        if thread is None or requests is None:
            return
        self._thread = self._requests = None
        requests.put(_STOP)
        await anyio.to_thread.run_sync(thread.join)
        if self._bell is not None:
            self._bell.close()
            self._bell = None

    def _start(self) -> tuple[queue.SimpleQueue[_Work[Any] | None], socket.socket]:
        if self._requests is not None and self._bell is not None:
            return self._requests, self._bell
        bell, ringer = socket.socketpair()
        bell.setblocking(False)
        ringer.setblocking(False)
        requests: queue.SimpleQueue[_Work[Any] | None] = queue.SimpleQueue()
        # A daemon, so a queue that is never closed cannot keep the interpreter alive; and if
        # this object is collected without stop(), the thread is told to end. Not at exit:
        # a queue closed then (by an exit hook of its own) still needs the thread.
        thread = threading.Thread(
            target=_serve, args=(requests, ringer), name=self._name, daemon=True
        )
        thread.start()
        for finalizer in (
            weakref.finalize(self, requests.put, _STOP),
            weakref.finalize(self, bell.close),
        ):
            finalizer.atexit = False
        self._requests, self._bell, self._thread = requests, bell, thread
        return requests, bell


def _serve(requests: queue.SimpleQueue[_Work[Any] | None], ringer: socket.socket) -> None:
    try:
        while (work := requests.get()) is not _STOP:
            work()
            try:
                ringer.send(b"\0")
            except BlockingIOError:
                pass  # the buffer is full of rings not read yet: the waiter will wake anyway
            except OSError:
                return  # the event loop's end was closed (collected without stop())
    finally:
        ringer.close()


def _drain(bell: socket.socket) -> bool:
    """Read every ring waiting; False once the thread's end is closed (the thread ended)."""
    try:
        while bell.recv(4096):
            pass
    except BlockingIOError:
        return True
    return False
