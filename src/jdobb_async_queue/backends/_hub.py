"""In-process delivery of notices and job updates, shared by backends that live in one process.

The memory backend delivers everything through a :class:`LocalHub`. (The SQLite backend keeps
mailboxes of its own, because it also de-duplicates the states it reads back from other
processes.) Each subscriber reads from its own bounded
:class:`Mailbox`: publishing never waits, so a slow subscriber never blocks a worker. A full
mailbox drops its oldest entry, so the newest (for a job update, the terminal one) always arrives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import anyio

from .._errors import QueueClosedError
from .._records import UpdateRecord
from .base import Notice

__all__ = ["LocalHub", "Mailbox"]

T = TypeVar("T")


class Mailbox(Generic[T]):
    """A bounded, never-blocking queue for one reader in the event loop's thread."""

    def __init__(self, maxlen: int) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._ready: anyio.Event | None = None
        self._closed: str | None = None

    def close(self, what: str) -> None:
        """The store ``what`` was closed: once empty, the reader gets ``QueueClosedError``."""
        self._closed = what
        if self._ready is not None:
            self._ready.set()

    def put(self, item: T) -> None:
        """Add ``item``, dropping the oldest if full; a repeat of the last item is dropped."""
        if self._items and self._items[-1] == item:
            return
        self._items.append(item)
        if self._ready is not None:
            self._ready.set()

    def get_nowait(self) -> T:
        """Return the oldest item without waiting.

        :raises anyio.WouldBlock: if the mailbox is empty
        """
        if not self._items:
            raise anyio.WouldBlock
        return self._items.popleft()

    async def get(self) -> T:
        """Wait for and return the oldest item."""
        while not self._items:
            if self._closed is not None:
                raise QueueClosedError(self._closed)
            self._ready = anyio.Event()
            await self._ready.wait()
        return self._items.popleft()

    # A plain async iterator, not an async generator: readers may stop at any point without
    # leaving a generator for the garbage collector to finalize.
    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        return await self.get()


class LocalHub:
    """Fan-out of notices (to workers) and job updates (to Broadcaster subscribers)."""

    def __init__(self, buffer: int = 256) -> None:
        self._buffer = buffer
        self._closed: str | None = None
        self._listeners: set[Mailbox[Notice]] = set()
        self._subscribers: dict[str, set[Mailbox[UpdateRecord]]] = {}

    def close(self, what: str) -> None:
        """``what`` was closed: every reader, now and later, ends with ``QueueClosedError``."""
        self._closed = what
        for box in self._listeners:
            box.close(what)
        for boxes in self._subscribers.values():
            for update_box in boxes:
                update_box.close(what)

    def notify(self, notice: Notice) -> None:
        """Deliver ``notice`` to every listening worker."""
        for box in self._listeners:
            box.put(notice)

    def publish(self, update: UpdateRecord) -> None:
        """Deliver ``update`` to the subscribers of its job (cheap when there are none)."""
        boxes = self._subscribers.get(update.job_id)
        if boxes:
            for box in boxes:
                box.put(update)

    def watches(self, job_id: str) -> bool:
        """Whether anyone is subscribed to ``job_id`` (lets backends skip building updates)."""
        return job_id in self._subscribers

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[Notice]]:
        """Receive notices while the context is open."""
        box: Mailbox[Notice] = Mailbox(self._buffer)
        if self._closed is not None:
            box.close(self._closed)
        self._listeners.add(box)
        try:
            yield box.__aiter__()
        finally:
            self._listeners.discard(box)

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[AsyncIterator[UpdateRecord]]:
        """Receive the updates of ``job_id`` while the context is open."""
        box: Mailbox[UpdateRecord] = Mailbox(self._buffer)
        if self._closed is not None:
            box.close(self._closed)
        self._subscribers.setdefault(job_id, set()).add(box)
        try:
            yield box.__aiter__()
        finally:
            boxes = self._subscribers.get(job_id)
            if boxes is not None:
                boxes.discard(box)
                if not boxes:
                    del self._subscribers[job_id]
