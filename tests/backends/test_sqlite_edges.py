"""Issue 12 on the SQLite backend: schema v3, decided outcomes, max_lost, update_seq across
processes, ``gone`` updates, fenced cancel notices, queues that outlive their event loop, closed
queues, and corrupt rows (F8).

Every test uses real files in ``tmp_path``; two queues on one file are two connections, so the
second one's commits reach the first the way another process's would (``PRAGMA data_version``).
Async tests run under asyncio and trio, every wait bounded.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from jdobb_async_queue import (
    Broadcaster,
    JobNotFoundError,
    JobQueue,
    JobStatus,
    QueueClosedError,
    Worker,
)
from jdobb_async_queue._policy import lost_error
from jdobb_async_queue._records import DEFAULT_MAX_LOST, Outcome, UpdateRecord
from jdobb_async_queue.backends.sqlite.store import SCHEMA_VERSION, _script
from jdobb_async_queue.testing import MockClock

pytestmark = pytest.mark.anyio

WAIT = 10.0
FAST = "poll_interval=0.02"


def url_of(path: Path, query: str = FAST) -> str:
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def clock() -> MockClock:
    return MockClock(1_700_000_000.0)


@asynccontextmanager
async def opened(url: str, **kwargs: Any) -> AsyncIterator[JobQueue]:
    queue = JobQueue(backend="sqlite", url=url, **kwargs)
    try:
        yield queue
    finally:
        await queue.close()


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


async def _until(check: Callable[[], bool]) -> None:
    with anyio.fail_after(WAIT):
        while not check():
            await anyio.sleep(0.01)


async def _next(updates: AsyncIterator[Any]) -> Any:
    with anyio.fail_after(WAIT):
        return await anext(updates)


async def _row(db: Path, job_id: str, columns: str) -> tuple[Any, ...]:
    with raw(db) as conn:
        found = conn.execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert found is not None
    return tuple(found)


# -- schema v3 -----------------------------------------------------------------------------------


def _v2_file(db: Path) -> None:
    """A file as version 2 of the schema left it, holding one pending job."""
    with raw(db) as conn:
        for name in ("schema_v1.sql", "schema_v2.sql"):
            for statement in _script(name):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO jobs (id, job_type, status, lane, rank, priority, data, metadata, "
            "created_at, updated_at, touched) VALUES "
            "('old', 't', 'pending', 0, 1, 'normal', '{\"a\": 1}', '{}', 1.0, 1.0, 1)"
        )
        conn.execute("UPDATE counts SET n = 1 WHERE status = 'pending' AND lane = 0")


async def test_a_version_2_file_is_migrated_to_version_3(db: Path) -> None:
    _v2_file(db)
    async with opened(url_of(db)) as queue:
        record = await queue.backend.get("old", now=queue.clock())
        assert record is not None
        assert (record.lost, record.max_lost, record.update_seq) == (0, DEFAULT_MAX_LOST, 1)
        claimed = await queue.claim()
        assert claimed is not None and claimed.id == "old" and claimed.data == {"a": 1}
        assert await queue.complete("old", {"ok": True})
        assert (await queue.stats()).complete == 1
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    assert {"lost", "max_lost", "update_seq"} <= columns
    assert await _row(db, "old", "update_seq, lost") == (3, 0)  # stored, claimed, completed


async def test_lost_max_lost_and_update_seq_are_stored(db: Path, clock: MockClock) -> None:
    async with opened(url_of(db), clock=clock) as queue:
        job_id = await queue.enqueue("t", max_lost=3)
        assert await _row(db, job_id, "lost, max_lost, update_seq") == (0, 3, 1)
        await queue.claim(lease=5)
        clock.advance(6)
        assert await queue.backend.reclaim_expired(now=clock()) == [job_id]
    async with opened(url_of(db), clock=clock) as again:  # durable
        record = await again.backend.get(job_id, now=clock())
        assert record is not None
        assert (record.lost, record.max_lost, record.update_seq) == (1, 3, 3)


# -- decided outcomes -----------------------------------------------------------------------------


async def test_a_retry_is_due_after_the_decided_delay_not_a_backoff(
    db: Path, clock: MockClock
) -> None:
    """The backend applies ``outcome.delay``; the job's own retry_delay (100 s) plays no part."""
    async with opened(url_of(db), clock=clock) as queue:
        job_id = await queue.enqueue("t", max_retries=3, retry_delay=100.0)
        job = await queue.claim()
        assert job is not None
        retry = Outcome(job_id=job_id, kind="retry", fence=1, error="boom", delay=2.0)
        assert await queue.backend.finish(retry, now=clock())
        assert await queue.backend.next_due(None, now=clock()) == pytest.approx(clock() + 2.0)
        clock.advance(2.5)
        again = await queue.claim()
        assert again is not None and again.attempts == 2 and again.error == "boom"


async def test_a_zero_delay_retry_is_ready_at_once(db: Path, clock: MockClock) -> None:
    async with opened(url_of(db), clock=clock) as queue:
        job_id = await queue.enqueue("t", max_retries=0)  # no retries left: still applied
        await queue.claim()
        retry = Outcome(job_id=job_id, kind="retry", fence=1, error="boom", delay=0.0)
        assert await queue.backend.finish(retry, now=clock())
        assert (await queue.stats()).scheduled == 0
        assert await queue.claim() is not None


async def test_release_resets_the_attempt_on_file(db: Path, clock: MockClock) -> None:
    async with opened(url_of(db), clock=clock) as queue:
        job_id = await queue.enqueue("t")
        await queue.claim()
        await queue.update(job_id, progress=0.4, message="half")
        before = await _row(db, job_id, "update_seq")
        release = Outcome(job_id=job_id, kind="release", fence=1)
        assert await queue.backend.finish(release, now=clock())
        row = await _row(db, job_id, "status, attempts, progress, message, started_at, update_seq")
        assert row == ("pending", 0, 0.0, None, None, before[0] + 1)
        assert not await queue.backend.finish(release, now=clock())  # no longer held


# -- max_lost --------------------------------------------------------------------------------------


async def test_a_poison_job_fails_past_max_lost_and_frees_its_key(
    db: Path, clock: MockClock
) -> None:
    async with opened(url_of(db), clock=clock) as queue:
        job_id = await queue.enqueue("poison", max_lost=1, unique_key="k")
        child = await queue.enqueue("child", depends_on=[job_id])
        for expected in ("pending", "failed"):
            assert await queue.claim(job_types=["poison"], lease=5) is not None
            clock.advance(6)
            assert await queue.backend.reclaim_expired(now=clock()) == [job_id]
            assert (await _row(db, job_id, "status"))[0] == expected
        job = await queue.get(job_id)
        assert job is not None
        assert (job.status, job.error) == (JobStatus.FAILED, lost_error(2))
        assert job.completed_at is not None and job.worker_id is None
        dependent = await queue.get(child)
        assert dependent is not None and dependent.status is JobStatus.CANCELLED
        assert await queue.enqueue("poison", unique_key="k") != job_id  # the key is free
        stats = await queue.stats()
        assert (stats.failed, stats.cancelled, stats.processing) == (1, 1, 0)


# -- update_seq and subscribers --------------------------------------------------------------------


async def test_updates_made_elsewhere_arrive_once_each_in_seq_order(db: Path) -> None:
    """The file backend re-reads subscribed jobs after another connection's commit; the first
    state was delivered twice. Now each ``update_seq`` arrives once, in order."""
    async with opened(url_of(db)) as local, opened(url_of(db)) as remote:
        job_id = await remote.enqueue("t")
        async with local.backend.subscribe(job_id) as stream:
            updates = aiter(stream)
            async with aclosing(Broadcaster(local).subscribe(job_id)) as public:
                assert (await _next(public)).status is JobStatus.PENDING
                assert await remote.claim() is not None
                assert (await _next(public)).status is JobStatus.PROCESSING
                assert await remote.update(job_id, progress=0.5)
                assert (await _next(public)).progress == 0.5
                assert await remote.complete(job_id, {"r": 1})
                final = await _next(public)
                assert (final.status, final.results) == (JobStatus.COMPLETE, {"r": 1})
                with anyio.fail_after(WAIT), pytest.raises(StopAsyncIteration):
                    await anext(public)
            raw_seen: list[UpdateRecord] = []
            while not raw_seen or raw_seen[-1].status != "complete":
                raw_seen.append(await _next(updates))
    seqs = [u.update_seq for u in raw_seen]
    assert seqs == sorted(set(seqs)), seqs  # strictly rising: nothing twice
    assert seqs[-1] == 4  # stored 1, claimed 2, progress 3, complete 4


async def test_an_update_taken_as_the_poll_interval_ends_is_not_lost(db: Path) -> None:
    """A waiting subscriber (or worker) takes its next item while it also watches the doorbell,
    under a deadline of one ``poll_interval``. When the deadline struck just after the item was
    taken out of the mailbox (as the wait's task group ended), the item was dropped with the
    scope: a follower of a job could wait for ever for an update already delivered (seen in
    ``examples/retries.py``, one run in three on a loaded machine). An item in the mailbox and
    a deadline already past is that moment made certain: the item must come back, or stay."""
    from jdobb_async_queue.backends._hub import Mailbox

    async with opened(url_of(db)) as queue:
        backend = queue.backend
        job_id = await queue.enqueue("t")
        async with backend.subscribe(job_id):  # binds the doorbell: the wait watches it
            assert backend._doorbell is not None
            box: Mailbox[str] = Mailbox(4)
            box.put("the update")
            with anyio.fail_after(WAIT):
                got = await backend._wait(box, 0.0)
            assert got == "the update" or box.get_nowait() == "the update"


async def test_a_job_changed_here_and_read_back_is_not_repeated(db: Path) -> None:
    """A change made here is delivered at once; another connection's commit makes the backend
    read the job back, in the same state: that must not be delivered again."""
    async with opened(url_of(db)) as local, opened(url_of(db)) as other:
        job_id = await local.enqueue("t")
        async with local.backend.subscribe(job_id) as stream:
            updates = aiter(stream)
            assert await local.claim() is not None
            first = await _next(updates)
            assert (first.status, first.update_seq) == ("processing", 2)
            await other.enqueue("unrelated")  # a foreign commit: the job is read back
            await local.stats()  # a batch that notices it
            assert await local.update(job_id, progress=0.3)
            second = await _next(updates)
            assert (second.progress, second.update_seq) == (0.3, 3)


async def test_a_subscriber_elsewhere_gets_gone_when_the_job_is_purged(db: Path) -> None:
    async with opened(url_of(db)) as local, opened(url_of(db)) as remote:
        job_id = await remote.enqueue("t")
        async with local.backend.subscribe(job_id) as stream:
            updates = aiter(stream)
            assert await remote.cancel(job_id, "no")
            assert (await _next(updates)).status == "cancelled"
            assert await remote.purge(["cancelled"]) == 1
            gone = await _next(updates)
            assert gone.gone and gone.job_id == job_id
            with anyio.fail_after(WAIT), pytest.raises(StopAsyncIteration):
                await anext(updates)


async def test_a_subscriber_here_gets_gone_when_the_job_expires(db: Path, clock: MockClock) -> None:
    async with opened(url_of(db), clock=clock) as queue:
        job_id = await queue.enqueue("t", ttl=10)
        async with queue.backend.subscribe(job_id) as stream:
            updates = aiter(stream)
            await queue.claim()
            assert (await _next(updates)).status == "processing"
            assert await queue.complete(job_id)
            assert (await _next(updates)).status == "complete"
            clock.advance(11)
            await queue.list_jobs()  # housekeeping deletes the expired job
            gone = await _next(updates)
            assert gone.gone
            with anyio.fail_after(WAIT), pytest.raises(StopAsyncIteration):
                await anext(updates)


async def test_a_broadcaster_elsewhere_ends_with_not_found_when_the_job_goes(db: Path) -> None:
    """A subscriber on a job deleted under it (here by raw SQL, as a purge of a job that was
    retried by hand would) ends with JobNotFoundError rather than waiting forever."""
    async with opened(url_of(db)) as local:
        job_id = await local.enqueue("t")
        async with aclosing(Broadcaster(local).subscribe(job_id)) as public:
            assert (await _next(public)).status is JobStatus.PENDING
            with raw(db) as conn:
                conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            with anyio.fail_after(WAIT), pytest.raises(JobNotFoundError):
                await anext(public)


# -- fenced cancel notices -------------------------------------------------------------------------


async def test_cancel_notices_carry_the_fence_here_and_from_elsewhere(
    db: Path, clock: MockClock
) -> None:
    async with opened(url_of(db), clock=clock) as local, opened(url_of(db), clock=clock) as remote:
        first = await local.enqueue("t")
        second = await local.enqueue("t")
        async with local.backend.listen() as stream:
            notices = aiter(stream)
            a = await local.claim(lease=5)
            assert a is not None and a.id == first
            clock.advance(6)
            assert await local.backend.reclaim_expired(now=clock()) == [first]
            again = await local.backend.claim_pending_job(
                None, limit=1, worker_id="w", lease=60, now=clock()
            )
            assert [r.fence for r in again if r.id == first] == [2]
            b = await local.claim()
            assert b is not None and b.id == second
            assert await local.cancel(first)  # here
            assert await remote.cancel(second)  # elsewhere
            found: dict[str, int | None] = {}
            with anyio.fail_after(WAIT):
                while len(found) < 2:
                    notice = await anext(notices)
                    if notice.kind == "cancel" and notice.job_id is not None:
                        found[notice.job_id] = notice.fence
    assert found == {first: 2, second: 1}


# -- event loops -----------------------------------------------------------------------------------


def test_a_queue_outlives_its_event_loops(tmp_path: Path) -> None:
    """One queue used from asyncio, then trio, then asyncio again (a worker, a subscriber and a
    listener each time), and closed from yet another loop."""
    queue = JobQueue(backend="sqlite", url=url_of(tmp_path / "jobs.db"))
    done: list[str] = []

    async def use() -> None:
        worker = Worker(queue, max_concurrent=2, poll_interval=0.02)

        @worker.handler("t")
        async def handle(ctx: Any) -> dict[str, int]:
            return {"n": 1}

        job_id = await queue.enqueue("t")
        with anyio.fail_after(WAIT):
            async with (
                aclosing(Broadcaster(queue).subscribe(job_id)) as updates,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(worker.run)
                statuses = [u.status async for u in updates]
                await worker.stop()
        assert statuses[-1] is JobStatus.COMPLETE
        done.append(job_id)

    for loop in ("asyncio", "trio", "asyncio", "trio"):
        anyio.run(use, backend=loop)

    async def check_and_close() -> None:
        jobs = await queue.list_jobs(status="complete")
        assert sorted(j.id for j in jobs) == sorted(done)
        await queue.close()

    anyio.run(check_and_close, backend="asyncio")
    assert len(done) == 4

    async def after_close() -> None:
        with pytest.raises(QueueClosedError):
            await queue.enqueue("t")

    anyio.run(after_close, backend="trio")


def test_a_loop_that_stopped_mid_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    """State a finished loop left in the backend (a leader that never handed over, a listener
    whose mailbox belongs to that loop) is dropped when the next loop calls."""
    queue = JobQueue(backend="sqlite", url=url_of(tmp_path / "jobs.db"))

    async def strand() -> None:
        backend: Any = queue.backend
        await queue.enqueue("t")
        backend._leading = True  # as if the loop ended while a batch was being led
        backend._listeners.add(object())  # and a listener of that loop stayed registered

    anyio.run(strand, backend="asyncio")

    async def use() -> None:
        with anyio.fail_after(WAIT):
            await queue.enqueue("t")
            assert (await queue.stats()).pending == 2
            await queue.close()

    anyio.run(use, backend="trio")


# -- closing ---------------------------------------------------------------------------------------


async def test_close_ends_open_streams_and_calls_at_once(db: Path) -> None:
    queue = JobQueue(backend="sqlite", url=url_of(db))
    job_id = await queue.enqueue("t")
    errors: list[BaseException] = []

    async def read(cm: Any) -> None:
        try:
            async with cm as stream:
                async for _ in stream:
                    pass
        except QueueClosedError as exc:
            errors.append(exc)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, queue.backend.listen())
            tg.start_soon(read, queue.backend.subscribe(job_id))
            await anyio.wait_all_tasks_blocked()
            await queue.close()
    assert len(errors) == 2
    with anyio.fail_after(1):
        for call in (queue.get(job_id), queue.claim(), queue.stats()):
            with pytest.raises(QueueClosedError, match=r"SQLite backend .* is closed"):
                await call


# -- corrupt rows (F8) ------------------------------------------------------------------------------


def _corrupt(db: Path, job_id: str, assignment: str) -> None:
    with raw(db) as conn:
        conn.execute(f"UPDATE jobs SET {assignment} WHERE id = ?", (job_id,))


async def test_a_worker_sets_a_corrupt_job_aside_and_runs_the_others(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with opened(url_of(db)) as queue:
        bad = await queue.enqueue("t", {"x": 1})
        good = await queue.enqueue("t", {"x": 2})
        _corrupt(db, bad, "data = '{not json'")
        worker = Worker(queue, max_concurrent=1, poll_interval=0.02)
        ran: list[Any] = []

        @worker.handler("t")
        async def handle(ctx: Any) -> None:
            ran.append(ctx.job.data)

        with caplog.at_level(logging.ERROR, logger="jdobb_async_queue.backend"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await _until(lambda: bool(ran))
                await worker.stop()
        assert ran == [{"x": 2}]
        job = await queue.get(bad)
        assert job is not None and job.status is JobStatus.FAILED
        assert "corrupt" in (job.error or "") and "data" in (job.error or "")
        assert job.data == {}
        done = await queue.get(good)
        assert done is not None and done.status is JobStatus.COMPLETE
        assert any(bad in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records)
        stats = await queue.stats()
        assert (stats.failed, stats.complete, stats.pending, stats.processing) == (1, 1, 0, 0)


async def test_get_and_list_jobs_survive_corrupt_rows(db: Path) -> None:
    async with opened(url_of(db)) as queue:
        pending = await queue.enqueue("t")
        finished = await queue.enqueue("t")
        await queue.claim()  # pending's turn first
        assert await queue.complete(pending, {"ok": 1})
        assert (await queue.claim()) is not None
        assert await queue.complete(finished, {"ok": 2})
        other = await queue.enqueue("t", {"keep": True})
        _corrupt(db, finished, "results = 'oops'")
        _corrupt(db, other, "metadata = '[1, 2'")
        listed = await queue.list_jobs()  # no crash; the corrupt ones are left out this time
        assert [j.id for j in listed] == [pending]
        job = await queue.get(finished)  # a terminal job keeps its status
        assert job is not None and job.status is JobStatus.COMPLETE and job.results is None
        assert "corrupt" in (job.error or "")
        job = await queue.get(other)
        assert job is not None and job.status is JobStatus.FAILED and job.metadata == {}
        assert {j.id for j in await queue.list_jobs()} == {pending, finished, other}


async def test_a_bad_status_in_the_ready_lane_does_not_block_claims(db: Path) -> None:
    async with opened(url_of(db)) as queue:
        stuck = await queue.enqueue("t", priority="high")
        fine = await queue.enqueue("t")
        _corrupt(db, stuck, "status = 'bogus'")
        claimed = await queue.claim()
        assert claimed is not None and claimed.id == fine
        job = await queue.get(stuck)
        assert job is not None and job.status is JobStatus.FAILED
        assert "bogus" in (job.error or "")
        assert await queue.get(stuck) is not None  # a get on a bad status does not crash
        assert len(await queue.list_jobs()) == 2


async def test_get_of_a_row_with_a_bad_status_sets_it_aside(db: Path) -> None:
    async with opened(url_of(db)) as queue:
        job_id = await queue.enqueue("t")
        await queue.claim()
        _corrupt(db, job_id, "status = 'weird'")
        job = await queue.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED and "weird" in (job.error or "")


async def test_a_subscriber_is_told_when_its_job_is_corrupted_elsewhere(db: Path) -> None:
    async with opened(url_of(db)) as local:
        job_id = await local.enqueue("t")
        async with aclosing(Broadcaster(local).subscribe(job_id)) as public:
            assert (await _next(public)).status is JobStatus.PENDING
            _corrupt(db, job_id, "status = 'nonsense'")
            final = await _next(public)  # no crash, no hang: the row is set aside
            assert final.status is JobStatus.FAILED
            assert "corrupt" in (final.error or "")
