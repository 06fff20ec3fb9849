"""The Redis backend at the edges of issue 12, against the real redis-server, asyncio and trio.

The store's clock (server ``TIME``; two backends whose ``now`` is 10 minutes off), lost jobs and
``max_lost``, update sequence numbers, ``gone`` updates, fenced cancel notices, a backend used
from successive event loops, calls on a closed backend, claim replay per claimer, a queue that
never connected, passwords kept out of messages, an ACL user limited to its namespace, TLS with a
test CA, and corrupt job hashes.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

from jdobb_async_queue import (
    BackendUnavailable,
    JobContext,
    JobQueue,
    JobStatus,
    QueueClosedError,
    Worker,
)
from jdobb_async_queue._policy import lost_error
from jdobb_async_queue._records import Lease, Outcome, ProgressUpdate
from jdobb_async_queue.backends.base import Notice
from jdobb_async_queue.backends.redis import RedisBackend
from jdobb_async_queue.backends.redis.resp import RedisClient, RedisConnectionError
from jdobb_async_queue.testing import MockClock

from .._redis_server import RedisServer, free_port

WAIT = 10.0
SKEW = 600.0


@pytest.fixture
def namespace() -> str:
    return f"test-edges-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[RedisClient]:
    async with RedisClient.from_url(redis_url) as client:
        yield client


@pytest.fixture
async def backends(redis_url: str, namespace: str) -> AsyncIterator[Callable[..., RedisBackend]]:
    """RedisBackends in the test's namespace on the session server (no test clock: server
    TIME), all closed and the namespace dropped at the end."""
    made: list[RedisBackend] = []

    def make(**kwargs: Any) -> RedisBackend:
        backend = RedisBackend(redis_url, namespace=namespace, **kwargs)
        made.append(backend)
        return backend

    yield make
    if made:
        await made[0].drop_namespace()
    for backend in made:
        await backend.aclose()


def _record(job_id: str | None = None, **options: Any) -> Any:
    from jdobb_async_queue._jobspec import build_record

    options = {"job_id": job_id or uuid.uuid4().hex, **options}
    return build_record("t", {}, options, now=time.time(), default_ttl=None)


# -- the store's clock --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_skewed_hosts_neither_reclaim_nor_retry_early_nor_drop_updates(
    backends: Callable[..., RedisBackend],
) -> None:
    ahead, behind = backends(), backends()
    producer = backends()

    def later() -> float:
        return time.time() + SKEW

    def earlier() -> float:
        return time.time() - SKEW

    [job_id] = await producer.enqueue_many([_record()], now=time.time())
    async with behind.subscribe(job_id) as updates:
        # A host 10 min behind claims with a 2 s lease; one 10 min ahead must not reclaim it.
        [claimed] = await behind.claim_pending_job(
            None, worker_id="w-behind", lease=2.0, now=earlier()
        )
        assert abs(claimed.lease_expires_at - (time.time() + 2.0)) < 1.0  # type: ignore[operator]
        assert await ahead.reclaim_expired(now=later()) == []
        assert await behind.renew(
            Lease(job_id=job_id, fence=claimed.fence), duration=2, now=earlier()
        )
        # Its retry, 30 s after the server's now, is not claimable by the host ahead.
        retry = Outcome(job_id=job_id, kind="retry", fence=claimed.fence, error="x", delay=30.0)
        assert await behind.finish(retry, now=earlier())
        assert await ahead.claim_pending_job(None, worker_id="w-ahead", lease=5, now=later()) == []
        record = await ahead.get(job_id, now=later())
        assert record is not None and record.status == "pending"
        assert abs(record.execute_at - (time.time() + 30)) < 2  # type: ignore[operator]
        # next_due answers on each caller's timeline.
        due_ahead = await ahead.next_due(None, now=later())
        due_behind = await behind.next_due(None, now=earlier())
        assert due_ahead is not None and due_behind is not None
        assert abs(due_ahead - later() - 30) < 2 and abs(due_behind - earlier() - 30) < 2
        seen = []
        with anyio.fail_after(WAIT):
            async for update in updates:
                seen.append(update)
                if update.status == "pending":
                    break
        assert [u.status for u in seen] == ["processing", "pending"]
        assert seen[0].update_seq < seen[1].update_seq


@pytest.mark.anyio
async def test_caller_times_move_onto_the_server_clock(
    backends: Callable[..., RedisBackend],
) -> None:
    ahead = backends()
    caller_now = time.time() + SKEW
    record = _record()
    record.execute_at = caller_now + 60
    [job_id] = await ahead.enqueue_many([record], now=caller_now)
    stored = await ahead.get(job_id, now=caller_now)
    assert stored is not None and stored.execute_at is not None
    assert abs(stored.execute_at - (time.time() + 60)) < 2  # not 10 min late
    # purge's `before` on the caller's clock: a job that ended just now did not end 5 s ago.
    [done_id] = await ahead.enqueue_many([_record()], now=caller_now)
    [r] = await ahead.claim_pending_job(None, worker_id="w", lease=5, now=caller_now)
    assert r.id == done_id
    assert await ahead.finish(Outcome(job_id=done_id, kind="complete"), now=caller_now)
    purge = ahead.purge
    assert await purge(["complete"], before=caller_now - 5, job_type=None, now=caller_now) == 0
    assert await purge(["complete"], before=caller_now + 5, job_type=None, now=caller_now) == 1


@pytest.mark.anyio
async def test_finish_applies_release_and_retry_kinds(
    backends: Callable[..., RedisBackend],
) -> None:
    backend = backends()
    [job_id] = await backend.enqueue_many([_record()], now=time.time())
    [r] = await backend.claim_pending_job(None, worker_id="w", lease=30, now=time.time())
    assert await backend.update_progress(
        ProgressUpdate(job_id=job_id, progress=0.5, message="half"), now=time.time()
    )
    assert await backend.finish(Outcome(job_id=job_id, kind="release", fence=r.fence), now=0)
    got = await backend.get(job_id, now=time.time())
    assert got is not None
    assert (got.status, got.attempts, got.progress, got.message, got.started_at) == (
        "pending",
        0,
        0.0,
        None,
        None,
    )
    # Each stored change bumped update_seq: enqueue 1, claim 2, progress 3, release 4.
    assert got.update_seq == 4
    [r] = await backend.claim_pending_job(None, worker_id="w", lease=30, now=time.time())
    outcome = Outcome(job_id=job_id, kind="retry", fence=r.fence, error="boom", delay=100)
    assert await backend.finish(outcome, now=time.time())
    got = await backend.get(job_id, now=time.time())
    assert got is not None and got.status == "pending" and got.error == "boom"
    assert abs(got.execute_at - time.time() - 100) < 2  # type: ignore[operator]


# -- lost jobs ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_job_lost_past_max_lost_fails(redis_url: str, namespace: str) -> None:
    clock = MockClock()
    async with JobQueue(backend="redis", url=redis_url, namespace=namespace, clock=clock) as q:
        backend = q.backend
        assert isinstance(backend, RedisBackend)
        try:
            job_id = await q.enqueue("t", max_lost=1)
            for lost in (1, 2):
                assert await q.claim(lease=5) is not None
                clock.advance(10)
                assert await backend.reclaim_expired(now=clock()) == [job_id]
                job = await q.get(job_id)
                assert job is not None
                if lost == 1:
                    assert job.status is JobStatus.PENDING
                    record = await backend.get(job_id, now=clock())
                    assert record is not None and record.lost == 1 and record.max_lost == 1
            assert job.status is JobStatus.FAILED
            assert job.error == lost_error(2)
            assert await q.retry(job_id)
            record = await backend.get(job_id, now=clock())
            assert record is not None and record.lost == 0 and record.attempts == 0
        finally:
            await backend.drop_namespace()


@pytest.mark.anyio
async def test_a_job_stored_before_the_new_fields_reads_as_defaults(
    backends: Callable[..., RedisBackend], admin: RedisClient
) -> None:
    backend = backends()
    [job_id] = await backend.enqueue_many([_record()], now=time.time())
    key = backend._keys.job(job_id)
    await admin.execute("HDEL", key, "lost", "max_lost", "update_seq")
    record = await backend.get(job_id, now=time.time())
    assert record is not None and (record.lost, record.max_lost, record.update_seq) == (0, 5, 0)
    [claimed] = await backend.claim_pending_job(None, worker_id="w", lease=30, now=time.time())
    assert (claimed.lost, claimed.max_lost, claimed.update_seq) == (0, 5, 1)


# -- gone, fenced notices -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_purged_job_ends_its_subscription_with_gone(
    backends: Callable[..., RedisBackend],
) -> None:
    backend = backends()
    [job_id] = await backend.enqueue_many([_record()], now=time.time())
    [r] = await backend.claim_pending_job(None, worker_id="w", lease=30, now=time.time())
    async with backend.subscribe(job_id) as updates:
        assert await backend.finish(Outcome(job_id=job_id, kind="complete", fence=r.fence), now=0)
        assert await backend.purge(["complete"], before=None, job_type=None, now=time.time()) == 1
        seen = []
        with anyio.fail_after(WAIT):
            seen = [u async for u in updates]
    assert [(u.status, u.gone) for u in seen] == [("complete", False), ("cancelled", True)]


@pytest.mark.anyio
async def test_a_job_deleted_during_an_outage_is_gone_on_resync(
    backends: Callable[..., RedisBackend], admin: RedisClient
) -> None:
    backend = backends()
    [job_id] = await backend.enqueue_many([_record()], now=time.time())
    async with backend.subscribe(job_id) as updates:
        # The pub/sub connection drops; the job is deleted before it comes back.
        await admin.execute("DEL", backend._keys.job(job_id))
        await admin.execute("CLIENT", "KILL", "TYPE", "pubsub")
        with anyio.fail_after(WAIT):
            seen = [u async for u in updates]
    assert [u.gone for u in seen] == [True]


@pytest.mark.anyio
async def test_a_cancel_notice_carries_the_fence(backends: Callable[..., RedisBackend]) -> None:
    backend = backends()
    [job_id] = await backend.enqueue_many([_record()], now=time.time())
    async with backend.listen() as notices:
        [r] = await backend.claim_pending_job(None, worker_id="w", lease=30, now=time.time())
        assert await backend.cancel(job_id, "stop", now=time.time())
        with anyio.fail_after(WAIT):
            async for notice in notices:
                if notice.kind == "cancel":
                    break
    assert notice == Notice("cancel", job_id, r.fence)


# -- successive event loops, closing ------------------------------------------------------------


def test_one_queue_from_successive_event_loops(redis_url: str) -> None:
    namespace = f"test-loops-{uuid.uuid4().hex[:8]}"
    queue = JobQueue(backend="redis", url=redis_url, namespace=namespace)
    done: list[str] = []

    async def use() -> None:
        with anyio.fail_after(WAIT):
            job_id = await queue.enqueue("t")
            worker = Worker(queue, poll_interval=0.2)

            @worker.handler("t")
            async def handle(ctx: JobContext) -> None:
                done.append(ctx.id)

            await worker.run(burst=True)
            job = await queue.get(job_id)
            assert job is not None and job.status is JobStatus.COMPLETE

    async def finish() -> None:
        await use()
        backend = queue.backend
        assert isinstance(backend, RedisBackend)
        await backend.drop_namespace()
        await queue.close()

    anyio.run(use, backend="asyncio")
    anyio.run(use, backend="trio")
    anyio.run(use, backend="asyncio")
    anyio.run(finish, backend="trio")
    assert len(done) == 4


def test_close_from_a_later_event_loop(redis_url: str) -> None:
    queue = JobQueue(backend="redis", url=redis_url, namespace=f"test-{uuid.uuid4().hex[:8]}")

    async def use() -> None:
        with anyio.fail_after(WAIT):
            await queue.stats()

    async def close() -> None:
        with anyio.fail_after(WAIT):
            await queue.close()

    anyio.run(use, backend="trio")
    anyio.run(close, backend="asyncio")


@pytest.mark.anyio
async def test_calls_on_a_closed_backend_raise_at_once(
    backends: Callable[..., RedisBackend],
) -> None:
    backend = backends(retry_for=30)
    await backend.stats(now=time.time())
    await backend.aclose()
    with anyio.fail_after(1):
        for call in (
            backend.stats(now=time.time()),
            backend.get("x", now=time.time()),
            backend.claim_pending_job(None, worker_id="w", lease=1, now=time.time()),
            backend.enqueue_many([_record()], now=time.time()),
        ):
            with pytest.raises(QueueClosedError):
                await call


# -- claim replay per claimer -------------------------------------------------------------------


class _LosesReply:
    """The transport hook: the first claim by ``victim`` runs on the server, then, before its
    reply is handed back, ``meanwhile`` runs (another claimer on the same backend); then the
    reply is lost as if the connection broke."""

    def __init__(self, client: RedisClient, script: Any, victim: str, meanwhile: Any) -> None:
        self._client = client
        self._script = script
        self._victim = victim
        self._meanwhile = meanwhile
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def evalsha(self, script: Any, keys: Any, args: Any, **kwargs: Any) -> Any:
        reply = await self._client.evalsha(script, keys, args, **kwargs)
        return await self._lose(script is self._script, args, reply)

    async def fcall(self, library: Any, function: str, keys: Any, args: Any, **kw: Any) -> Any:
        reply = await self._client.fcall(library, function, keys, args, **kw)
        return await self._lose(function == self._script.function, args, reply)

    async def _lose(self, mine: bool, args: Any, reply: Any) -> Any:
        if mine and args[2] == self._victim and not self.lost:
            self.lost += 1
            await self._meanwhile()
            raise RedisConnectionError("lost the connection before the reply (transport hook)")
        return reply


@pytest.mark.anyio
async def test_a_resent_claim_never_strands_jobs_beside_another_claimer(
    backends: Callable[..., RedisBackend],
) -> None:
    backend = backends()
    ids = await backend.enqueue_many([_record() for _ in range(4)], now=time.time())
    other: list[Any] = []

    async def other_claimer() -> None:
        other.extend(
            await backend.claim_pending_job(None, limit=2, worker_id="B", lease=30, now=time.time())
        )

    hook = _LosesReply(backend._client, backend._scripts.claim, "A", other_claimer)
    backend._calls._client = hook  # type: ignore[assignment]
    mine = await backend.claim_pending_job(None, limit=2, worker_id="A", lease=30, now=time.time())
    assert hook.lost == 1
    assert sorted(r.id for r in mine + other) == sorted(ids)  # every PROCESSING job is known
    assert {r.worker_id for r in mine} == {"A"}
    stats = await backend.stats(now=time.time())
    assert stats.processing == 4


# -- connecting, secrets, ACL, TLS --------------------------------------------------------------


@pytest.mark.anyio
async def test_a_queue_that_never_connected_fails_fast(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    backend = RedisBackend(f"redis://user:hunter2secret@127.0.0.1:{port}/0", retry_for=30)
    started = time.monotonic()
    with (
        caplog.at_level(logging.DEBUG),
        anyio.fail_after(WAIT),
        pytest.raises(BackendUnavailable) as info,
    ):
        await backend.stats(now=time.time())
    assert time.monotonic() - started < 3  # not retry_for = 30
    message = str(info.value)
    assert "127.0.0.1" in message and str(port) in message
    for text in (message, repr(info.value), repr(backend), caplog.text, repr(info.value.__cause__)):
        assert "hunter2secret" not in text
    await backend.aclose()


@pytest.fixture
def tls_server() -> Iterator[tuple[RedisServer, Any]]:
    trustme = pytest.importorskip("trustme")
    probe = subprocess.run(
        [shutil.which("redis-server") or "redis-server", "--tls-port", "0", "--test-memory", "1"],
        capture_output=True,
        check=False,
    )
    if (
        b"tls-port" in probe.stdout + probe.stderr
        and b"Bad directive" in probe.stdout + probe.stderr
    ):
        pytest.skip("the installed redis-server was built without TLS (--tls-port)")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = RedisServer()
    d = server.directory
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    tls_port = free_port()
    server.extra_args = (
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(d / "cert.pem"),
        "--tls-key-file",
        str(d / "key.pem"),
        "--tls-ca-cert-file",
        str(d / "ca.pem"),
        "--tls-auth-clients",
        "no",
    )
    server.start()
    server.tls_port = tls_port  # type: ignore[attr-defined]
    try:
        yield server, ca
    finally:
        server.close()


@pytest.mark.anyio
async def test_rediss_with_a_test_ca(tls_server: tuple[RedisServer, Any]) -> None:
    server, ca = tls_server
    import ssl

    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = f"rediss://127.0.0.1:{server.tls_port}/0"  # type: ignore[attr-defined]
    backend = RedisBackend(url, namespace="tls", ssl_context=context)
    try:
        with anyio.fail_after(WAIT):
            [job_id] = await backend.enqueue_many([_record()], now=time.time())
            assert await backend.get(job_id, now=time.time()) is not None
            await backend.drop_namespace()
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_a_worker_round_trip_as_an_acl_user_limited_to_the_namespace(
    redis_url: str, admin: RedisClient, namespace: str
) -> None:
    from jdobb_async_queue.backends.redis import acl_rule

    user, password = f"jdobb-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    await admin.execute("ACL", "SETUSER", *acl_rule(user, password, namespace).split())
    host = redis_url.split("://", 1)[1].split("/", 1)[0]
    url = f"redis://{user}:{password}@{host}/0"
    try:
        async with JobQueue(backend="redis", url=url, namespace=namespace) as queue:
            backend = queue.backend
            assert isinstance(backend, RedisBackend)
            assert password not in repr(backend)
            worker = Worker(queue, poll_interval=0.2)
            done = anyio.Event()

            @worker.handler("t")
            async def handle(ctx: JobContext) -> dict[str, int]:
                await ctx.update(0.5, "half")
                done.set()
                return {"ok": 1}

            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(worker.run)
                    job_id = await queue.enqueue("t")
                    await done.wait()
                    while (job := await queue.get(job_id)) and job.status is not JobStatus.COMPLETE:
                        await anyio.sleep(0.02)
                    await queue.cancel(await queue.enqueue("t", delay=60))
                    await queue.list_jobs(limit=None)
                    await queue.purge(["complete", "cancelled"])
                    await worker.stop()
            # Other namespaces' keys are out of reach.
            other = RedisClient.from_url(url)
            try:
                with pytest.raises(Exception, match="NOPERM"):
                    await other.execute("GET", "jdobb:{elsewhere}:seq")
            finally:
                await other.aclose()
            await backend.drop_namespace()
    finally:
        await admin.execute("ACL", "DELUSER", user)


# -- corrupt records ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_corrupt_job_hash_is_set_aside(
    redis_url: str, admin: RedisClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with JobQueue(backend="redis", url=redis_url, namespace=namespace) as queue:
        backend = queue.backend
        assert isinstance(backend, RedisBackend)
        try:
            bad, listed, claimed_bad, good = [await queue.enqueue("t") for _ in range(4)]
            for job_id in (bad, listed):
                await admin.execute("HSET", backend._keys.job(job_id), "spec", b"{not json")
            with caplog.at_level(logging.ERROR, logger="jdobb_async_queue.backend"):
                assert await queue.get(bad) is None
                assert [j.id for j in await queue.list_jobs("pending")] == [claimed_bad, good]
                await admin.execute("HSET", backend._keys.job(claimed_bad), "spec", b"[1,")
                worker = Worker(queue, poll_interval=0.1)
                ran: list[str] = []

                @worker.handler("t")
                async def handle(ctx: JobContext) -> None:
                    ran.append(ctx.id)

                with anyio.fail_after(WAIT):
                    await worker.run(burst=True)
            assert ran == [good]
            assert "corrupt" in caplog.text and bad in caplog.text
            for job_id in (bad, listed, claimed_bad):
                assert await admin.execute("EXISTS", backend._keys.corrupt(job_id)) == 1
                assert await queue.get(job_id) is None
            assert (await queue.stats()).pending == 0
        finally:
            await backend.drop_namespace()


@pytest.mark.anyio
async def test_a_subscriber_of_a_corrupt_job_gets_gone(
    backends: Callable[..., RedisBackend], admin: RedisClient
) -> None:
    backend = backends()
    [job_id] = await backend.enqueue_many([_record()], now=time.time())
    async with backend.subscribe(job_id) as updates:
        await admin.execute("HSET", backend._keys.job(job_id), "spec", b"{broken")
        assert await backend.list_jobs(None, job_type=None, limit=10, offset=0, now=0) == []
        with anyio.fail_after(WAIT):
            seen = [u async for u in updates]
    assert [u.gone for u in seen] == [True]
