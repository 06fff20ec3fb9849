"""Transactional enqueue on PostgreSQL (``enqueue_within``): a job enqueued inside the user's
own transaction exists if and only if that transaction commits, on psycopg 3's blocking and
asyncio connections."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import psycopg
import pytest

from jdobb_async_queue import (
    ConfigurationError,
    DuplicateJobError,
    JobContext,
    JobQueue,
    JobStatus,
    Worker,
)
from jdobb_async_queue._records import Outcome
from jdobb_async_queue.backends.postgres import enqueue_within

pytestmark = pytest.mark.anyio

WAIT = 10.0


@pytest.fixture
async def queue(pg_url: str) -> AsyncIterator[JobQueue]:
    q = JobQueue(backend="postgres", url=pg_url, namespace=f"outbox-{uuid.uuid4().hex[:10]}")
    try:
        yield q
    finally:
        await q.backend.drop_namespace()  # type: ignore[attr-defined]
        await q.close()


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The user's own connection, with a table of its own (temporary: gone when it closes)."""
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("CREATE TEMP TABLE orders (id int PRIMARY KEY)")
        yield c


class Rollback(Exception):
    pass


async def test_a_job_enqueued_in_a_committed_transaction_exists_and_runs(
    queue: JobQueue, conn: psycopg.Connection[Any]
) -> None:
    worker = Worker(queue, poll_interval=30)  # only a NOTIFY at commit can wake it in time
    warm, ran = anyio.Event(), anyio.Event()

    @worker.handler("warm")
    async def warm_up(ctx: JobContext) -> None:
        warm.set()

    @worker.handler("ship")
    async def ship(ctx: JobContext) -> None:
        ran.set()

    await queue.enqueue("warm")
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(WAIT):
            await warm.wait()  # the worker has claimed what there was: it is listening now
        with conn.transaction():
            conn.execute("INSERT INTO orders VALUES (42)")
            with enqueue_within(conn):
                job_id = await queue.enqueue("ship", {"order": 42})
            # Not visible outside the transaction before it commits.
            assert await queue.get(job_id) is None
        with anyio.fail_after(WAIT):
            await ran.wait()
        await worker.stop()
    job = await queue.get(job_id)
    assert job is not None and job.data == {"order": 42}


async def test_a_job_enqueued_in_a_rolled_back_transaction_never_exists(
    queue: JobQueue, conn: psycopg.Connection[Any]
) -> None:
    try:
        with conn.transaction():
            conn.execute("INSERT INTO orders VALUES (7)")
            with enqueue_within(conn):
                job_id = await queue.enqueue("ship", {"order": 7})
                ids = await queue.enqueue_many([{"job_type": "ship"}, {"job_type": "ship"}])
            raise Rollback
    except Rollback:
        pass
    for gone in (job_id, *ids):
        assert await queue.get(gone) is None
    assert (await queue.stats()).pending == 0
    assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)


async def test_a_failed_enqueue_leaves_the_users_transaction_going(
    queue: JobQueue, conn: psycopg.Connection[Any]
) -> None:
    taken = await queue.enqueue("ship", job_id="taken")
    with conn.transaction():
        with enqueue_within(conn), pytest.raises(DuplicateJobError):
            await queue.enqueue("ship", job_id=taken)
        conn.execute("INSERT INTO orders VALUES (1)")  # the transaction is not aborted
        with enqueue_within(conn):
            fresh = await queue.enqueue("ship")
    assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)
    assert await queue.get(fresh) is not None
    # The user's search_path is theirs again.
    path = conn.execute("SHOW search_path").fetchone()
    assert path is not None and "jdobb_" not in path[0]


async def test_enqueue_within_needs_an_open_transaction(
    queue: JobQueue, conn: psycopg.Connection[Any]
) -> None:
    with enqueue_within(conn), pytest.raises(ConfigurationError, match="transaction"):
        await queue.enqueue("ship")
    assert (await queue.stats()).pending == 0
    with (
        pytest.raises(ConfigurationError, match="psycopg"),
        enqueue_within("not a connection"),  # type: ignore[arg-type]
    ):
        pass


async def test_an_async_connection_joins_too(
    queue: JobQueue, pg_url: str, anyio_backend: str
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("psycopg's AsyncConnection runs on asyncio only (use a blocking one on trio)")
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as aconn:
        await aconn.execute("CREATE TEMP TABLE orders (id int PRIMARY KEY)")
        async with aconn.transaction():
            await aconn.execute("INSERT INTO orders VALUES (1)")
            with enqueue_within(aconn):
                kept = await queue.enqueue("ship", {"order": 1})
        try:
            async with aconn.transaction():
                with enqueue_within(aconn):
                    dropped = await queue.enqueue("ship", {"order": 2})
                raise Rollback
        except Rollback:
            pass
    kept_job = await queue.get(kept)
    assert kept_job is not None and kept_job.status is JobStatus.PENDING
    assert await queue.get(dropped) is None


def test_the_blocking_queue_joins_a_blocking_connection(
    pg_url: str, conn: psycopg.Connection[Any]
) -> None:
    from jdobb_async_queue.sync import JobQueue as BlockingQueue

    namespace = f"outbox-{uuid.uuid4().hex[:10]}"
    with BlockingQueue(backend="postgres", url=pg_url, namespace=namespace) as queue:
        try:
            try:
                with conn.transaction(), enqueue_within(conn):
                    dropped = queue.enqueue("ship")
                    raise Rollback
            except Rollback:
                pass
            with conn.transaction(), enqueue_within(conn):
                kept = queue.enqueue("ship")
            assert queue.get(dropped) is None
            assert queue.get(kept) is not None
        finally:
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA IF EXISTS "jdobb_{namespace}" CASCADE')


async def _until_a_session_waits_for_a_lock(pg_url: str, query_like: str) -> None:
    def waiting() -> int:
        with psycopg.connect(pg_url, autocommit=True) as c:
            row = c.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE %s",
                (query_like,),
            ).fetchone()
        return 0 if row is None else int(row[0])

    while not await anyio.to_thread.run_sync(waiting):
        await anyio.sleep(0.01)  # polls the server: no event to await for its lock queue


async def test_a_completion_that_waited_for_an_open_enqueue_of_a_dependent_releases_it(
    queue: JobQueue, conn: psycopg.Connection[Any], pg_url: str
) -> None:
    # An enqueue of a dependent holds its dependency's row FOR SHARE until its transaction
    # commits. A worker's completion of that dependency waits for it, and must then count the
    # edge the enqueue stored off the dependent (a statement whose snapshot predates the
    # commit would not see it, and the dependent would wait forever).
    backend: Any = queue.backend
    parent = await queue.enqueue("t")
    (claimed,) = await backend.claim_pending_job(
        None, limit=1, worker_id="w", lease=30, now=queue.clock()
    )
    done = Outcome(job_id=parent, kind="complete", fence=claimed.fence)
    stored: list[list[bool]] = []

    async def complete() -> None:
        stored.append(await backend.finish_many([done], now=queue.clock()))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            with conn.transaction():
                with enqueue_within(conn):
                    child = await queue.enqueue("t", depends_on=[parent])
                tg.start_soon(complete)
                await _until_a_session_waits_for_a_lock(pg_url, "%jdobb_complete%")
            # committed here: the completion goes on
    assert stored == [[True]]
    freed = await backend.claim_pending_job(
        None, limit=5, worker_id="w", lease=30, now=queue.clock()
    )
    assert [r.id for r in freed] == [child]
