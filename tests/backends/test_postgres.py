"""The PostgreSQL backend against a real server, under asyncio and trio (issue 15).

What the contract suite (``tests/contract``) cannot show: the URL forms and their errors (never
a password in a message), one PostgreSQL schema per namespace created once on first use, a user
without the rights to create it, the database's clock against hosts whose clocks are 10 minutes
off, wake-ups, cancels and updates crossing processes by LISTEN/NOTIFY, a database restart in the
middle of a run, and the pool's bound on connections.

The session's server (``pg_url``) serves most tests, each in a namespace of its own, dropped at
the end; the roles and databases a test creates are dropped by it, and nothing else is touched.
A private cluster (:class:`~tests._pg_server.PostgresServer`, module-scoped) serves the restart
tests. Worker processes run :data:`_WORKER` (written to the test's tmp dir) and are always
killed at the end.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import anyio.abc
import psycopg
import pytest
from psycopg import sql

from jdobb_async_queue import (
    BackendUnavailable,
    Broadcaster,
    ConfigurationError,
    JobContext,
    JobQueue,
    JobStatus,
    Worker,
)
from jdobb_async_queue._records import Lease, Outcome
from jdobb_async_queue.backends.base import Notice
from jdobb_async_queue.backends.postgres import PostgresBackend, schema_name
from jdobb_async_queue.backends.postgres.store import updates_channel

from .._pg_server import PostgresServer
from .._redis_server import free_port

pytestmark = pytest.mark.anyio

WAIT = 10.0  # seconds: the bound of every wait that is not about speed
SKEW = 600.0  # seconds a skewed host's clock is off
PASSWORD = "s3cret-pw-do-not-leak"
TABLES = {"edges", "jobs", "messages", "schema_version", "workers"}


# -- helpers ----------------------------------------------------------------------------------


def run_sql(url: str, query: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
    """One statement on its own autocommit connection; its rows (none for a command)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


async def asql(url: str, query: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
    """:func:`run_sql` in a worker thread (the event loop keeps running)."""
    return await anyio.to_thread.run_sync(partial(run_sql, url, query, params))


def url_for(
    base: str,
    *,
    scheme: str = "postgresql",
    user: str | None = None,
    password: str | None = None,
    dbname: str | None = None,
    **query: str,
) -> str:
    """``base`` (a libpq URL) with another user, password, database or query parameters."""
    info = psycopg.conninfo.conninfo_to_dict(base)
    if user is None:
        user, password = str(info.get("user", "postgres")), password or info.get("password")
    auth = quote(user) + (f":{quote(str(password))}" if password else "")
    host, port = info.get("host", "127.0.0.1"), info.get("port", 5432)
    db = dbname or info.get("dbname", "postgres")
    params = {
        k: str(v)
        for k, v in info.items()
        if k not in ("user", "password", "host", "port", "dbname")
    }
    params.update(query)
    tail = f"?{urlencode(params)}" if params else ""
    return f"{scheme}://{auth}@{host}:{port}/{db}{tail}"


async def schemas_named(url: str, schema: str) -> list[str]:
    rows = await asql(url, "SELECT nspname FROM pg_namespace WHERE nspname = %s", (schema,))
    return [row[0] for row in rows]


async def tables_of(url: str, schema: str) -> set[str]:
    rows = await asql(url, "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    return {row[0] for row in rows}


async def versions_of(url: str, schema: str) -> list[int]:
    query = sql.SQL("SELECT version FROM {}.schema_version ORDER BY version").format(
        sql.Identifier(schema)
    )
    return [row[0] for row in await asql(url, query)]


def grant_namespace(url: str, schema: str, role: str) -> None:
    """What an administrator grants a user who may not create the namespace's schema."""
    s, r = sql.Identifier(schema), sql.Identifier(role)
    run_sql(url, sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r))
    run_sql(
        url,
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
            s, r
        ),
    )
    run_sql(url, sql.SQL("GRANT USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, r))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Wait until ``check()`` is true (polling: these tests watch other processes)."""
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.01)


def _record(job_id: str | None = None, *, now: float | None = None, **options: Any) -> Any:
    """A job record as a queue whose clock reads ``now`` (default: this host's) builds it."""
    from jdobb_async_queue._jobspec import build_record

    options = {"job_id": job_id or uuid.uuid4().hex, **options}
    return build_record("t", {}, options, now=now or time.time(), default_ttl=None)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def namespace() -> str:
    return f"test-pg-{uuid.uuid4().hex[:12]}"


async def _drop(url: str, namespaces: set[str]) -> None:
    for ns in namespaces:
        await PostgresBackend(url, namespace=ns).drop_namespace()


@pytest.fixture
async def backends(pg_url: str, namespace: str) -> AsyncIterator[Callable[..., PostgresBackend]]:
    """PostgresBackends (default: the test's namespace on the session server, no test clock:
    the database's now()), all closed and their namespaces dropped at the end."""
    made: list[PostgresBackend] = []

    def make(url: str | None = None, **kwargs: Any) -> PostgresBackend:
        kwargs.setdefault("namespace", namespace)
        backend = PostgresBackend(url or pg_url, **kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()
    await _drop(pg_url, {b.namespace for b in made})


@pytest.fixture
async def queues(pg_url: str, namespace: str) -> AsyncIterator[Callable[..., JobQueue]]:
    """JobQueues on the session server (default: the test's namespace), closed and their
    namespaces dropped at the end."""
    opened: list[JobQueue] = []

    def make(**kwargs: Any) -> JobQueue:
        kwargs.setdefault("namespace", namespace)
        if "backend" not in kwargs:
            kwargs.update(backend="postgres", url=pg_url)
        q = JobQueue(**kwargs)
        opened.append(q)
        return q

    yield make
    for q in opened:
        await q.close()
    await _drop(pg_url, {q.namespace for q in opened})


@pytest.fixture
def role(pg_url: str) -> Iterator[str]:
    """A login role of the test's own: no superuser, no CREATE anywhere; dropped at the end
    with whatever was granted to it in the session's database."""
    name = f"jdobb_test_{uuid.uuid4().hex[:10]}"
    run_sql(pg_url, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        run_sql(pg_url, sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        run_sql(pg_url, sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def database(pg_url: str) -> Iterator[str]:
    """A database of the test's own on which PUBLIC has no CREATE; dropped at the end."""
    name = f"jdobb_test_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(name)
    run_sql(pg_url, sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        run_sql(pg_url, sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(ident))
        yield name
    finally:
        run_sql(pg_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@pytest.fixture(scope="module")
def private_server() -> Iterator[PostgresServer]:
    """A cluster of this module's own, for the tests that restart it (never the shared one)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


# -- 1. URLs and errors -------------------------------------------------------------------------


def _postgres_scheme(url: str) -> str:
    return re.sub(r"^postgres(ql)?://", "postgres://", url)


@pytest.mark.parametrize(
    "form", ["name-and-url", "postgresql-url", "postgres-url", "name-and-postgres-url"]
)
async def test_url_forms(
    queues: Callable[..., JobQueue], pg_url: str, namespace: str, form: str
) -> None:
    postgresql = re.sub(r"^postgres(ql)?://", "postgresql://", pg_url)
    kwargs = {
        "name-and-url": {"backend": "postgres", "url": postgresql},
        "postgresql-url": {"backend": postgresql},
        "postgres-url": {"backend": _postgres_scheme(pg_url)},
        "name-and-postgres-url": {"backend": "postgres", "url": _postgres_scheme(pg_url)},
    }[form]
    queue = queues(**kwargs)
    backend = queue.backend
    assert isinstance(backend, PostgresBackend)
    assert backend.namespace == namespace and backend.schema == schema_name(namespace)
    job_id = await queue.enqueue("t", {"n": 1})
    job = await queue.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING and job.data == {"n": 1}
    # Stored in the namespace's own schema.
    query = sql.SQL("SELECT id FROM {}.jobs").format(sql.Identifier(backend.schema))
    assert await asql(pg_url, query) == [(job_id,)]


BAD_URLS = [
    ("postgres", "redis://127.0.0.1:6379/0"),
    ("postgres", f"mysql://user:{PASSWORD}@127.0.0.1/db"),
    ("postgres", f"user:{PASSWORD}@127.0.0.1:5432/postgres"),  # no scheme
    ("postgres", f"postgresql://user:{PASSWORD}@127.0.0.1/db?no_such_option=1"),
    ("postgres", f"postgresql://user:{PASSWORD}@127.0.0.1/db?sslmode"),
    (f"postgresql://%zz:{PASSWORD}@127.0.0.1/db", None),
    (f"postgresql://user:{PASSWORD}@[::1]x/db", None),  # libpq quotes the whole URI back
    (f"postgresql://user:{PASSWORD}@[::1/db", None),  # unbalanced bracket
    (f"postgres://user:{PASSWORD}@127.0.0.1:5432x/postgres", None),  # port not a number
]


async def _configuration_error(make: Callable[[], JobQueue]) -> ConfigurationError:
    """The ConfigurationError ``make()`` raises, or else the queue's first call."""
    try:
        queue = make()
    except ConfigurationError as exc:
        return exc
    try:
        with anyio.fail_after(WAIT), pytest.raises(ConfigurationError) as info:
            await queue.enqueue("t")
        return info.value
    finally:
        await queue.close()


@pytest.mark.parametrize(
    ("backend", "url"),
    BAD_URLS,
    ids=[
        "redis-scheme",
        "mysql-scheme",
        "no-scheme",
        "unknown-option",
        "option-without-value",
        "bad-percent-escape",
        "junk-after-ipv6-host",
        "unbalanced-ipv6-bracket",
        "port-not-a-number",
    ],
)
async def test_bad_urls_are_configuration_errors_without_the_password(
    backend: str, url: str | None
) -> None:
    """At construction, or at the latest on the first call; never BackendUnavailable (a
    worker would retry a URL that can never work) and never with the password."""
    the_url = url or backend
    errors = [
        await _configuration_error(
            lambda: JobQueue(backend=backend, url=url, namespace="never-created")
        ),
        await _configuration_error(
            lambda: JobQueue(backend=PostgresBackend(the_url, namespace="never-created"))
        ),
    ]
    for error in errors:
        assert PASSWORD not in str(error) and PASSWORD not in repr(error)


async def test_construction_does_no_io_and_an_unreachable_server_is_unavailable() -> None:
    port = free_port()
    url = f"postgresql://someone:{PASSWORD}@127.0.0.1:{port}/db"
    backend = PostgresBackend(url, namespace="nowhere", connect_timeout=1, retry_for=0.5)
    assert PASSWORD not in repr(backend)
    async with JobQueue(backend=backend) as queue:  # nothing connects yet
        for call in (partial(queue.enqueue, "t"), queue.stats):
            with anyio.fail_after(WAIT), pytest.raises(BackendUnavailable) as info:
                await call()
            assert f"127.0.0.1:{port}" in str(info.value)
            assert isinstance(info.value, ConnectionError)
            chained: BaseException | None = info.value
            while chained is not None:  # nor in what a traceback would print
                assert PASSWORD not in str(chained) and PASSWORD not in repr(chained)
                chained = chained.__cause__ or chained.__context__

        async def follow() -> None:
            async with aclosing(Broadcaster(queue).subscribe("some-job")) as updates:
                async for _ in updates:
                    pass

        with anyio.fail_after(WAIT), pytest.raises(BackendUnavailable) as sub:
            await follow()
        assert PASSWORD not in str(sub.value)


async def test_a_password_in_the_url_stays_out_of_reprs(pg_url: str, namespace: str) -> None:
    # The session server trusts loopback connections: the password is sent but not checked.
    url = url_for(pg_url, user="postgres", password=PASSWORD)
    async with JobQueue(backend=url, namespace=namespace) as queue:
        try:
            await queue.enqueue("t")
            assert PASSWORD not in repr(queue.backend)
            assert "***" in repr(queue.backend)
        finally:
            backend = queue.backend
            assert isinstance(backend, PostgresBackend)
            await backend.drop_namespace()


# -- 2. a schema per namespace --------------------------------------------------------------


async def test_schema_and_tables_are_created_on_first_use(
    backends: Callable[..., PostgresBackend], pg_url: str, namespace: str
) -> None:
    first = backends()
    assert first.schema == f"jdobb_{namespace}"
    assert await schemas_named(pg_url, first.schema) == []  # nothing before the first call
    [job_id] = await first.enqueue_many([_record()], now=time.time())
    assert await schemas_named(pg_url, first.schema) == [first.schema]
    assert await tables_of(pg_url, first.schema) == TABLES
    assert await versions_of(pg_url, first.schema) == [1]
    # A second backend on the namespace reuses it as it is.
    second = backends()
    record = await second.get(job_id, now=time.time())
    assert record is not None and record.status == "pending"
    assert await versions_of(pg_url, first.schema) == [1]
    # Nothing of the namespace lives outside its schema.
    outside = await asql(
        pg_url,
        "SELECT schemaname, tablename FROM pg_tables WHERE tablename = 'schema_version' "
        "AND schemaname <> %s AND schemaname LIKE %s",
        (first.schema, f"%{namespace}%"),
    )
    assert outside == []


async def test_backends_starting_together_create_the_schema_once(
    backends: Callable[..., PostgresBackend], pg_url: str
) -> None:
    many = [backends() for _ in range(6)]
    go = anyio.Event()
    ids: list[str] = []

    async def first_call(
        backend: PostgresBackend, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        task_status.started()
        await go.wait()
        ids.extend(await backend.enqueue_many([_record()], now=time.time()))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for backend in many:
                await tg.start(first_call, backend)
            go.set()  # all at once, each on its own connections
    assert await versions_of(pg_url, many[0].schema) == [1]
    assert await tables_of(pg_url, many[0].schema) == TABLES
    stats = await many[0].stats(now=time.time())
    assert stats.pending == 6 and len(set(ids)) == 6


async def test_namespaces_are_isolated(
    backends: Callable[..., PostgresBackend], pg_url: str
) -> None:
    other_ns = f"test-pg-other-{uuid.uuid4().hex[:8]}"
    ours, theirs = backends(), backends(namespace=other_ns)
    assert ours.schema != theirs.schema
    [mine] = await ours.enqueue_many([_record(unique_key="k")], now=time.time())
    [other] = await theirs.enqueue_many([_record(unique_key="k")], now=time.time())
    assert other != mine  # a unique key is per namespace
    assert await theirs.get(mine, now=time.time()) is None
    [claimed] = await theirs.claim_pending_job(None, worker_id="w", lease=30, now=time.time())
    assert claimed.id == other
    assert await theirs.claim_pending_job(None, worker_id="w", lease=30, now=time.time()) == []
    # Notices stay in their namespace: a cancel there never reaches a listener here.
    listener = backends()
    async with listener.listen() as notices:
        assert await theirs.cancel(other, "there", now=time.time())
        [held] = await ours.claim_pending_job(None, worker_id="w", lease=30, now=time.time())
        assert await ours.cancel(mine, "here", now=time.time())
        with anyio.fail_after(WAIT):
            async for notice in notices:
                if notice.kind == "cancel":
                    assert notice == Notice("cancel", mine, held.fence)
                    break
    # Dropping one namespace leaves the other.
    await theirs.drop_namespace()
    assert await schemas_named(pg_url, theirs.schema) == []
    assert (await ours.stats(now=time.time())).cancelled == 1


async def test_long_namespaces_get_distinct_schemas_within_63_bytes(
    backends: Callable[..., PostgresBackend],
) -> None:
    stem = f"test-pg-{uuid.uuid4().hex[:8]}-" + "n" * 60
    one, two = backends(namespace=stem + "-one"), backends(namespace=stem + "-two")
    assert len(one.schema.encode()) <= 63 and len(two.schema.encode()) <= 63
    assert one.schema != two.schema
    await one.enqueue_many([_record()], now=time.time())
    assert (await two.stats(now=time.time())).pending == 0
    assert (await one.stats(now=time.time())).pending == 1


# -- 3. rights ----------------------------------------------------------------------------------


async def test_a_user_without_rights_gets_a_configuration_error_and_nothing_is_created(
    pg_url: str, database: str, role: str, namespace: str
) -> None:
    db_url = url_for(pg_url, dbname=database)
    assert await asql(
        db_url, "SELECT has_database_privilege(%s, current_database(), 'CREATE')", (role,)
    ) == [(False,)]
    backend = PostgresBackend(url_for(pg_url, user=role, dbname=database), namespace=namespace)
    async with JobQueue(backend=backend) as queue:
        for _ in range(2):  # and again: no half-made schema to trip over the second time
            with anyio.fail_after(WAIT), pytest.raises(ConfigurationError) as info:
                await queue.enqueue("t")
            message = str(info.value)
            assert backend.schema in message
            assert "may not create" in message and "grant CREATE" in message
            assert "nothing was created" in message
    assert await schemas_named(db_url, backend.schema) == []


async def test_a_user_without_create_works_in_a_schema_an_administrator_made(
    backends: Callable[..., PostgresBackend], pg_url: str, role: str, namespace: str
) -> None:
    """The way out the error names: an administrator creates the namespace once."""
    admin = backends()
    await admin.stats(now=time.time())  # creates the schema and its tables
    await anyio.to_thread.run_sync(grant_namespace, pg_url, admin.schema, role)
    limited = backends(url_for(pg_url, user=role))
    async with JobQueue(backend=limited) as queue:
        job_id = await queue.enqueue("t")
        job = await queue.claim()
        assert job is not None and job.id == job_id
        assert await queue.complete(job_id, {"ok": True})
        done = await queue.get(job_id)
        assert done is not None and done.status is JobStatus.COMPLETE


async def test_a_user_without_temporary_claims_in_a_transaction(
    pg_url: str, role: str, database: str, namespace: str
) -> None:
    """Claims are functions of the session (pg_temp); a user who may not make temporary
    objects still claims, by a transaction of the same statements, and workers run."""
    db_url = url_for(pg_url, dbname=database)
    await anyio.to_thread.run_sync(
        run_sql,
        pg_url,
        sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)),
    )
    admin = PostgresBackend(db_url, namespace=namespace)
    try:
        await admin.stats(now=time.time())  # an administrator makes the namespace
        await anyio.to_thread.run_sync(grant_namespace, db_url, admin.schema, role)
        assert await asql(
            db_url, "SELECT has_database_privilege(%s, current_database(), 'TEMPORARY')", (role,)
        ) == [(False,)]
        limited = PostgresBackend(url_for(pg_url, user=role, dbname=database), namespace=namespace)
        async with JobQueue(backend=limited) as queue:
            ids = [await queue.enqueue("t"), await queue.enqueue("u", delay=0.01)]
            worker = Worker(queue, max_concurrent=2, poll_interval=0.05)
            ran: list[str] = []
            done = anyio.Event()

            async def handle(ctx: JobContext) -> None:
                ran.append(ctx.id)
                if len(ran) == 2:
                    done.set()

            worker.handler("t")(handle)
            worker.handler("u")(handle)
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                with anyio.fail_after(WAIT):
                    await done.wait()
                await worker.stop()
            assert sorted(ran) == sorted(ids)
            assert limited._pool.prepared is False  # it did take the transaction path
    finally:
        await admin.drop_namespace()
        await admin.aclose()


# -- 4. the database's clock ----------------------------------------------------------------


async def test_skewed_hosts_neither_reclaim_nor_retry_early_nor_drop_updates(
    backends: Callable[..., PostgresBackend],
) -> None:
    ahead, behind, producer = backends(), backends(), backends()

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
        assert abs(claimed.started_at - time.time()) < 1.0  # type: ignore[operator]
        assert await ahead.reclaim_expired(now=later()) == []
        assert await behind.renew(
            Lease(job_id=job_id, fence=claimed.fence), duration=2, now=earlier()
        )
        # Its retry, 30 s after the database's now, is not claimable by the host ahead.
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


async def test_caller_times_move_onto_the_database_clock(
    backends: Callable[..., PostgresBackend],
) -> None:
    ahead = backends()
    caller_now = time.time() + SKEW
    record = _record(now=caller_now)
    record.execute_at = caller_now + 60
    [job_id] = await ahead.enqueue_many([record], now=caller_now)
    stored = await ahead.get(job_id, now=caller_now)
    assert stored is not None and stored.execute_at is not None
    assert abs(stored.execute_at - (time.time() + 60)) < 2  # not 10 min late
    assert abs(stored.created_at - time.time()) < 2
    # purge's `before` on the caller's clock: a job that ended just now did not end 5 s ago.
    [done_id] = await ahead.enqueue_many([_record(now=caller_now)], now=caller_now)
    [r] = await ahead.claim_pending_job(None, worker_id="w", lease=5, now=caller_now)
    assert r.id == done_id
    assert await ahead.finish(Outcome(job_id=done_id, kind="complete"), now=caller_now)
    purge = ahead.purge
    assert await purge(["complete"], before=caller_now - 5, job_type=None, now=caller_now) == 0
    assert await purge(["complete"], before=caller_now + 5, job_type=None, now=caller_now) == 1


async def test_a_worker_on_a_host_ahead_runs_only_what_the_database_says_is_due(
    queues: Callable[..., JobQueue],
) -> None:
    behind, ahead = queues(), queues()
    # No test clock (the backends read now()): only the hosts' own clocks are off.
    behind.clock = lambda: time.time() - SKEW
    ahead.clock = lambda: time.time() + SKEW
    assert behind.backend.test_clock is None and ahead.backend.test_clock is None
    later_id = await behind.enqueue("t", delay=30)  # due 30 s from the database's now
    now_id = await behind.enqueue("t")
    worker = Worker(ahead, poll_interval=0.2, max_concurrent=4, lease=2)
    ran: list[str] = []
    started = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        ran.append(ctx.id)
        if ctx.id == now_id:
            started.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(WAIT):
            await started.wait()
        await worker.stop()
    # Had its due time stayed on the caller's clock (10 min ago) it was claimed with now_id.
    assert ran == [now_id]
    record = await ahead.backend.get(later_id, now=ahead.clock())
    assert record is not None and record.status == "pending"
    assert abs(record.execute_at - (time.time() + 30)) < 2  # type: ignore[operator]
    finished = await behind.backend.get(now_id, now=behind.clock())
    assert finished is not None and finished.status == "complete"
    assert abs(finished.completed_at - time.time()) < 2  # type: ignore[operator]


# -- 5. across processes, by LISTEN/NOTIFY ----------------------------------------------------

#: A worker in another process: polls every 30 s, so anything it does sooner was pushed to it.
#: Logs ``<event> <job id> <time.time()>`` per line; stops when the test closes its stdin.
_WORKER = """
import sys
import time

import anyio

from jdobb_async_queue import JobQueue, Worker


async def main(url, namespace, worker_id, log_path):
    log = open(log_path, "a", buffering=1)

    def note(event, job_id):
        log.write(f"{event} {job_id} {time.time():.6f}\\n")
        log.flush()

    async with JobQueue(backend=url, namespace=namespace) as queue:
        worker = Worker(queue, max_concurrent=4, worker_id=worker_id, poll_interval=30, lease=30)

        @worker.handler("noop")
        async def noop(ctx):
            note("run", ctx.id)

        @worker.handler("report")
        async def report(ctx):
            note("run", ctx.id)
            for step in (0.25, 0.5, 0.75):
                await anyio.sleep(0.05)
                await ctx.update(progress=step, message=f"at {step}")
            return {"done": True}

        @worker.handler("block")
        async def block(ctx):
            note("run", ctx.id)
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                note("cancelled", ctx.id)
                raise

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes stdin
            await worker.stop()
    log.close()


anyio.run(main, *sys.argv[1:5], backend=sys.argv[5])
"""


class OtherProcess:
    """One :data:`_WORKER` process; :meth:`stop` ends it gracefully."""

    def __init__(self, tmp_path: Path, url: str, namespace: str, loop: str) -> None:
        self.worker_id = f"elsewhere-{uuid.uuid4().hex[:6]}"
        self.log = tmp_path / f"{self.worker_id}.log"
        script = tmp_path / "other_worker.py"
        script.write_text(_WORKER)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), url, namespace, self.worker_id, str(self.log), loop],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def events(self) -> list[tuple[str, str, float]]:
        if not self.log.exists():
            return []
        lines = [line.split() for line in self.log.read_text().splitlines()]
        return [(e, j, float(t)) for e, j, t in lines]

    def at(self, event: str, job_id: str) -> float | None:
        return next((t for e, j, t in self.events() if (e, j) == (event, job_id)), None)

    async def running(self, queue: JobQueue) -> None:
        """Until it is registered (it listens before it registers, and claims after)."""

        async def registered() -> bool:
            assert self.proc.poll() is None, self.proc.communicate()[1].decode()[-2000:]
            return any(w.id == self.worker_id for w in await queue.workers())

        await eventually(registered, timeout=30)

    async def wait_for(self, event: str, job_id: str, timeout: float) -> float:
        async def logged() -> bool:
            return self.at(event, job_id) is not None

        await eventually(logged, timeout=timeout)
        found = self.at(event, job_id)
        assert found is not None
        return found

    def stop(self) -> None:
        """Close its stdin (it stops its worker gracefully) and check it exited cleanly."""
        _, err = self.proc.communicate(timeout=WAIT)
        assert self.proc.returncode == 0, err.decode()[-2000:]

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            self.proc.communicate(timeout=WAIT)  # reaps it and closes its pipes


@pytest.fixture
def other_process(
    tmp_path: Path, pg_url: str, namespace: str, anyio_backend: str
) -> Iterator[Callable[[], OtherProcess]]:
    """Start :data:`_WORKER` processes on the test's namespace; all killed at the end."""
    started: list[OtherProcess] = []

    def start() -> OtherProcess:
        other = OtherProcess(tmp_path, pg_url, namespace, anyio_backend)
        started.append(other)
        return other

    yield start
    for other in started:
        other.kill()


async def test_a_worker_in_another_process_starts_a_new_job_at_once(
    queues: Callable[..., JobQueue], other_process: Callable[[], OtherProcess]
) -> None:
    queue = queues()
    other = other_process()
    await other.running(queue)
    latencies = []
    for _ in range(5):
        t0 = time.time()
        job_id = await queue.enqueue("noop")
        # poll_interval is 30 s: only the NOTIFY can start it this soon.
        latencies.append(await other.wait_for("run", job_id, timeout=3) - t0)
    other.stop()
    assert statistics.median(latencies) < 1.0, latencies


async def test_a_cancel_stops_a_job_running_in_another_process(
    queues: Callable[..., JobQueue], other_process: Callable[[], OtherProcess]
) -> None:
    queue = queues()
    other = other_process()
    await other.running(queue)
    job_id = await queue.enqueue("block")
    await other.wait_for("run", job_id, timeout=WAIT)
    t0 = time.time()
    assert await queue.cancel(job_id, "enough") is True
    # Pushed: the lease is 30 s, so its renewals (every 10 s) cannot be what stopped it.
    stopped = await other.wait_for("cancelled", job_id, timeout=2)
    assert stopped - t0 < 2
    job = await queue.get(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED and job.error == "enough"
    other.stop()


async def test_a_broadcaster_here_sees_updates_of_a_job_run_in_another_process(
    queues: Callable[..., JobQueue], other_process: Callable[[], OtherProcess]
) -> None:
    queue = queues()
    job_id = await queue.enqueue("report")
    seen = []
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        other = other_process()
        with anyio.fail_after(30):
            async for update in updates:
                seen.append(update)
    assert seen[0].status is JobStatus.PENDING
    assert seen[-1].status is JobStatus.COMPLETE and seen[-1].results == {"done": True}
    progress = [u.progress for u in seen if u.status is JobStatus.PROCESSING]
    assert 0.75 in progress, seen
    assert progress == sorted(progress)
    messages = [u.message for u in seen if u.status is JobStatus.PROCESSING and u.message]
    assert "at 0.75" in messages, seen
    other.stop()


# -- 6. a database restart mid-run ----------------------------------------------------------

RESUME = 5.0  # seconds: workers must be back at work this soon after the server returns


@pytest.mark.parametrize("outage", [0.0, 5.0], ids=["restart", "down-5s"])
async def test_workers_resume_after_a_database_restart_and_lose_nothing(
    private_server: PostgresServer, outage: float
) -> None:
    namespace = f"test-pg-restart-{uuid.uuid4().hex[:8]}"
    queue = JobQueue(backend="postgres", url=private_server.url, namespace=namespace)
    worker = Worker(queue, poll_interval=0.5, max_concurrent=4, lease=2)
    done: Counter[str] = Counter()
    enough, resumed, finished = anyio.Event(), anyio.Event(), anyio.Event()
    second: set[str] = set()
    expected: set[str] = set()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        done[ctx.id] += 1
        await anyio.sleep(0.02)
        if len(done) >= 20:
            enough.set()
        if ctx.id in second:
            resumed.set()
        if expected and expected <= done.keys():
            finished.set()

    try:
        first = await queue.enqueue_many([{"job_type": "t"} for _ in range(200)])
        watched: list[JobStatus] = []

        async def follow(job_id: str) -> None:
            # A subscriber rides out the outage (retry_for 10 s) and sees the job end.
            async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
                async for update in updates:
                    watched.append(update.status)

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow, first[-1])
            tg.start_soon(worker.run)
            with anyio.fail_after(WAIT):
                await enough.wait()

            def restart() -> None:
                private_server.stop()
                time.sleep(outage)  # the server stays down this long: the outage itself
                private_server.start()

            await anyio.to_thread.run_sync(restart)
            before = set(done)
            assert not set(first) <= before  # the restart did come mid-run
            second.update(await queue.enqueue_many([{"job_type": "t"} for _ in range(100)]))
            expected.update(first, second)
            with anyio.fail_after(RESUME):
                await resumed.wait()  # back at work within 5 s of the server's return
            with anyio.fail_after(30):
                if not expected <= done.keys():
                    await finished.wait()
            await worker.stop()
        assert set(done) == expected
        stats = await queue.stats()
        assert (stats.complete, stats.pending, stats.processing) == (300, 0, 0)
        for job_id in expected:  # none lost: every one COMPLETE
            job = await queue.get(job_id)
            assert job is not None and job.status is JobStatus.COMPLETE
        assert watched[0] in (JobStatus.PENDING, JobStatus.PROCESSING)
        assert watched[-1] is JobStatus.COMPLETE
    finally:
        await queue.close()
        await PostgresBackend(private_server.url, namespace=namespace).drop_namespace()


# -- 7. the pool's bound -----------------------------------------------------------------------


class ConnectionSampler:
    """Counts, in a thread, the connections a role has open (pg_stat_activity), every ~2 ms."""

    def __init__(self, admin_url: str, role: str) -> None:
        self.admin_url = admin_url
        self.role = role
        self.peak = 0
        self.pids: set[int] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self, conn: psycopg.Connection[Any]) -> int:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE usename = %s", (self.role,)
        ).fetchall()
        self.pids.update(row[0] for row in rows)
        return len(rows)

    def _run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            while not self._stop.is_set():
                self.peak = max(self.peak, self.count(conn))
                self.samples += 1
                self._stop.wait(0.002)  # the sampling period, not a synchronisation

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT)

    def now(self) -> int:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            return self.count(conn)


@pytest.fixture
async def limited_url(backends: Callable[..., PostgresBackend], pg_url: str, role: str) -> str:
    """A URL of the test's own role, allowed 3 connections at most (2 for calls + 1 for
    LISTEN: a 4th fails), on the test's namespace that an administrator created for it."""
    admin = backends()
    await admin.stats(now=time.time())
    await anyio.to_thread.run_sync(grant_namespace, pg_url, admin.schema, role)
    await asql(pg_url, sql.SQL("ALTER ROLE {} CONNECTION LIMIT 3").format(sql.Identifier(role)))
    await admin.aclose()
    return url_for(pg_url, user=role, application_name=f"jdobb-pool-{uuid.uuid4().hex[:6]}")


async def test_twenty_concurrent_calls_use_at_most_pool_size_connections(
    backends: Callable[..., PostgresBackend], pg_url: str, role: str, limited_url: str
) -> None:
    backend = backends(limited_url, pool_size=2)
    queue = JobQueue(backend=backend)
    calls = 0
    with ConnectionSampler(pg_url, role) as sampler:
        async with backend.listen():  # opens the one LISTEN connection
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:

                    async def call(i: int) -> None:
                        nonlocal calls
                        if i % 3 == 0:
                            await queue.enqueue_many([{"job_type": "t"}] * 100)
                        elif i % 3 == 1:
                            await queue.stats()
                        else:
                            await queue.list_jobs(limit=50)
                        calls += 1

                    for i in range(20):
                        tg.start_soon(call, i)
            open_now = await anyio.to_thread.run_sync(sampler.now)
    assert calls == 20
    assert sampler.samples > 0
    assert sampler.peak <= 3, sampler.peak
    assert open_now == 3  # the pool keeps both, plus the LISTEN one
    assert len(sampler.pids) <= 3, sampler.pids  # none closed and opened again


async def test_a_busy_worker_uses_at_most_pool_size_plus_one_connections(
    backends: Callable[..., PostgresBackend],
    pg_url: str,
    role: str,
    limited_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = backends(limited_url, pool_size=2)
    queue = JobQueue(backend=backend)
    worker = Worker(queue, max_concurrent=20, poll_interval=0.5, lease=5)
    done: set[str] = set()
    all_done = anyio.Event()
    ids: set[str] = set()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        await ctx.update(progress=0.5)
        await anyio.sleep(0.005)
        done.add(ctx.id)
        if ids and ids <= done:
            all_done.set()

    with ConnectionSampler(pg_url, role) as sampler:
        ids.update(await queue.enqueue_many([{"job_type": "t"}] * 300))
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(60):
                await all_done.wait()
            await worker.stop()
    assert (await queue.stats()).complete == 300
    assert 0 < sampler.peak <= 3, sampler.peak
    assert len(sampler.pids) <= 3, sampler.pids
    # A 4th connection would have been refused (CONNECTION LIMIT 3) and the worker retried.
    refused = [r.getMessage() for r in caplog.records if "too many connections" in r.getMessage()]
    assert refused == []


# -- plans that stay cheap on a queue table's stale statistics ---------------------------------


def _rows_read(plan: dict[str, Any]) -> int:
    """The most rows any scan node of an ``EXPLAIN (ANALYZE, FORMAT JSON)`` plan read: those
    it returned and those its filters threw away, over all its loops."""
    read = 0
    if "Scan" in plan["Node Type"]:
        per_loop = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        read = (per_loop + plan.get("Rows Removed by Index Recheck", 0)) * plan["Actual Loops"]
    read += plan.get("Rows Removed by Join Filter", 0)
    return max([read, *(_rows_read(p) for p in plan.get("Plans", []))])


def _explain(
    conn: psycopg.Connection[Any], query: str, params: dict[str, Any], *, generic: bool = False
) -> int:
    """Rows the busiest scan of ``query`` read, run after ``BY_KEY`` (as the store runs it) and
    rolled back; with ``generic``, by the plan made for any parameters (the claim functions'),
    not for these."""
    from jdobb_async_queue.backends.postgres import queries

    with conn.transaction(force_rollback=True):
        conn.execute(queries.BY_KEY)
        if not generic:
            row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchone()
        else:
            names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", query)))
            numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", query)
            conn.execute(f"SET LOCAL plan_cache_mode = {queries.GENERIC}")
            conn.execute(sql.SQL("PREPARE generic AS {}").format(sql.SQL(numbered)))
            values = sql.SQL(", ").join(sql.Literal(params[name]) for name in names)
            explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE generic ({})")
            row = conn.execute(explain.format(values)).fetchone()
            conn.execute("DEALLOCATE generic")
    assert row is not None
    return _rows_read(row[0][0]["Plan"])


async def test_claims_and_completions_read_only_the_rows_they_change(
    backends: Callable[..., PostgresBackend], pg_url: str
) -> None:
    # A backlog filled since the table's last ANALYZE (as every fresh burst is): the planner
    # thinks it holds a handful of rows. A claim must still walk the ready index in order and
    # stop at its limit, and a batch of completions or renewals find its jobs by id, whatever
    # the status index offers; before, each read every ready (or processing) job: a cost
    # growing with the backlog on every call. Each runs as the store runs it (after BY_KEY).
    from jdobb_async_queue._jobspec import build_record
    from jdobb_async_queue.backends.postgres import queries

    backend = backends()
    now = time.time()
    backlog = [build_record(f"t{i % 2}", {}, {}, now=now, default_ttl=None) for i in range(3000)]
    await backend.enqueue_many(backlog, now=now)
    claimed = await backend.claim_pending_job(
        ["t0"], limit=100, worker_id="w", lease=60, now=time.time()
    )
    assert len(claimed) == 100
    # Jobs waiting on the claimed ones: ten on each of the first 80, one on each of the last 20
    # (whose completion is planned below, with the release of their dependents).
    waiting = [r.id for r in claimed[:80] for _ in range(10)] + [r.id for r in claimed[-20:]]
    await JobQueue(backend=backend).enqueue_many(
        [{"job_type": "w", "depends_on": [dep]} for dep in waiting]
    )

    def explain() -> tuple[int, ...]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(backend.schema)))
            common = {"now": None, "cnow": time.time(), "worker_id": "w", "lease": 60.0}
            channels = {"channel": backend.schema, "uchannel": updates_channel(backend.schema)}
            common.update(limit=20, origin="test", **channels)
            by_type = _explain(conn, queries.CLAIM_TYPES, {**common, "types": ["t0", "t1"]})
            any_type = _explain(conn, queries.CLAIM_ANY, common)
            # The claim functions plan once, for any parameters: that plan must walk by key too.
            claims = [
                _explain(conn, queries.CLAIM_TYPES, {**common, "types": ["t0", "t1"]}, generic=True),
                _explain(conn, queries.CLAIM_ANY, common, generic=True),
            ]
            ids = [r.id for r in claimed[-20:]]  # the last ones a status walk would reach
            outcomes = json.dumps([{"id": i, "fence": None, "results": None} for i in ids])
            complete = _explain(conn, queries.COMPLETE_MANY, {**common, "outcomes": outcomes})
            # The completion function's statements plan once too: completions, then the release
            # of their dependents.
            completion = max(
                _explain(conn, queries.COMPLETE_TOLD, {**common, "outcomes": outcomes}, generic=True),
                _explain(conn, queries.RELEASE_DEPENDENTS, {**common, "ids": ids}, generic=True),
            )
            leases = json.dumps([{"id": r.id, "fence": r.fence} for r in claimed[-20:]])
            renew = _explain(conn, queries.RENEW, {**common, "leases": leases, "duration": 60.0})
            return by_type, any_type, *claims, complete, completion, renew

    found = await anyio.to_thread.run_sync(explain)
    by_type, any_type, generic_by_type, generic_any, complete, completion, renew = found
    assert by_type <= 2 * 20, by_type  # the first 20 of each type at most
    assert any_type <= 20, any_type
    assert generic_by_type <= 2 * 20, generic_by_type
    assert generic_any <= 20, generic_any
    assert complete <= 20, complete
    assert completion <= 20, completion
    assert renew <= 20, renew


async def test_completions_alone_are_one_statement_that_releases_their_dependents(
    backends: Callable[..., PostgresBackend],
) -> None:
    # A batch of completions of distinct jobs (a worker's every batch while its jobs succeed)
    # is one call of the session's completion function, on the event loop: no transaction in
    # a thread. It still refuses a stale claim's report, stores results, and counts completed
    # dependencies off the jobs waiting on them.
    backend = backends()
    queue = JobQueue(backend=backend)
    a, b, c = [await queue.enqueue("t") for _ in range(3)]
    child = await queue.enqueue("t", depends_on=[a, b])
    claimed = await backend.claim_pending_job(
        None, limit=3, worker_id="w", lease=30, now=queue.clock()
    )
    fence = {r.id: r.fence for r in claimed}
    assert sorted(fence) == sorted([a, b, c])
    transactions = 0
    in_a_thread = backend._pool.call

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal transactions
        transactions += 1
        return await in_a_thread(*args, **kwargs)

    backend._pool.call = counted  # type: ignore[method-assign]
    outcomes = [
        Outcome(job_id=a, kind="complete", fence=fence[a], results={"n": 1}),
        Outcome(job_id=b, kind="complete", fence=fence[b]),
        Outcome(job_id=c, kind="complete", fence=fence[c] + 1),  # an older claim's report
    ]
    assert await backend.finish_many(outcomes, now=queue.clock()) == [True, True, False]
    assert transactions == 0
    done, other = await queue.get(a), await queue.get(c)
    assert done is not None and done.status is JobStatus.COMPLETE and done.results == {"n": 1}
    assert other is not None and other.status is JobStatus.PROCESSING
    (freed,) = await backend.claim_pending_job(
        None, limit=5, worker_id="w", lease=30, now=queue.clock()
    )
    assert freed.id == child


async def test_a_claim_that_locked_more_than_it_took_wakes_the_other_claimers(
    backends: Callable[..., PostgresBackend], pg_url: str
) -> None:
    # A claim by two types locks the first `limit` of each, takes `limit` of them, and the rest
    # were skipped by other claimers meanwhile: at its COMMIT it wakes them ('j'); a claim
    # that locked only what it took wakes no one.
    from jdobb_async_queue._jobspec import build_record

    backend = backends()
    now = time.time()
    jobs = [build_record(t, {}, {}, now=now, default_ttl=None) for t in ["a"] * 5 + ["b"] * 5]
    await backend.enqueue_many(jobs, now=now)
    await backend.stats(now=now)

    def wake_ups(claim: Callable[[], Awaitable[Any]]) -> list[str]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(backend.schema)))
            anyio.from_thread.run(claim)
            return [n.payload for n in conn.notifies(timeout=0.5) if n.payload == "j"]

    async def both() -> None:
        taken = await backend.claim_pending_job(
            ["a", "b"], limit=5, worker_id="w", lease=60, now=time.time()
        )
        assert [r.job_type for r in taken] == ["a"] * 5  # FIFO across the types

    async def one_type() -> None:
        taken = await backend.claim_pending_job(
            ["b"], limit=5, worker_id="w", lease=60, now=time.time()
        )
        assert [r.job_type for r in taken] == ["b"] * 5

    assert await anyio.to_thread.run_sync(wake_ups, both) == ["j"]
    assert await anyio.to_thread.run_sync(wake_ups, one_type) == []


async def test_a_call_that_waited_for_a_connection_keeps_its_times(
    queues: Callable[..., JobQueue], pg_url: str, namespace: str
) -> None:
    # One connection, held 1.5 s by another call: the enqueue waits for it longer than the
    # clocks' tolerance. The wait is not a clock difference: the job's times stay the caller's.
    backend = PostgresBackend(pg_url, namespace=namespace, pool_size=1)
    queue = queues(backend=backend)
    await queue.stats()  # the schema exists, the one connection is open
    held = anyio.Event()

    def hold(conn: psycopg.Connection[Any]) -> None:
        anyio.from_thread.run_sync(held.set)
        conn.execute("SELECT pg_sleep(1.5)")

    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(backend._pool.call, hold))
        with anyio.fail_after(WAIT):
            await held.wait()
        called = time.time()
        job_id = await queue.enqueue("t", delay=60.0)
        assert time.time() - called > 1.2  # it did wait for the connection
    job = await queue.get(job_id)
    assert job is not None and job.execute_at is not None
    assert abs(job.created_at.timestamp() - called) < 0.5
    assert abs(job.execute_at.timestamp() - (called + 60.0)) < 0.5


# -- one statement on the event loop (Pool.execute: a plain enqueue, a claim) ------------------


async def test_statements_prepared_on_the_loop_survive_psycopg_deallocating_them(
    queues: Callable[..., JobQueue], pg_url: str, namespace: str
) -> None:
    # psycopg deallocates every prepared statement of a connection after a ROLLBACK or a DROP
    # on it (DEALLOCATE ALL), ours included; and what we remember may lag behind the server.
    from jdobb_async_queue.backends.postgres import pool

    backend = PostgresBackend(pg_url, namespace=namespace, pool_size=1)
    queue = queues(backend=backend)

    async def enqueue_and_claim() -> None:
        job_id = await queue.enqueue("t")
        claimed = await backend.claim_pending_job(["t"], limit=1, worker_id="w", lease=60, now=0)
        assert [r.id for r in claimed] == [job_id]

    await enqueue_and_claim()  # (the first claim also sweeps expired jobs: a transaction)
    await enqueue_and_claim()  # both statements prepared on the one connection

    def deallocate(conn: psycopg.Connection[Any]) -> int:
        conn.execute("DEALLOCATE ALL")
        return len(pool._PREPARED[conn])

    assert await backend._pool.call(deallocate) == 2  # we still think both are prepared
    await enqueue_and_claim()  # prepared again

    def forget(conn: psycopg.Connection[Any]) -> None:
        pool._PREPARED[conn].clear()  # the server has them; we think it has not

    await backend._pool.call(forget)
    await enqueue_and_claim()


async def test_a_cancelled_enqueue_finishes_its_statement_and_the_connection_stays_in_step(
    queues: Callable[..., JobQueue], pg_url: str, namespace: str
) -> None:
    # The statement runs on the event loop, shielded: cancelling its caller while the server
    # works on it must neither leave its reply unread (the next call on the one connection
    # would read it) nor lose the job the server stored.
    backend = PostgresBackend(pg_url, namespace=namespace, pool_size=1)
    queue = queues(backend=backend)
    await queue.stats()
    locked = anyio.Event()
    release = threading.Event()

    def lock_jobs() -> None:  # another session holds the table: the INSERT waits for it
        with psycopg.connect(pg_url) as conn:
            conn.execute(sql.SQL("LOCK TABLE {}.jobs").format(sql.Identifier(backend.schema)))
            anyio.from_thread.run_sync(locked.set)
            release.wait(WAIT)

    job_id = uuid.uuid4().hex
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(anyio.to_thread.run_sync, lock_jobs))
        with anyio.fail_after(WAIT):
            await locked.wait()
        with anyio.CancelScope() as scope:
            tg.start_soon(_cancel_when_waiting, scope, pg_url, release)
            with anyio.fail_after(WAIT):
                await queue.enqueue("t", job_id=job_id)
    assert scope.cancel_called  # while the server worked on the INSERT
    job = await queue.get(job_id)  # the next call on the same connection
    assert job is not None and job.status is JobStatus.PENDING
    assert await queue.enqueue("t") != job_id


async def _cancel_when_waiting(
    scope: anyio.CancelScope, pg_url: str, release: threading.Event
) -> None:
    """Cancel ``scope`` once a session waits for the lock on the jobs table, then release it."""
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s"
    try:
        with anyio.fail_after(WAIT):
            while (await asql(pg_url, waiting, ("%INSERT INTO jobs%",)))[0][0] == 0:
                await anyio.sleep(0.01)  # polls the server: no event to await for its lock queue
        scope.cancel()
    finally:
        release.set()


async def test_a_completion_that_loses_a_deadlock_runs_again(
    backends: Callable[..., PostgresBackend], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The completion function locks its jobs' rows one by one. Another session holding one of
    # them and then asking for one the completion holds is a deadlock; the server aborts the
    # completion (the other session waits longer before it checks), which must run again, as
    # a transaction does, not end the worker. Which row the completion takes first is its
    # plan's choice: the other session probes (NOWAIT) whether the completion holds the second
    # row before it waits for it, and tries again, the other way round, until one deadlocks.
    from jdobb_async_queue.backends.postgres import pool

    backend = backends()
    queue = JobQueue(backend=backend)
    seen: list[str] = []
    execute = pool._execute

    async def noting(*args: Any, **kwargs: Any) -> Any:
        try:
            return await execute(*args, **kwargs)
        except psycopg.errors.DeadlockDetected:
            seen.append("deadlock")
            raise

    monkeypatch.setattr(pool, "_execute", noting)  # instrumentation: the real call runs
    lock = sql.SQL("SELECT 1 FROM {}.jobs WHERE id = %s FOR UPDATE").format(
        sql.Identifier(backend.schema)
    )
    for attempt in range(6):
        ids = [await queue.enqueue("t") for _ in range(2)]
        claimed = await backend.claim_pending_job(
            None, limit=2, worker_id="w", lease=30, now=queue.clock()
        )
        fence = {r.id: r.fence for r in claimed}
        outcomes = [Outcome(job_id=i, kind="complete", fence=fence[i]) for i in ids]
        first, second = ids if attempt % 2 else ids[::-1]
        other = await anyio.to_thread.run_sync(partial(psycopg.connect, pg_url))
        try:
            other.execute("SET deadlock_timeout = '10s'")
            other.execute(lock, (first,))
            stored: list[list[bool]] = []
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_finish_into, stored, backend, outcomes, queue.clock())
                    await _until_waiting_for_a_lock(pg_url, "%jdobb_complete%")
                    await anyio.to_thread.run_sync(_take_too, other, lock, second)
            assert stored == [[True, True]]
        finally:
            await anyio.to_thread.run_sync(other.close)
        if seen:
            break
    assert seen == ["deadlock"]


async def _finish_into(
    stored: list[list[bool]], backend: PostgresBackend, outcomes: list[Outcome], now: float
) -> None:
    stored.append(await backend.finish_many(outcomes, now=now))


def _take_too(other: psycopg.Connection[Any], lock: sql.Composed, job_id: str) -> None:
    """Lock ``job_id``'s row as well, waiting only if the completion holds it, then commit."""
    other.execute("SAVEPOINT probe")
    try:
        other.execute(lock + sql.SQL(" NOWAIT"), (job_id,))
    except psycopg.errors.LockNotAvailable:  # the completion holds it: wait for it
        other.execute("ROLLBACK TO SAVEPOINT probe")
        other.execute(lock, (job_id,))  # until the server aborts the completion
    other.commit()


async def _until_waiting_for_a_lock(pg_url: str, query_like: str) -> None:
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s"
    )
    while (await asql(pg_url, waiting, (query_like,)))[0][0] == 0:
        await anyio.sleep(0.01)  # polls the server: no event to await for its lock queue
