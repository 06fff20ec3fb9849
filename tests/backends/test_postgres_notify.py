"""PostgreSQL notifications at their edges: payload sizes in bytes, a burst of wake-ups, a
LISTEN connection the server drops, the updates channel subscribers LISTEN to."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import anyio.lowlevel
import psycopg
import pytest
from psycopg import sql

from jdobb_async_queue import Broadcaster, JobQueue, JobStatus
from jdobb_async_queue.backends import Notice, Outcome
from jdobb_async_queue.backends.postgres import PostgresBackend
from jdobb_async_queue.backends.postgres.notify import MAILBOX_SIZE, Mailbox
from jdobb_async_queue.backends.postgres.store import updates_channel

pytestmark = pytest.mark.anyio

WAIT = 10.0


@pytest.fixture
async def backend(pg_url: str) -> AsyncIterator[PostgresBackend]:
    b = PostgresBackend(pg_url, namespace=f"notify-{uuid.uuid4().hex[:10]}")
    try:
        yield b
    finally:
        await b.drop_namespace()
        await b.aclose()


async def test_a_claim_of_many_long_non_ascii_ids_goes_through(backend: PostgresBackend) -> None:
    """Its NOTIFY payload is over 8000 bytes though under 8000 characters: it is sent as '*'."""
    queue = JobQueue(backend=backend)
    ids = [f"{i:03d}" + "漢字" * 24 for i in range(100)]  # ~150 bytes each
    await queue.enqueue_many([{"job_type": "t", "job_id": job_id} for job_id in ids])
    claimed = await backend.claim_pending_job(None, limit=100, worker_id="w", lease=30, now=0)
    assert sorted(r.id for r in claimed) == sorted(ids)


def test_a_burst_of_wake_ups_never_pushes_a_cancel_out() -> None:
    box: Mailbox[Notice] = Mailbox()
    box.put(Notice("cancel", "victim", 1))
    for _ in range(MAILBOX_SIZE * 2):
        box.put(Notice("jobs"))
    assert list(box.items) == [Notice("cancel", "victim", 1), Notice("jobs")]


async def test_notices_sent_while_listen_reconnects_are_not_lost(
    backend: PostgresBackend, pg_url: str
) -> None:
    """The server drops the LISTEN connection (pg_terminate_backend): once it is back, the
    listener is told to claim again, whatever was sent meanwhile."""
    queue = JobQueue(backend=backend)
    await queue.stats()  # the schema exists
    async with backend.listen() as notices:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            (killed,) = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query ILIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
                " AND query LIKE %s",
                (f"%{backend.schema}%",),
            ).fetchone() or (0,)
            assert killed == 1
        with anyio.fail_after(WAIT):
            notice = await anext(notices)
        assert notice == Notice("jobs")


# -- the updates channel: LISTENed to only while there are subscribers ----------------------


def _payloads(conn: psycopg.Connection[Any]) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=0.3)]


async def test_updates_go_to_their_own_channel_and_wake_ups_to_the_workers(
    backend: PostgresBackend, pg_url: str
) -> None:
    """A claim and a completion tell subscribers on the updates channel; workers, on the
    namespace's channel, hear only wake-ups and cancels."""
    queue = JobQueue(backend=backend)
    await queue.stats()  # the schema exists
    with (
        psycopg.connect(pg_url, autocommit=True) as workers,
        psycopg.connect(pg_url, autocommit=True) as watchers,
    ):
        workers.execute(sql.SQL("LISTEN {}").format(sql.Identifier(backend.schema)))
        watchers.execute(
            sql.SQL("LISTEN {}").format(sql.Identifier(updates_channel(backend.schema)))
        )
        job_id = await queue.enqueue("t")
        (claimed,) = await backend.claim_pending_job(
            None, limit=1, worker_id="w", lease=30, now=queue.clock()
        )
        done = Outcome(job_id=job_id, kind="complete", fence=claimed.fence)
        assert await backend.finish_many([done], now=queue.clock()) == [True]
        to_workers = await anyio.to_thread.run_sync(_payloads, workers)
        to_watchers = await anyio.to_thread.run_sync(_payloads, watchers)
    assert to_workers == ["j"]
    assert len(to_watchers) == 2  # the claim, the completion
    assert all(p.startswith("u ") and job_id in p for p in to_watchers), to_watchers


async def test_a_subscriber_follows_jobs_changed_elsewhere_each_time_it_comes_back(
    backend: PostgresBackend, pg_url: str
) -> None:
    """The first subscriber LISTENs, the last one's leaving UNLISTENs: a later subscriber
    LISTENs again and misses nothing another process does."""
    elsewhere = PostgresBackend(pg_url, namespace=backend.namespace)
    here, there = JobQueue(backend=backend), JobQueue(backend=elsewhere)
    try:
        for round_ in range(2):
            job_id = await there.enqueue("t", {"round": round_})
            seen: list[JobStatus] = []
            async with aclosing(Broadcaster(here).subscribe(job_id)) as updates:
                with anyio.fail_after(WAIT):
                    first = await anext(updates)
                    seen.append(first.status)
                    (claimed,) = await elsewhere.claim_pending_job(
                        None, limit=1, worker_id="w", lease=30, now=there.clock()
                    )
                    seen.append((await anext(updates)).status)
                    done = Outcome(job_id=job_id, kind="complete", fence=claimed.fence)
                    assert await elsewhere.finish_many([done], now=there.clock()) == [True]
                    async for update in updates:
                        seen.append(update.status)
            assert seen == [JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETE]
    finally:
        await elsewhere.aclose()


async def test_a_subscriber_arriving_while_a_listener_reads_misses_nothing(
    backend: PostgresBackend, pg_url: str
) -> None:
    """The LISTEN connection is being read by a waiting listener when a subscriber comes:
    the listener hands over, the subscriber LISTENs, and both go on hearing their own."""
    elsewhere = PostgresBackend(pg_url, namespace=backend.namespace)
    here, there = JobQueue(backend=backend), JobQueue(backend=elsewhere)
    await here.stats()
    heard: list[Notice] = []
    woken = anyio.Event()
    try:
        async with backend.listen() as notices, anyio.create_task_group() as tg:

            async def hear() -> None:
                async for notice in notices:
                    heard.append(notice)
                    woken.set()

            tg.start_soon(hear)
            await anyio.wait_all_tasks_blocked()  # the listener waits on the connection
            job_id = await there.enqueue("t")
            with anyio.fail_after(WAIT):
                await woken.wait()
            async with aclosing(Broadcaster(here).subscribe(job_id)) as updates:
                with anyio.fail_after(WAIT):
                    assert (await anext(updates)).status is JobStatus.PENDING
                    taken = await elsewhere.claim_pending_job(
                        None, limit=1, worker_id="w", lease=30, now=there.clock()
                    )
                    assert [r.id for r in taken] == [job_id]
                    assert (await anext(updates)).status is JobStatus.PROCESSING
            woken = anyio.Event()
            await there.enqueue("t")
            with anyio.fail_after(WAIT):
                await woken.wait()
            tg.cancel_scope.cancel()
        assert heard == [Notice("jobs"), Notice("jobs")]
    finally:
        await elsewhere.aclose()


async def test_a_subscriber_arriving_as_the_last_one_leaves_still_hears_others(
    backend: PostgresBackend, pg_url: str
) -> None:
    """The last subscriber's UNLISTEN is on the wire when a new one arrives: the new one must
    LISTEN again after it, or it would hear nothing another process does (it did, once)."""
    elsewhere = PostgresBackend(pg_url, namespace=backend.namespace)
    there = JobQueue(backend=elsewhere)
    try:
        job_id = await there.enqueue("t")
        first = backend.subscribe(job_id)
        await first.__aenter__()
        second = backend.subscribe(job_id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.__aexit__, None, None, None)  # the last one leaves: UNLISTEN
            await anyio.lowlevel.checkpoint()  # its UNLISTEN is sent; its reply not yet read
            updates = await second.__aenter__()  # arrives meanwhile
        # The first has gone; the second alone is subscribed.
        try:
            taken = await elsewhere.claim_pending_job(
                None, limit=1, worker_id="w", lease=30, now=there.clock()
            )
            assert [r.id for r in taken] == [job_id]
            with anyio.fail_after(WAIT):
                update = await anext(updates)
            assert update.job_id == job_id and update.status == "processing"
        finally:
            await second.__aexit__(None, None, None)
    finally:
        await elsewhere.aclose()

