"""The Redis backend: jobs in Redis hashes, every transition one Lua script.

See :mod:`.keys` for the key layout, ``lua/`` for the scripts, :mod:`.notify` for
pub/sub (wake-ups, cancellations, job updates), :mod:`.handoff` for the jobs handed to idle
workers and :mod:`.calls` for error mapping and retries.
Nothing connects before the first call, so a backend can be made outside async code.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import msgspec

from ..._errors import (
    ConfigurationError,
    DuplicateJobError,
    QueueClosedError,
    UnknownDependencyError,
)
from ..._models import QueueStats
from ..._records import (
    JobRecord,
    Lease,
    Outcome,
    ProgressUpdate,
    UpdateRecord,
    WorkerRecord,
    record_update,
)
from ..base import Notice, QueueBackend
from . import codec
from .calls import Caller
from .handoff import Inbox
from .keys import KeyLayout
from .notify import Notifier
from .resp import InvalidRedisURL, RedisClient
from .scripts import load_scripts

__all__ = ["ACL_COMMANDS", "RedisBackend", "acl_rule"]

log = logging.getLogger("jdobb_async_queue.backend")

#: Jobs one ``reclaim_expired`` call sends back at most (the next call takes the rest).
RECLAIM_BATCH = 1000
#: Jobs one purge script examines at most, so a large purge never blocks Redis for long.
PURGE_BATCH = 2000
#: Clocks this close (seconds) count as agreeing: absolute times are not moved (``lib.lua``).
CLOCK_TOLERANCE = 1.0
#: Keys deleted per ``UNLINK`` by :meth:`RedisBackend.drop_namespace`.
DROP_BATCH = 500
#: The commands the backend sends (scripts included: Redis checks what a script calls too).
#: (``+scan`` and ``+unlink`` only for :meth:`RedisBackend.drop_namespace`; without ``+fcall``
#: and ``+function|load``, or before Redis 7, the backend sends scripts instead of functions.)
ACL_COMMANDS: tuple[str, ...] = (
    "+fcall", "+function|load", "+evalsha", "+eval", "+script|load", "+ping", "+select",
    "+time", "+publish", "+pubsub|numsub", "+subscribe", "+unsubscribe", "+zrangebyscore",
    "+zremrangebyscore", "+zrange", "+zrevrange", "+zadd", "+zrem", "+zcard", "+zcount",
    "+hset", "+hget", "+hmget", "+hgetall", "+hdel", "+hexists", "+hincrby", "+sadd", "+srem",
    "+smembers", "+exists", "+expire", "+del", "+set", "+get", "+incrby", "+rename", "+scan",
    "+unlink",
)  # fmt: skip


def acl_rule(user: str, password: str, namespace: str = "default") -> str:
    """The ``ACL SETUSER`` arguments for a user limited to one namespace (see the class docs)."""
    prefix = KeyLayout(namespace).prefix
    return " ".join(
        [user, "reset", "on", f">{password}", f"~{prefix}*", f"&{prefix}*", *ACL_COMMANDS]
    )


_STAT_FIELDS = ("pending", "processing", "complete", "failed", "cancelled", "scheduled", "waiting")


_decode_worker = msgspec.json.Decoder(WorkerRecord).decode


class RedisBackend(QueueBackend):
    """Jobs in a Redis server, shared by any number of processes and hosts.

    :param url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
        ``unix://[[user]:password@]/path/to.sock[?db=N]``
    :param namespace: isolates queues sharing one server (every key starts
        ``jdobb:{<namespace>}:``)
    :param pool_size: connections for commands (concurrent calls beyond that are pipelined);
        pub/sub takes one more
    :param connect_timeout: seconds for one connection attempt (default 2). A queue that has
        never reached its server fails fast: the first call raises
        :class:`~jdobb_async_queue.BackendUnavailable` naming the host and port after one
        attempt, rather than riding out an "outage" of a server that may not exist
    :param command_timeout: seconds to wait for one reply
    :param retry_for: seconds to keep retrying through an outage (once connected) before
        :class:`~jdobb_async_queue.BackendUnavailable`
    :param ssl_context: for ``rediss://`` (default: the system's trusted CAs)
    :raises ConfigurationError: for a URL that cannot be parsed or bad options

    **Clock.** The scripts read the server's ``TIME``: leases, due times, reclaims and update
    stamps follow one clock whatever the hosts' clocks say. Absolute times a caller passes
    (``execute_at``, purge's ``before``) are read against the caller's ``now`` and moved onto the
    server's clock, and :meth:`next_due` answers on the caller's. With a test clock
    (``JobQueue(clock=...)`` sets :attr:`test_clock`) the passed ``now`` drives everything.

    **Event loops.** A backend may be used from successive event loops (``anyio.run`` once per
    test, asyncio then trio): connections opened on a loop that has finished are dropped, not
    awaited, and new ones opened. After :meth:`aclose` every call raises
    :class:`~jdobb_async_queue.QueueClosedError` at once.

    **Corrupt records.** A job hash that cannot be decoded is set aside (renamed to
    ``corrupt:<id>`` in the namespace, out of every index), logged on the
    ``jdobb_async_queue.backend`` logger, and reads as gone; the other jobs carry on.

    **Least privilege.** The backend needs only its namespace's keys and channels and a short
    list of commands. An ACL user for namespace ``default`` (:func:`acl_rule` prints the line
    for another)::

        ACL SETUSER jdobb reset on >PASSWORD ~jdobb:{default}:* &jdobb:{default}:* +fcall
          +function|load +evalsha +eval +script|load +ping +select +time +publish +pubsub|numsub
          +subscribe +unsubscribe
          +zrangebyscore +zremrangebyscore +zrange +zrevrange +zadd +zrem +zcard +zcount +hset
          +hget +hmget +hgetall +hdel +hexists +hincrby +sadd +srem +smembers +exists +expire
          +del +set +get +incrby +rename +scan +unlink

    (one line; ``+scan +unlink`` only for :meth:`drop_namespace`; ``+fcall +function|load``
    let it use Redis functions, see below). A password in the URL never appears in logs,
    messages or reprs.

    **Functions.** On Redis 7+ every transition runs as a function of one library, loaded on
    the first call (``FUNCTION LOAD``; named ``jdobb_<digest of its code>``, so two versions of
    this package side by side each load their own). Where that is not possible (an older
    server, a user without ``fcall`` or ``function|load``) the same code runs as scripts
    (``EVALSHA``), a few dozen microseconds slower per call. Libraries of versions no longer
    running may be removed with ``FUNCTION DELETE``.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "default",
        pool_size: int = 4,
        connect_timeout: float = 2.0,
        command_timeout: float = 30.0,
        retry_for: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError(f"namespace must be a non-empty string, not {namespace!r}")
        try:
            self._client = RedisClient.from_url(
                url,
                pool_size=pool_size,
                connect_timeout=connect_timeout,
                command_timeout=command_timeout,
                ssl_context=ssl_context,
                connect_attempts=1,  # the Caller's retry_for is the one retry policy
            )
        except (InvalidRedisURL, ValueError) as exc:
            raise ConfigurationError(str(exc)) from None
        self._ssl_context = ssl_context
        self._retry_for = retry_for
        self._keys = KeyLayout(namespace)
        self._prefix = (self._keys.prefix,)
        self._scripts = load_scripts()
        self._calls = Caller(self._client, retry_for=retry_for, library=self._scripts.library)
        self._notifier = Notifier(
            self._client, self._keys, self._snapshot, patience=retry_for, clock=self.local_now
        )
        self._closed = False
        #: worker_id -> the memo key of its last claim that took jobs (see claim.lua).
        self._memos: dict[str, str] = {}
        #: worker_id -> the jobs handed to it (workers registered here, see :mod:`.handoff`).
        self._inboxes: dict[str, Inbox] = {}

    def __repr__(self) -> str:
        return f"<RedisBackend {self._client.address} namespace={self._keys.namespace!r}>"

    @property
    def namespace(self) -> str:
        """The namespace this backend's keys live in."""
        return self._keys.namespace

    def _clock(self, now: float) -> str:
        """ARGV[1] of a script: the test clock's ``now``, or "read TIME; the caller's now is"."""
        return codec.num(now) if self.test_clock is not None else "~" + codec.num(now)

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosedError("the Redis backend")

    async def _run(self, script: Any, args: list[Any], *, resend: bool = False) -> Any:
        self._check_open()
        return await self._calls.script(script, self._prefix, args, resend_flag=resend)

    async def _set_aside(self, corrupt: codec.CorruptRecord) -> None:
        """Take a job whose record cannot be decoded out of the queue (kept as ``corrupt:<id>``)."""
        log.error(
            "%s; set aside as %s, out of the queue", corrupt, self._keys.corrupt(corrupt.job_id)
        )
        await self._run(self._scripts.setaside, [self._clock(self.local_now()), corrupt.job_id])

    # -- writes ------------------------------------------------------------------------------

    async def enqueue_many(self, records: Sequence[JobRecord], *, now: float) -> list[str]:
        if not records:
            return []
        args = codec.enqueue_args(records, self._clock(now), uuid.uuid4().hex)
        reply = await self._run(self._scripts.enqueue, args, resend=True)
        verdict, rest = reply[0], [item.decode() for item in reply[1:]]
        if verdict == b"duplicate":
            raise DuplicateJobError(rest[0])
        if verdict == b"unknown":
            raise UnknownDependencyError(rest)
        return rest

    async def claim_pending_job(
        self,
        job_types: Sequence[str] | None,
        *,
        limit: int = 1,
        worker_id: str,
        lease: float,
        now: float,
    ) -> list[JobRecord]:
        if limit <= 0:
            return []
        self._check_open()
        inbox = self._inboxes.get(worker_id)
        if inbox:  # jobs handed to this worker: already claimed for it
            return inbox.take(limit)
        records: list[JobRecord] = []
        while len(records) < limit:
            got, corrupt = await self._claim(job_types, limit - len(records), worker_id, lease, now)
            records += got
            for bad in corrupt:
                await self._set_aside(bad)
            if not corrupt:  # else claim again: a corrupt job set aside must not look like "none"
                break
        return records

    async def _claim(
        self,
        job_types: Sequence[str] | None,
        limit: int,
        worker_id: str,
        lease: float,
        now: float,
    ) -> tuple[list[JobRecord], list[codec.CorruptRecord]]:
        types = [-1] if job_types is None else [len(job_types), *job_types]
        token = uuid.uuid4().hex
        # A worker registered here is parked when handlers stay idle (see .handoff); its claims
        # confirm the hand-offs it received since the last one.
        inbox = self._inboxes.get(worker_id)
        park = "" if inbox is None else "1"
        received = [] if inbox is None else inbox.confirm()
        args = [self._clock(now), "0" + token, worker_id, codec.num(lease), limit, park, *types]
        # The replay memo is this call's own key (its claimer and token): two claimers sharing
        # this backend can never read or overwrite each other's. The claimer's previous memo
        # (its call is over: its reply came) is deleted by this call.
        memo = self._keys.claim(f"{worker_id}:{token}")
        previous = self._memos.pop(worker_id, memo)
        keys = (self._keys.prefix, memo, previous)
        try:
            reply = await self._calls.script(
                self._scripts.claim, keys, [*args, *received], resend_flag=True
            )
        except BaseException:
            if inbox is not None:
                inbox.unconfirm(received)
            raise
        if len(reply) > 2:
            self._memos[worker_id] = memo
        records, corrupt = codec.claimed_records(reply, worker_id=worker_id)
        if inbox is not None:
            inbox.delivered(records)
        return records, corrupt

    async def finish(self, outcome: Outcome, *, now: float) -> bool:
        return (await self.finish_many([outcome], now=now))[0]

    async def finish_many(self, outcomes: Sequence[Outcome], *, now: float) -> list[bool]:
        if not outcomes:
            return []
        args = codec.finish_args(outcomes, self._clock(now), uuid.uuid4().hex)
        return [bool(x) for x in await self._run(self._scripts.finish, args, resend=True)]

    async def cancel(self, job_id: str, reason: str | None, *, now: float) -> bool:
        args = [self._clock(now), "0" + uuid.uuid4().hex, job_id, codec.opt(reason)]
        return bool(await self._run(self._scripts.cancel, args, resend=True))

    async def retry(self, job_id: str, *, delay: float, now: float) -> bool:
        args = [self._clock(now), "0" + uuid.uuid4().hex, job_id, codec.num(max(delay, 0.0))]
        return bool(await self._run(self._scripts.retry, args, resend=True))

    async def update_progress(self, update: ProgressUpdate, *, now: float) -> bool:
        return (await self.update_progress_many([update], now=now))[0]

    async def update_progress_many(
        self, updates: Sequence[ProgressUpdate], *, now: float
    ) -> list[bool]:
        if not updates:
            return []
        args = codec.progress_args(updates, self._clock(now))
        return [bool(x) for x in await self._run(self._scripts.progress, args)]

    async def renew(self, lease: Lease, *, duration: float, now: float) -> bool:
        return (await self.renew_many([lease], duration=duration, now=now))[0]

    async def renew_many(
        self, leases: Sequence[Lease], *, duration: float, now: float
    ) -> list[bool]:
        if not leases:
            return []
        args = codec.renew_args(leases, duration, self._clock(now))
        return [bool(x) for x in await self._run(self._scripts.renew, args)]

    async def reclaim_expired(self, *, now: float) -> list[str]:
        args = [self._clock(now), RECLAIM_BATCH]
        return [i.decode() for i in await self._run(self._scripts.reclaim, args)]

    # -- reads -------------------------------------------------------------------------------

    async def get(self, job_id: str, *, now: float) -> JobRecord | None:
        raw = await self._run(self._scripts.get, [self._clock(now), job_id])
        try:
            return codec.decode_record(job_id, raw)
        except codec.CorruptRecord as corrupt:
            await self._set_aside(corrupt)
            return None

    async def list_jobs(
        self,
        status: str | None,
        *,
        job_type: str | None,
        limit: int,
        offset: int,
        now: float,
    ) -> list[JobRecord]:
        args = [self._clock(now), codec.opt(status), codec.opt(job_type), limit, offset]
        records, corrupt = codec.decode_records(await self._run(self._scripts.list, args))
        for bad in corrupt:
            await self._set_aside(bad)
        return records

    async def stats(self, *, now: float) -> QueueStats:
        counts = await self._run(self._scripts.stats, [self._clock(now)])
        return QueueStats(**dict(zip(_STAT_FIELDS, counts, strict=True)))

    async def purge(
        self,
        statuses: Iterable[str],
        *,
        before: float | None,
        job_type: str | None,
        now: float,
    ) -> int:
        deleted = 0
        due = "" if before is None else codec.opt(codec.num(before))
        ceiling: str | None = None  # read by the first call: jobs ending later are not purged
        for status in dict.fromkeys(statuses):
            cursor = "-inf"
            while cursor:
                args = [
                    self._clock(now),
                    status,
                    due,
                    codec.opt(job_type),
                    PURGE_BATCH,
                    cursor,
                    codec.opt(ceiling),
                ]
                count, last, top = await self._run(self._scripts.purge, args)
                deleted += count
                cursor, ceiling = last.decode(), top.decode()
        return deleted

    async def next_due(self, job_types: Sequence[str] | None, *, now: float) -> float | None:
        # The earliest of every type: waking early for another type's job is harmless.
        due, store_now = await self._run(self._scripts.next_due, [self._clock(now)])
        if due is None:
            return None
        # On the caller's timeline: a worker whose clock is off still sleeps the right amount
        # (clocks within CLOCK_TOLERANCE agree, as in lib.lua's to_store).
        skew = float(store_now) - now
        return float(due) if abs(skew) <= CLOCK_TOLERANCE else float(due) - skew

    # -- notifications -----------------------------------------------------------------------

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[Notice]]:
        return self._notifier.listen()

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[AsyncIterator[UpdateRecord]]:
        return self._notifier.subscribe(job_id)

    async def publish(self, update: UpdateRecord) -> None:
        self._check_open()
        channel = self._keys.updates(update.job_id)
        await self._calls.command("PUBLISH", channel, codec.encode_json(update))

    # -- the worker registry (shared by every process on this server) -------------------------

    async def register_worker(self, worker: WorkerRecord, *, now: float) -> None:
        record = msgspec.structs.replace(worker, heartbeat_at=0.0)
        args = [self._clock(now), "register", worker.id, msgspec.json.encode(record)]
        await self._listen_for_handoffs(worker.id)
        await self._run(self._scripts.workers, args)

    async def _listen_for_handoffs(self, worker_id: str) -> None:
        """A registered worker runs a claimer, which comes back for what it is handed: listen
        on its channel (before its first claim, which may park it)."""
        channel = self._keys.handoff(worker_id)
        if self._notifier.attached(channel):
            return
        inbox = self._inboxes.setdefault(worker_id, Inbox())

        def receive(data: bytes) -> None:
            try:
                inbox.offer(codec.handed_records(data))
            except codec.CorruptRecord as exc:
                # Not confirmed, so the worker's next claim hands them out again one by one.
                log.error("ignored an undecodable hand-off for %s: %s", worker_id, exc)

        self._check_open()
        await self._notifier.attach(channel, receive)

    async def remove_worker(self, worker_id: str) -> None:
        received: list[str] = []
        inbox = self._inboxes.pop(worker_id, None)
        if inbox is not None:
            # Jobs handed but not taken are handed back by the script below.
            await self._notifier.detach(self._keys.handoff(worker_id))
            received = inbox.confirm()
        args = [self._clock(self.local_now()), "remove", worker_id, *received]
        await self._run(self._scripts.workers, args)

    async def list_workers(self, *, now: float) -> list[WorkerRecord]:
        reply = await self._run(self._scripts.workers, [self._clock(now), "list"])
        found: list[WorkerRecord] = []
        for at in range(0, len(reply), 3):
            try:
                record = _decode_worker(reply[at + 1])
            except msgspec.DecodeError:
                log.error("an undecodable worker registry entry %r was skipped", reply[at])
                continue
            record.heartbeat_at = float(reply[at + 2])
            found.append(record)
        return sorted(found, key=lambda w: (w.started_at, w.id))

    async def _snapshot(self, job_id: str) -> UpdateRecord | None:
        record = await self.get(job_id, now=self.local_now())
        return None if record is None else record_update(record)

    # -- lifecycle ---------------------------------------------------------------------------

    async def drop_namespace(self) -> None:
        """Delete every key of this namespace (``SCAN`` + ``UNLINK``; never ``FLUSHDB``).

        For tests and for retiring a namespace: jobs, indexes, counters, all of it. Works on a
        closed backend too (on a connection of its own).
        """
        if not self._closed:
            await self._drop_keys(self._calls)
            return
        client = RedisClient(self._client.address, pool_size=1, ssl_context=self._ssl_context)
        try:
            await self._drop_keys(Caller(client, retry_for=self._retry_for))
        finally:
            await client.aclose()

    async def _drop_keys(self, calls: Caller) -> None:
        cursor = b"0"
        while True:
            cursor, keys = await calls.command(
                "SCAN", cursor, "MATCH", self._keys.match_all, "COUNT", 1000
            )
            for start in range(0, len(keys), DROP_BATCH):
                await calls.command("UNLINK", *keys[start : start + DROP_BATCH])
            if cursor == b"0":
                return

    async def aclose(self) -> None:
        """Close the pub/sub connection and the pool; later calls raise
        :class:`~jdobb_async_queue.QueueClosedError`."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._notifier.aclose()
            await self._client.aclose()
