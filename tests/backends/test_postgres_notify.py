"""PostgreSQL notifications at their edges: payload sizes in bytes, a burst of wake-ups, a
LISTEN connection the server drops."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import psycopg
import pytest

from jdobb_async_queue import JobQueue
from jdobb_async_queue.backends import Notice
from jdobb_async_queue.backends.postgres import PostgresBackend
from jdobb_async_queue.backends.postgres.notify import MAILBOX_SIZE, Mailbox

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
