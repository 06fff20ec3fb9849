"""The Redis backend: jobs in Redis hashes, every transition one Lua script.

See :mod:`.keys` for the key layout, ``backends/lua/`` for the scripts, :mod:`.notify` for
pub/sub (wake-ups, cancellations, job updates) and :mod:`.calls` for error mapping and retries.
Nothing connects before the first call, so a backend can be made outside async code.
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from ..._errors import ConfigurationError, DuplicateJobError, UnknownDependencyError
from ..._models import QueueStats
from ..._records import JobRecord, Lease, Outcome, ProgressUpdate, UpdateRecord, record_update
from .._resp import InvalidRedisURL, RedisClient, RedisTransportError
from ..base import Notice, QueueBackend
from . import codec
from .calls import Caller
from .keys import KeyLayout
from .notify import Notifier
from .scripts import load_scripts

__all__ = ["RedisBackend"]

#: Jobs one ``reclaim_expired`` call sends back at most (the next call takes the rest).
RECLAIM_BATCH = 1000
#: Jobs one purge script examines at most, so a large purge never blocks Redis for long.
PURGE_BATCH = 2000
#: Keys deleted per ``UNLINK`` by :meth:`RedisBackend.drop_namespace`.
DROP_BATCH = 500
_STAT_FIELDS = ("pending", "processing", "complete", "failed", "cancelled", "scheduled", "waiting")


class RedisBackend(QueueBackend):
    """Jobs in a Redis server, shared by any number of processes and hosts.

    :param url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
        ``unix://[[user]:password@]/path/to.sock[?db=N]``
    :param namespace: isolates queues sharing one server (every key starts
        ``jdobb:{<namespace>}:``)
    :param pool_size: connections for commands (concurrent calls beyond that are pipelined);
        pub/sub takes one more
    :param connect_timeout: seconds for one connection attempt
    :param command_timeout: seconds to wait for one reply
    :param retry_for: seconds to keep retrying through an outage before
        :class:`~jdobb_async_queue.BackendUnavailable`
    :param ssl_context: for ``rediss://`` (default: the system's trusted CAs)
    :raises ConfigurationError: for a URL that cannot be parsed or bad options
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "default",
        pool_size: int = 4,
        connect_timeout: float = 5.0,
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
        self._keys = KeyLayout(namespace)
        self._prefix = (self._keys.prefix,)
        self._claim_memo = self._keys.claim(uuid.uuid4().hex)
        self._scripts = load_scripts()
        self._calls = Caller(self._client, retry_for=retry_for)
        self._notifier = Notifier(self._client, self._keys, self._snapshot, patience=retry_for)
        self._claimed = False

    def __repr__(self) -> str:
        return f"<RedisBackend {self._client.address} namespace={self._keys.namespace!r}>"

    @property
    def namespace(self) -> str:
        """The namespace this backend's keys live in."""
        return self._keys.namespace

    async def _run(self, script: Any, args: list[Any], *, resend: bool = False) -> Any:
        return await self._calls.script(script, self._prefix, args, resend_flag=resend)

    # -- writes ------------------------------------------------------------------------------

    async def enqueue_many(self, records: Sequence[JobRecord], *, now: float) -> list[str]:
        if not records:
            return []
        args = codec.enqueue_args(records, now)
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
        types = [-1] if job_types is None else [len(job_types), *job_types]
        token = uuid.uuid4().hex
        start, until = codec.num(now), codec.num(now + lease)
        args = [start, "0", worker_id, until, limit, token, *types]
        keys = (self._keys.prefix, self._claim_memo)
        self._claimed = True
        reply = await self._calls.script(self._scripts.claim, keys, args, resend_flag=True)
        return codec.claimed_records(reply, worker_id=worker_id, now=start, lease_until=until)

    async def finish(self, outcome: Outcome, *, now: float) -> bool:
        return (await self.finish_many([outcome], now=now))[0]

    async def finish_many(self, outcomes: Sequence[Outcome], *, now: float) -> list[bool]:
        if not outcomes:
            return []
        args = codec.finish_args(outcomes, now)
        return [bool(x) for x in await self._run(self._scripts.finish, args, resend=True)]

    async def cancel(self, job_id: str, reason: str | None, *, now: float) -> bool:
        args = [codec.num(now), "0", job_id, codec.opt(reason)]
        return bool(await self._run(self._scripts.cancel, args, resend=True))

    async def retry(self, job_id: str, *, delay: float, now: float) -> bool:
        due = codec.opt(codec.num(now + delay)) if delay > 0 else ""
        args = [codec.num(now), "0", job_id, due]
        return bool(await self._run(self._scripts.retry, args, resend=True))

    async def update_progress(self, update: ProgressUpdate, *, now: float) -> bool:
        return (await self.update_progress_many([update], now=now))[0]

    async def update_progress_many(
        self, updates: Sequence[ProgressUpdate], *, now: float
    ) -> list[bool]:
        if not updates:
            return []
        args = codec.progress_args(updates, now)
        return [bool(x) for x in await self._run(self._scripts.progress, args)]

    async def renew(self, lease: Lease, *, duration: float, now: float) -> bool:
        return (await self.renew_many([lease], duration=duration, now=now))[0]

    async def renew_many(
        self, leases: Sequence[Lease], *, duration: float, now: float
    ) -> list[bool]:
        if not leases:
            return []
        args = codec.renew_args(leases, now + duration, now)
        return [bool(x) for x in await self._run(self._scripts.renew, args)]

    async def reclaim_expired(self, *, now: float) -> list[str]:
        args = [codec.num(now), RECLAIM_BATCH]
        return [i.decode() for i in await self._run(self._scripts.reclaim, args)]

    # -- reads -------------------------------------------------------------------------------

    async def get(self, job_id: str, *, now: float) -> JobRecord | None:
        raw = await self._run(self._scripts.get, [codec.num(now), job_id])
        return codec.decode_record(raw)

    async def list_jobs(
        self,
        status: str | None,
        *,
        job_type: str | None,
        limit: int,
        offset: int,
        now: float,
    ) -> list[JobRecord]:
        args = [codec.num(now), codec.opt(status), codec.opt(job_type), limit, offset]
        return codec.decode_records(await self._run(self._scripts.list, args))

    async def stats(self, *, now: float) -> QueueStats:
        counts = await self._run(self._scripts.stats, [codec.num(now)])
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
                    codec.num(now),
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
        reply = await self._calls.command(
            "ZRANGEBYSCORE",
            self._keys.scheduled(),
            f"({codec.num(now)}",
            "+inf",
            "WITHSCORES",
            "LIMIT",
            0,
            1,
        )
        return float(reply[1]) if reply else None

    # -- notifications -----------------------------------------------------------------------

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[Notice]]:
        return self._notifier.listen()

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[AsyncIterator[UpdateRecord]]:
        return self._notifier.subscribe(job_id)

    async def publish(self, update: UpdateRecord) -> None:
        channel = self._keys.updates(update.job_id)
        await self._calls.command("PUBLISH", channel, codec.encode_json(update))

    async def _snapshot(self, job_id: str) -> UpdateRecord | None:
        record = await self.get(job_id, now=time.time())
        return None if record is None else record_update(record)

    # -- lifecycle ---------------------------------------------------------------------------

    async def drop_namespace(self) -> None:
        """Delete every key of this namespace (``SCAN`` + ``UNLINK``; never ``FLUSHDB``).

        For tests and for retiring a namespace: jobs, indexes, counters, all of it.
        """
        cursor = b"0"
        while True:
            cursor, keys = await self._calls.command(
                "SCAN", cursor, "MATCH", self._keys.match_all, "COUNT", 1000
            )
            for start in range(0, len(keys), DROP_BATCH):
                await self._calls.command("UNLINK", *keys[start : start + DROP_BATCH])
            if cursor == b"0":
                return

    async def aclose(self) -> None:
        """Close the pub/sub connection and the pool (forgetting this instance's claim memo)."""
        with anyio.CancelScope(shield=True):
            await self._notifier.aclose()
            if self._claimed:
                with anyio.move_on_after(1):
                    try:
                        await self._client.execute("DEL", self._claim_memo)
                    except RedisTransportError:  # best effort: the memo expires anyway
                        pass
            await self._client.aclose()
