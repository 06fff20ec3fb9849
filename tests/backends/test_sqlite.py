"""The SQLite backend beyond the contract: files, faults, durability, group commit, processes.

Every test runs on real files in ``tmp_path`` under asyncio and trio. The multi-process tests
start ``sqlite_procs/worker.py`` with ``python``; every process is killed at the end whatever
happens, and every wait is bounded.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from jdobb_async_queue import (
    BackendUnavailable,
    Broadcaster,
    ConfigurationError,
    DuplicateJobError,
    JobContext,
    JobQueue,
    JobStatus,
    QueueClosedError,
    QueueStats,
    Worker,
)
from jdobb_async_queue.backends.sqlite import SchemaVersionError, SQLiteBackend, queries
from jdobb_async_queue.backends.sqlite.store import SCHEMA_VERSION, Settings, Store

pytestmark = pytest.mark.anyio

WAIT = 10.0
WORKER = Path(__file__).parent / "sqlite_procs" / "worker.py"


def url_of(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[JobQueue]:
    queue = JobQueue(backend="sqlite", url=url)
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


# -- URLs ----------------------------------------------------------------------------------------


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_url("sqlite:///jobs.db").path == str(tmp_path / "jobs.db")
    assert Settings.from_url("sqlite:///sub/dir/jobs.db").path == str(tmp_path / "sub/dir/jobs.db")
    assert Settings.from_url("sqlite:////abs/jobs.db").path == "/abs/jobs.db"
    assert Settings.from_url("sqlite:///:memory:").in_memory
    options = Settings.from_url("sqlite:///j.db?busy_timeout=50&synchronous=FULL&poll_interval=0.5")
    assert (options.busy_timeout, options.synchronous, options.poll_interval) == (50, "full", 0.5)
    defaults = Settings.from_url("sqlite:///j.db")
    assert (defaults.busy_timeout, defaults.synchronous, defaults.poll_interval) == (
        5000,
        "normal",
        0.1,
    )


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite://host/jobs.db",
        "sqlite:///jobs.db?nope=1",
        "sqlite:///jobs.db?busy_timeout=-1",
        "sqlite:///jobs.db?busy_timeout=soon",
        "sqlite:///jobs.db?synchronous=off",
        "sqlite:///jobs.db?poll_interval=0",
    ],
)
def test_bad_urls_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        JobQueue(backend="sqlite", url=url)


def test_queue_builds_the_sqlite_backend(db: Path) -> None:
    queue = JobQueue(backend="sqlite", url=url_of(db))
    assert isinstance(queue.backend, SQLiteBackend)
    assert not db.exists()  # opened by the first call, in a worker thread


# -- the file: schema, journal, faults ------------------------------------------------------------


async def test_new_file_gets_the_schema_in_wal_mode(db: Path) -> None:
    async with opened(url_of(db)) as queue:
        await queue.enqueue("t")
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_synchronous_option_is_applied(db: Path) -> None:
    for query, expected in [("", 1), ("synchronous=full", 2), ("synchronous=extra", 3)]:
        async with opened(url_of(db, query)) as queue:
            await queue.stats()
            store: Store = queue.backend._store  # type: ignore[attr-defined]
            conn = store._conn
            assert conn is not None
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == expected


async def test_an_empty_database_is_migrated_forward(db: Path) -> None:
    with raw(db) as conn:
        conn.execute("PRAGMA user_version = 0")
        conn.execute("VACUUM")  # a valid, empty SQLite file at version 0
    async with opened(url_of(db)) as queue:
        job_id = await queue.enqueue("t")
        assert (await queue.get(job_id)) is not None
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_version_1_file_is_migrated_and_keeps_its_jobs(db: Path) -> None:
    """Version 2 drops version 1's edge trigger, so deleting a FAILED dependency cancels the
    job retried by hand that waits on it (the trigger dropped the edge before it was read)."""
    v1 = (Path(queries.__file__).parent / "schema_v1.sql").read_text(encoding="utf-8")
    with raw(db) as conn:
        conn.executescript(v1)
        conn.execute("PRAGMA user_version = 1")
    async with opened(url_of(db)) as queue:
        a = await queue.enqueue("t")
        b = await queue.enqueue("t", depends_on=[a])
        claimed = await queue.claim()
        assert claimed is not None and claimed.id == a
        await queue.fail(a, "boom")
        assert await queue.retry(b) is True
        assert await queue.purge(["failed"]) == 1
        job = await queue.get(b)
        assert job is not None and job.status is JobStatus.CANCELLED
        assert job.error == f"dependency {a} deleted"
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        assert triggers.fetchall() == []


async def test_a_newer_schema_is_refused_and_left_alone(db: Path) -> None:
    with raw(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    async with opened(url_of(db)) as queue:
        with pytest.raises(SchemaVersionError) as info:
            await queue.enqueue("t")
        assert isinstance(info.value, ConfigurationError)
        assert (info.value.found, info.value.supported) == (99, SCHEMA_VERSION)
        assert "99" in str(info.value)
        with pytest.raises(SchemaVersionError):  # every call, not only the first
            await queue.get("x")
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


async def test_someone_elses_database_is_refused_and_left_alone(db: Path) -> None:
    with raw(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    async with opened(url_of(db)) as queue:
        with pytest.raises(ConfigurationError, match="no jdobb-async-queue schema"):
            await queue.enqueue("t")
    with raw(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        assert names == ["invoices"]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0


async def test_a_file_that_is_not_a_database(db: Path) -> None:
    content = b"this is not a database, just some text " * 200
    await anyio.Path(db).write_bytes(content)
    async with opened(url_of(db)) as queue:
        with pytest.raises(ConfigurationError, match="not a SQLite database"):
            await queue.enqueue("t")
        with pytest.raises(ConfigurationError):
            await queue.stats()
    assert await anyio.Path(db).read_bytes() == content


async def test_a_path_that_cannot_be_opened(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "jobs.db"
    async with opened(url_of(missing)) as queue:
        with pytest.raises(BackendUnavailable, match="cannot open"):
            await queue.enqueue("t")
    assert not (tmp_path / "no").exists()


async def test_a_directory_is_not_a_database_file(tmp_path: Path) -> None:
    async with opened(url_of(tmp_path)) as queue:
        with pytest.raises(BackendUnavailable):
            await queue.enqueue("t")


async def test_a_lock_held_beyond_the_busy_timeout(db: Path) -> None:
    async with opened(url_of(db, "busy_timeout=50")) as queue:
        first = await queue.enqueue("t", job_id="before")
        with raw(db) as conn:
            conn.execute("BEGIN EXCLUSIVE")
            with anyio.fail_after(WAIT), pytest.raises(BackendUnavailable, match="locked"):
                await queue.enqueue("t", job_id="during")
            assert await queue.get(first) is not None  # WAL: reads go on meanwhile
            conn.execute("ROLLBACK")
        await queue.enqueue("t", job_id="after")
        assert await queue.get("during") is None
        assert await queue.stats() == QueueStats(pending=2)


async def test_a_lock_held_while_opening_is_retried_by_the_next_call(db: Path) -> None:
    with raw(db) as conn:
        conn.execute("BEGIN EXCLUSIVE")  # a new, empty file: the schema cannot be written
        async with opened(url_of(db, "busy_timeout=50")) as queue:
            with anyio.fail_after(WAIT), pytest.raises(BackendUnavailable):
                await queue.enqueue("t")
            conn.execute("ROLLBACK")
            await queue.enqueue("t")
            assert (await queue.stats()).pending == 1


async def test_no_sqlite3_error_reaches_the_caller(db: Path) -> None:
    async with opened(url_of(db)) as queue:
        await queue.enqueue("t")
        with raw(db) as conn:
            conn.execute("DROP TABLE edges")  # a broken file: a statement fails inside
        with pytest.raises(BackendUnavailable) as info:
            await queue.enqueue("t", depends_on=[(await queue.list_jobs())[0].id])
        assert isinstance(info.value.__cause__, sqlite3.Error)


# -- durability and lifecycle --------------------------------------------------------------------


async def test_jobs_survive_closing_and_reopening(db: Path) -> None:
    async with opened(url_of(db)) as queue:
        done = await queue.enqueue("t", {"n": 1}, job_id="done", metadata={"m": True})
        await queue.enqueue("t", {"n": 2}, job_id="waiting", depends_on=["done"])
        await queue.enqueue("t", {"n": 3}, job_id="later", delay=3600)
        claimed = await queue.claim()
        assert claimed is not None
        assert claimed.id == done
        await queue.complete(done, {"ok": [1, 2]})
    async with opened(url_of(db)) as queue:
        job = await queue.get("done")
        assert job is not None
        assert (job.status, job.results, job.metadata) == (
            JobStatus.COMPLETE,
            {"ok": [1, 2]},
            {"m": True},
        )
        assert await queue.stats() == QueueStats(pending=2, complete=1, scheduled=1)
        nxt = await queue.claim()
        assert nxt is not None
        assert nxt.id == "waiting"  # its dependency completed before the restart


async def test_calls_after_close_raise(db: Path) -> None:
    queue = JobQueue(backend="sqlite", url=url_of(db))
    await queue.enqueue("t")
    await queue.close()
    await queue.close()  # twice is fine
    with pytest.raises(QueueClosedError, match="closed"):
        await queue.enqueue("t")
    with pytest.raises(QueueClosedError, match="closed"):
        await queue.get("x")


async def test_closing_ends_the_database_thread(db: Path) -> None:
    def ours() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.endswith(f"sqlite {db}")]

    queue = JobQueue(backend="sqlite", url=url_of(db))
    assert ours() == []  # started by the first call
    await queue.enqueue("t")
    (thread,) = ours()
    assert thread.daemon  # a queue never closed cannot keep the interpreter alive
    await queue.close()
    assert not thread.is_alive()
    assert ours() == []


class Gate:
    """Holds the next transaction in its worker thread until opened, so a test can line up
    requests behind a batch in flight."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()
        original = Store.run

        def run(store: Store, *args: Any) -> Any:
            if not self._open.is_set():
                self.entered.set()
                self._open.wait(WAIT)
            return original(store, *args)

        monkeypatch.setattr(Store, "run", run)

    async def wait_entered(self) -> None:
        with anyio.fail_after(WAIT):
            while not self.entered.is_set():
                await anyio.sleep(0.001)

    def open(self) -> None:
        self._open.set()


async def test_close_waits_for_the_batches_in_flight(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = JobQueue(backend="sqlite", url=url_of(db))
    gate = Gate(monkeypatch)
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.enqueue, "t", None)
        await gate.wait_entered()  # a batch in flight...
        for _ in range(5):
            tg.start_soon(queue.enqueue, "t", None)  # ...five requests waiting behind it...
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(queue.close)  # ...and a close
        await anyio.wait_all_tasks_blocked()
        gate.open()
    with pytest.raises(QueueClosedError, match="closed"):
        await queue.enqueue("t")
    async with opened(url_of(db)) as again:
        assert (await again.stats()).pending == 6  # every request made before the close


async def test_a_caller_cancelled_while_waiting_changes_nothing(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened(url_of(db)) as queue:
        gate = Gate(monkeypatch)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(queue.enqueue, "t", job_id="leader"))
            await gate.wait_entered()
            scope = anyio.CancelScope()
            tg.start_soon(_in_scope, scope, partial(queue.enqueue, "t", job_id="cancelled"))
            tg.start_soon(partial(queue.enqueue, "t", job_id="follower"))
            await anyio.wait_all_tasks_blocked()
            scope.cancel()  # waiting behind the batch in flight: it never happens
            await anyio.wait_all_tasks_blocked()
            gate.open()
        assert await queue.get("cancelled") is None
        assert await queue.get("leader") is not None
        assert await queue.get("follower") is not None
        await queue.enqueue("t", job_id="later")  # and the batcher still works
        assert (await queue.stats()).pending == 3


async def _in_scope(scope: anyio.CancelScope, call: Any) -> None:
    with scope:
        await call()


async def test_memory_databases_are_private_to_their_queue() -> None:
    async with opened("sqlite:///:memory:") as a, opened("sqlite:///:memory:") as b:
        job_id = await a.enqueue("t")
        assert await a.get(job_id) is not None
        assert await b.get(job_id) is None
        assert await b.stats() == QueueStats()


# -- group commit --------------------------------------------------------------------------------


class CountingStore:
    """Counts the transactions of every Store (one ``Store.run`` each)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[int] = []
        original = Store.run

        def run(store: Store, requests: Any, *args: Any) -> Any:
            self.batches.append(len(requests))
            return original(store, requests, *args)

        monkeypatch.setattr(Store, "run", run)


async def test_concurrent_calls_share_transactions(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CountingStore(monkeypatch)
    async with opened(url_of(db)) as queue:
        await queue.stats()  # open the file first
        counter.batches.clear()
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(queue.enqueue, "t", {"i": i})
        assert sum(counter.batches) == 200
        assert len(counter.batches) < 20  # group commit: many requests per transaction
        assert (await queue.stats()).pending == 200


async def test_a_lone_call_is_its_own_transaction(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CountingStore(monkeypatch)
    async with opened(url_of(db)) as queue:
        for _ in range(3):
            await queue.enqueue("t")
        assert counter.batches == [1, 1, 1]


async def test_one_bad_request_does_not_fail_its_batch(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CountingStore(monkeypatch)
    async with opened(url_of(db)) as queue:
        await queue.enqueue("t", job_id="taken")
        counter.batches.clear()
        outcomes: dict[str, object] = {}

        async def add(job_id: str) -> None:
            try:
                outcomes[job_id] = await queue.enqueue("t", job_id=job_id)
            except DuplicateJobError as exc:
                outcomes[job_id] = exc

        async with anyio.create_task_group() as tg:
            for job_id in ["a", "taken", "b", "c"]:
                tg.start_soon(add, job_id)
        assert counter.batches == [4]  # one transaction...
        assert isinstance(outcomes.pop("taken"), DuplicateJobError)
        assert outcomes == {"a": "a", "b": "b", "c": "c"}  # ...and only the bad one failed
        assert (await queue.stats()).pending == 4


def test_claims_read_only_the_ready_lane() -> None:
    """The claim statements reach jobs through the ready indexes and rowids only: their cost does
    not depend on how many jobs are scheduled, waiting or finished."""
    conn = sqlite3.connect(":memory:")
    try:
        from jdobb_async_queue.backends.sqlite.store import _script

        for name in ("schema_v1.sql", "schema_v2.sql", "schema_v3.sql"):
            for statement in _script(name):
                conn.execute(statement)
        params = {
            "worker_id": "w",
            "now": 0.0,
            "lease_expires_at": 1.0,
            "touched": 1,
            "limit": 5,
            "job_type": "t",
            "s0": 1,
            "s1": 2,
        }
        for sql in (queries.CLAIM_ANY, queries.CLAIM_TYPE, queries.claim_seqs(2)):
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            scans = [step for step in plan if step.startswith("SCAN") and "jobs_ready" not in step]
            assert not scans, plan
            assert not any("jobs_by_status" in step for step in plan), plan
    finally:
        conn.close()


# -- two queues on one file: what other processes see -----------------------------------------


async def test_a_job_enqueued_elsewhere_wakes_an_idle_worker(db: Path) -> None:
    url = url_of(db, "poll_interval=0.05")
    async with opened(url) as producer, opened(url) as consumer:
        started = anyio.Event()
        worker = Worker(consumer, poll_interval=30)

        @worker.handler("t")
        async def handle(ctx: JobContext) -> None:
            started.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await consumer.stats()
            await anyio.sleep(0.2)  # let the worker go idle (its own poll is 30 s away)
            await producer.enqueue("t")
            with anyio.fail_after(WAIT):
                await started.wait()
            await worker.stop()


async def test_a_cancel_from_elsewhere_stops_the_running_handler(db: Path) -> None:
    url = url_of(db, "poll_interval=0.05")
    async with opened(url) as remote, opened(url) as local:
        started, stopped = anyio.Event(), anyio.Event()
        worker = Worker(local, lease=60)  # lease renewal alone would notice after 20 s

        @worker.handler("t")
        async def handle(ctx: JobContext) -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            finally:
                stopped.set()

        job_id = await remote.enqueue("t")
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(WAIT):
                await started.wait()
                assert await remote.cancel(job_id, "changed my mind")
                await stopped.wait()
            await worker.stop()
        job = await local.get(job_id)
        assert job is not None
        assert (job.status, job.error) == (JobStatus.CANCELLED, "changed my mind")


async def test_a_subscriber_sees_changes_made_elsewhere(db: Path) -> None:
    url = url_of(db, "poll_interval=0.05")
    async with opened(url) as remote, opened(url) as local:
        job_id = await remote.enqueue("t")
        seen: list[tuple[str, float]] = []
        subscribed = anyio.Event()

        async def follow() -> None:
            async for update in _subscribed(Broadcaster(local), job_id, subscribed):
                seen.append((update.status.value, update.progress))

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            with anyio.fail_after(WAIT):
                await subscribed.wait()
                assert await remote.claim() is not None
                await _until(lambda: ("processing", 0.0) in seen)
                assert await remote.update(job_id, progress=0.5)
                await _until(lambda: ("processing", 0.5) in seen)
                assert await remote.complete(job_id, {"r": 1})
        assert seen == [
            ("pending", 0.0),
            ("processing", 0.0),
            ("processing", 0.5),
            ("complete", 1.0),
        ]


async def test_custom_updates_reach_subscribers_elsewhere_once(db: Path) -> None:
    url = url_of(db, "poll_interval=0.05")
    async with opened(url) as remote, opened(url) as local:
        job_id = await remote.enqueue("t")
        here: list[Any] = []
        there: list[Any] = []
        ready_here, ready_there = anyio.Event(), anyio.Event()

        async def follow(queue: JobQueue, seen: list[Any], ready: anyio.Event) -> None:
            async for update in _subscribed(Broadcaster(queue), job_id, ready):
                seen.append(update.data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow, local, here, ready_here)
            tg.start_soon(follow, remote, there, ready_there)
            with anyio.fail_after(WAIT):
                await ready_here.wait()
                await ready_there.wait()
                assert await Broadcaster(remote).send(job_id, data={"step": 1})
                await _until(lambda: {"step": 1} in here)
                assert await Broadcaster(local).send(job_id, data={"step": 2})
                await _until(lambda: {"step": 2} in there)
                assert await remote.claim() is not None
                assert await remote.complete(job_id)
        for seen in (here, there):  # each custom update once, in order; the end state last
            assert [d for d in seen if d is not None] == [{"step": 1}, {"step": 2}]
            assert seen[-1] is None


async def test_a_late_subscriber_gets_no_earlier_custom_update(db: Path) -> None:
    url = url_of(db, "poll_interval=0.05")
    async with opened(url) as remote, opened(url) as local:
        job_id = await remote.enqueue("t")
        await local.stats()  # open it: from now on it has something to catch up with
        assert await Broadcaster(remote).send(job_id, data={"early": True})
        seen: list[Any] = []
        ready = anyio.Event()

        async def follow() -> None:
            async for update in _subscribed(Broadcaster(local), job_id, ready):
                seen.append(update.data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            with anyio.fail_after(WAIT):
                await ready.wait()
                assert await Broadcaster(remote).send(job_id, data={"late": True})
                await _until(lambda: {"late": True} in seen)
                assert await remote.cancel(job_id)
        assert [d for d in seen if d is not None] == [{"late": True}]


async def _subscribed(
    broadcaster: Broadcaster, job_id: str, ready: anyio.Event
) -> AsyncIterator[Any]:
    async with aclosing(broadcaster.subscribe(job_id)) as updates:  # type: ignore[type-var]
        async for update in updates:
            ready.set()
            yield update


async def _until(condition: Any) -> None:
    while not condition():
        await anyio.sleep(0.01)


# -- several processes ---------------------------------------------------------------------------


@asynccontextmanager
async def processes() -> AsyncIterator[list[anyio.abc.Process]]:
    """Processes started in the body are killed (if still running) and reaped at the end."""
    started: list[anyio.abc.Process] = []
    try:
        yield started
    finally:
        with anyio.CancelScope(shield=True):
            for process in started:
                if process.returncode is None:
                    process.kill()
                await process.wait()


async def start_worker(
    started: list[anyio.abc.Process], url: str, out: Path, loop: str, *args: str
) -> anyio.abc.Process:
    command = [sys.executable, str(WORKER), url, str(out), "--loop", loop, *args]
    process = await anyio.open_process(command, stdout=None, stderr=None)
    started.append(process)
    return process


def executions(*files: Path) -> list[str]:
    return [line for f in files if f.exists() for line in f.read_text().split()]


async def test_three_processes_run_every_job_exactly_once(
    tmp_path: Path, anyio_backend: str
) -> None:
    url = url_of(tmp_path / "shared.db")
    async with opened(url) as queue:
        ids = []
        for start in range(0, 3000, 500):
            ids += await queue.enqueue_many(
                {"job_type": "work", "data": {"i": i}} for i in range(start, start + 500)
            )
        outs = [tmp_path / f"ran-{n}.txt" for n in range(3)]
        async with processes() as started:
            for out in outs:
                await start_worker(
                    started, url, out, anyio_backend, "--sleep", "0.01", "--until-empty"
                )
            with anyio.fail_after(60):
                for process in started:
                    assert await process.wait() == 0
        ran = executions(*outs)
        assert len(ran) == len(set(ran)) == 3000  # no job ran twice...
        assert set(ran) == set(ids)  # ...and every one ran
        assert sum(1 for out in outs if out.exists() and out.read_text()) >= 2  # shared work
        assert await queue.stats() == QueueStats(complete=3000)


PRODUCER = """
import sys, anyio
from jdobb_async_queue import JobQueue

async def main():
    queue = JobQueue(backend="sqlite", url=sys.argv[1])
    while True:
        print(await queue.enqueue("work"), flush=True)

anyio.run(main, backend=sys.argv[2])
"""


async def test_what_enqueue_returned_survives_a_sigkill(tmp_path: Path, anyio_backend: str) -> None:
    url = url_of(tmp_path / "shared.db")
    command = [sys.executable, "-c", PRODUCER, url, anyio_backend]
    returned: list[str] = []
    async with processes() as started:
        producer = await anyio.open_process(command, stderr=None)
        started.append(producer)
        assert producer.stdout is not None
        partial_line = ""
        with anyio.fail_after(WAIT):
            async for chunk in producer.stdout:
                *lines, partial_line = (partial_line + chunk.decode()).split("\n")
                returned += lines  # whole lines only: each an id enqueue returned
                if len(returned) >= 100:
                    break
        producer.send_signal(signal.SIGKILL)  # mid-stream: enqueues may be in flight
        await producer.wait()
    async with opened(url) as queue:
        for job_id in returned:  # every id enqueue returned was committed
            assert await queue.get(job_id) is not None, job_id
        assert (await queue.stats()).pending >= len(returned)


async def test_jobs_of_a_killed_worker_run_again_elsewhere(
    tmp_path: Path, anyio_backend: str
) -> None:
    url = url_of(tmp_path / "shared.db")
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    async with opened(url) as queue:
        ids = await queue.enqueue_many({"job_type": "work"} for _ in range(20))
        slow = ("--lease", "1.0", "--sleep", "0.3", "--concurrency", "4")
        async with processes() as started:
            victim = await start_worker(started, url, first, anyio_backend, *slow)
            with anyio.fail_after(WAIT):  # mid-run, with jobs in hand
                while len(executions(first)) < 6 or (await queue.stats()).processing == 0:
                    await anyio.sleep(0.01)
            victim.send_signal(signal.SIGKILL)
            assert await victim.wait() == -signal.SIGKILL
            held = await queue.list_jobs(JobStatus.PROCESSING)
            assert held  # the killed worker's jobs are still PROCESSING...
            survivor = await start_worker(
                started, url, second, anyio_backend, *slow, "--until-empty"
            )
            with anyio.fail_after(30):
                assert await survivor.wait() == 0
        for job_id in ids:  # ...and come back through lease expiry: nothing is lost
            job = await queue.get(job_id)
            assert job is not None
            assert job.status is JobStatus.COMPLETE, job
        assert set(executions(first, second)) == set(ids)
        rerun = {job.id for job in held}
        assert rerun <= set(executions(first))
        assert rerun <= set(executions(second))
