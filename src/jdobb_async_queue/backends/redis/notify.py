"""Pub/sub for the Redis backend: worker notices and job updates over one shared connection.

Every :meth:`~RedisBackend.listen` and :meth:`~RedisBackend.subscribe` of one backend shares a
single pub/sub connection: a process with 50 handlers and a few Broadcaster subscribers opens one
connection for all of them, not one each. Each reader has its own bounded
:class:`~jdobb_async_queue.backends._hub.Mailbox`.

There is no background task, so nothing holds a task group or cancel scope open across the
``yield`` of a Broadcaster (trio forbids that): whoever waits in ``__anext__`` and finds its
mailbox empty either reads the connection itself (dispatching every message it reads into the
mailboxes it belongs to) or, if another task is reading, waits until that task has dispatched
something or stopped reading.

A channel may also be given a *sink* (:meth:`Notifier.attach`): its messages go to that callback,
and every listener gets a ``"jobs"`` notice. The backend receives the jobs handed to its parked
workers that way (see ``hand_off`` in ``lua/lib.lua``).

Pub/sub is fire-and-forget: messages published while the connection was down are lost. After a
reconnect every listener gets a ``"jobs"`` notice (claim again: something may have become
claimable meanwhile) and every subscriber a fresh snapshot of its job (its terminal update may
have been missed; a job deleted meanwhile yields a ``gone`` update). A subscription ends after
its ``gone`` update (the job was purged, expired or set aside). A cancellation notice lost that
way still reaches the worker, later: its
next lease renewal fails.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import msgspec

from ..._errors import QueueClosedError
from ..._records import UpdateRecord, gone_update
from .._hub import Mailbox
from ..base import Notice
from .calls import is_transient, translate
from .keys import KeyLayout
from .resp import (
    PubSub,
    RedisClient,
    RedisConnectionError,
    RedisTimeoutError,
    RedisTransportError,
)

__all__ = ["Notifier"]


log = logging.getLogger("jdobb_async_queue.backend")

#: Items a reader's mailbox holds before the oldest is dropped.
MAILBOX_SIZE = 256
#: How long one read of the connection lasts at most, so a reconnect is noticed even when no
#: message follows it.
READ_SLICE = 1.0
#: Seconds to wait between attempts to reach a server that is down.
BACKOFF_MAX = 2.0

_decode_update = msgspec.json.Decoder(UpdateRecord).decode


class _Resync:
    """Put in a subscriber's mailbox after a reconnect: fetch the job's state afresh."""


_RESYNC = _Resync()


class Notifier:
    """The pub/sub side of one Redis backend.

    :param client: the backend's client
    :param keys: the namespace's key layout
    :param snapshot: returns the current update of a job (or None), for resyncs
    :param patience: seconds a subscriber waits through an outage before
        :class:`BackendUnavailable` (listeners wait as long as it lasts)
    :param clock: this process's now (for the timestamp of a ``gone`` update found on resync)
    """

    def __init__(
        self,
        client: RedisClient,
        keys: KeyLayout,
        snapshot: Callable[[str], Awaitable[UpdateRecord | None]],
        *,
        patience: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.local_now = clock
        self._client = client
        self._keys = keys
        self._snapshot = snapshot
        self._patience = patience
        self._pubsub: PubSub | None = None
        self._boxes: dict[bytes, set[Mailbox[object]]] = {}
        self._sinks: dict[bytes, Callable[[bytes], None]] = {}
        self._lock = anyio.Lock()  # serialises (un)subscriptions
        self._reading = False
        self._changed = anyio.Event()
        self._reconnects = 0
        self._outage_since: float | None = None
        self._failures = 0
        self._closed = False
        self._loop: object | None = None

    def _bind_loop(self) -> None:
        """On an event loop other than the last one used, forget what belonged to the old one:
        its pub/sub connection, lock, readers (it has finished, so none of them is waiting)."""
        loop = anyio.lowlevel.current_token().native_token
        if loop is self._loop:
            return
        if self._loop is not None:
            pubsub, self._pubsub = self._pubsub, None
            if pubsub is not None:
                pubsub.abandon()
            self._boxes.clear()
            self._sinks.clear()
            self._lock = anyio.Lock()
            self._reading = False
            self._changed = anyio.Event()
            self._outage_since = None
            self._failures = 0
        self._loop = loop

    # -- the public side -----------------------------------------------------------------------

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[Notice]]:
        """Receive worker notices while the context is open."""
        self._bind_loop()
        box: Mailbox[object] = Mailbox(MAILBOX_SIZE)
        channel = self._keys.notices
        await self._add(channel, box)
        try:
            yield _Notices(self, box)
        finally:
            await self._remove(channel, box)

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[AsyncIterator[UpdateRecord]]:
        """Receive the updates of ``job_id`` while the context is open."""
        self._bind_loop()
        box: Mailbox[object] = Mailbox(MAILBOX_SIZE)
        channel = self._keys.updates(job_id)
        await self._add(channel, box)
        try:
            yield _Updates(self, box, job_id)
        finally:
            await self._remove(channel, box)

    def attached(self, channel: bytes) -> bool:
        """Whether ``channel`` has a sink on this event loop's connection."""
        self._bind_loop()
        return channel in self._sinks

    async def attach(self, channel: bytes, sink: Callable[[bytes], None]) -> None:
        """Subscribe to ``channel``: each message goes to ``sink`` (called in the event loop,
        by whichever task reads the connection), then every listener gets a ``"jobs"`` notice.

        :raises BackendUnavailable: if the server cannot be reached (nothing is attached)
        """
        self._bind_loop()
        async with self._lock:
            self._sinks[channel] = sink
            try:
                pubsub = await self._connected()
                await pubsub.subscribe(channel)
            except RedisTransportError as exc:
                del self._sinks[channel]
                raise translate(exc, self._client.address) from exc
            except BaseException:
                del self._sinks[channel]
                raise

    async def detach(self, channel: bytes) -> None:
        """Unsubscribe the sink of ``channel`` (a message already on its way is dropped)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            async with self._lock:
                if self._sinks.pop(channel, None) is None or self._pubsub is None:
                    return
                try:
                    await self._pubsub.unsubscribe(channel)
                except (RedisConnectionError, RedisTimeoutError):
                    pass  # the connection is gone, and the subscription with it

    async def aclose(self) -> None:
        """Close the pub/sub connection; waiting readers end."""
        self._closed = True
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.aclose()
        self._notify()

    # -- subscriptions -------------------------------------------------------------------------

    async def _add(self, channel: bytes, box: Mailbox[object]) -> None:
        async with self._lock:
            boxes = self._boxes.setdefault(channel, set())
            boxes.add(box)
            if len(boxes) > 1:
                return
            try:
                pubsub = await self._connected()
                await pubsub.subscribe(channel)
            except RedisTransportError as exc:
                self._discard(channel, box)
                raise translate(exc, self._client.address) from exc
            except BaseException:
                self._discard(channel, box)
                raise

    async def _remove(self, channel: bytes, box: Mailbox[object]) -> None:
        # Shielded (and bounded): this runs while a cancelled reader leaves, and a subscription
        # left behind would keep its channel's messages coming.
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            async with self._lock:
                if not self._discard(channel, box) or self._pubsub is None:
                    return
                try:
                    await self._pubsub.unsubscribe(channel)
                except (RedisConnectionError, RedisTimeoutError):
                    pass  # the connection is gone, and the subscription with it

    def _discard(self, channel: bytes, box: Mailbox[object]) -> bool:
        """Forget ``box``; return whether it was the channel's last."""
        boxes = self._boxes.get(channel)
        if boxes is None:
            return False
        boxes.discard(box)
        if boxes:
            return False
        del self._boxes[channel]
        return True

    async def _connected(self) -> PubSub:
        if self._closed:
            raise QueueClosedError("the Redis backend")
        if self._pubsub is None:
            pubsub = self._client.pubsub()
            await pubsub.__aenter__()
            self._pubsub = pubsub
            self._reconnects = pubsub.reconnects
        return self._pubsub

    # -- reading -------------------------------------------------------------------------------

    async def next_item(self, box: Mailbox[object], *, patient: bool) -> object:
        """Wait for the next item of ``box``, reading the connection when nobody else does.

        Before it starts reading, the caller yields once: whoever its last item woke (a claimer
        with a hand-off to take) runs first, rather than after the next read is set up.
        """
        yielded = False
        while True:
            try:
                return box.get_nowait()
            except anyio.WouldBlock:
                pass
            if self._closed:
                raise QueueClosedError("the Redis backend")
            if self._reading:
                await self._changed.wait()
            elif not yielded:
                yielded = True
                await anyio.lowlevel.checkpoint()
            else:
                await self._read(patient)

    async def _read(self, patient: bool) -> None:
        self._reading = True
        try:
            message = None
            with anyio.move_on_after(READ_SLICE):
                message = await self._receive(patient)
            self._check_reconnects()
            if message is not None:
                self._dispatch(*message)
        finally:
            self._reading = False
            self._notify()

    async def _receive(self, patient: bool) -> tuple[bytes, bytes] | None:
        try:
            pubsub = self._pubsub
            if pubsub is None:
                async with self._lock:
                    pubsub = await self._connected()
            message = await pubsub.get_message()
        except RedisTransportError as exc:
            if self._closed:
                raise QueueClosedError("the Redis backend") from None
            if not is_transient(exc):
                raise translate(exc, self._client.address) from exc
            await self._wait_out_outage(exc, patient)
            return None
        self._outage_since = None
        self._failures = 0
        return message

    async def _wait_out_outage(self, exc: RedisTransportError, patient: bool) -> None:
        now = anyio.current_time()
        if self._outage_since is None:
            self._outage_since = now
        if not patient and now - self._outage_since > self._patience:
            raise translate(exc, self._client.address, retried_for=self._patience) from exc
        self._failures += 1
        delay = min(0.05 * 2 ** min(self._failures, 8), BACKOFF_MAX)
        await anyio.sleep(delay * (0.5 + random.random() / 2))

    def _check_reconnects(self) -> None:
        pubsub = self._pubsub
        if pubsub is None or pubsub.reconnects == self._reconnects:
            return
        self._reconnects = pubsub.reconnects
        for channel, boxes in self._boxes.items():
            item: object = Notice("jobs") if channel == self._keys.notices else _RESYNC
            for box in boxes:
                box.put(item)

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        sink = self._sinks.get(channel)
        if sink is not None:
            sink(data)
            for box in self._boxes.get(self._keys.notices, ()):
                box.put(_JOBS)
            return
        boxes = self._boxes.get(channel)
        if not boxes:
            return
        try:
            item = _notice(data) if channel == self._keys.notices else _decode_update(data)
        except (msgspec.DecodeError, ValueError, UnicodeDecodeError) as exc:
            log.error("ignored an undecodable message on %r: %s", channel, exc)
            return
        for box in boxes:
            box.put(item)

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def snapshot(self, job_id: str) -> UpdateRecord | None:
        """The job's current state as an update (after a reconnect)."""
        return await self._snapshot(job_id)


_JOBS = Notice("jobs")


def _notice(data: bytes) -> Notice:
    """A notice as published: ``jobs``, or ``cancel <fence> <id>``."""
    kind, _, rest = data.decode().partition(" ")
    if kind == "cancel":
        fence, _, job_id = rest.partition(" ")
        return Notice("cancel", job_id, int(fence))
    return Notice("jobs")


class _Notices:
    """A listener's stream of notices (a plain iterator: nothing is held across yields)."""

    def __init__(self, notifier: Notifier, box: Mailbox[object]) -> None:
        self._notifier = notifier
        self._box = box

    def __aiter__(self) -> _Notices:
        return self

    async def __anext__(self) -> Notice:
        item = await self._notifier.next_item(self._box, patient=True)
        assert isinstance(item, Notice)
        return item


class _Updates:
    """A subscriber's stream of one job's updates."""

    def __init__(self, notifier: Notifier, box: Mailbox[object], job_id: str) -> None:
        self._notifier = notifier
        self._box = box
        self._job_id = job_id
        self._seq = -1
        self._ended = False

    def __aiter__(self) -> _Updates:
        return self

    async def __anext__(self) -> UpdateRecord:
        while True:
            if self._ended:
                raise StopAsyncIteration
            item = await self._notifier.next_item(self._box, patient=False)
            if isinstance(item, _Resync):
                # After an outage: the job's state now, or gone if it was deleted meanwhile.
                item = await self._notifier.snapshot(self._job_id)
                if item is None:
                    item = gone_update(self._job_id, self._notifier.local_now())
                elif item.update_seq <= self._seq:
                    continue
            assert isinstance(item, UpdateRecord)
            if item.gone:
                self._ended = True
            elif item.data is None:
                self._seq = max(self._seq, item.update_seq)
            return item
