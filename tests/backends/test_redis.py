"""The Redis backend against real redis-server processes, under asyncio and trio.

What the contract suite (``tests/contract``) cannot show: URLs and credentials, namespaces,
wake-up latency, several worker processes sharing one queue (cross-process updates and
cancellation, exactly-once completion, a worker killed with SIGKILL), a server restart in the
middle of a run, and the memory bound (the namespace's key count returns to its baseline).

The session's server (``redis_url``) serves most tests, each in a namespace of its own; a
private server (AOF on, a unix socket) serves those that restart it or change its users.
Worker processes run ``redis_procs/worker.py`` and are always killed at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import pytest

from jdobb_async_queue import (
    BackendUnavailable,
    Broadcaster,
    ConfigurationError,
    JobContext,
    JobQueue,
    JobStatus,
    Worker,
)
from jdobb_async_queue.backends.redis import RedisBackend
from jdobb_async_queue.backends.redis.resp import RedisClient
from jdobb_async_queue.testing import MockClock

from .._redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio

WAIT = 10.0  # seconds: the bound of every wait that is not about speed
WORKER_SCRIPT = Path(__file__).parent / "redis_procs" / "worker.py"


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_server() -> Iterator[RedisServer]:
    """A server of this module's own: durable (AOF, fsync always) and on a unix socket too."""
    directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"jdobb-redis-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    server = RedisServer(
        directory=directory,
        extra_args=(
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--unixsocket",
            str(directory / "redis.sock"),
            "--unixsocketperm",
            "700",
        ),
    )
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def namespace() -> str:
    return f"test-redis-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[RedisClient]:
    """A raw client on the session server, for looking at keys."""
    async with RedisClient.from_url(redis_url) as client:
        yield client


@pytest.fixture
async def queue_factory(redis_url: str, namespace: str) -> AsyncIterator[Callable[..., JobQueue]]:
    """Open queues on the session server in the test's namespace; drop it at the end."""
    opened: list[JobQueue] = []

    def make(**kwargs: Any) -> JobQueue:
        q = JobQueue(backend="redis", url=redis_url, namespace=namespace, **kwargs)
        opened.append(q)
        return q

    yield make
    if opened:
        backend = opened[0].backend
        assert isinstance(backend, RedisBackend)
        await backend.drop_namespace()
    for q in opened:
        await q.close()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test starts; all of them are killed at the end, whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT)  # reaps it and closes its pipe


def start_worker(
    processes: list[subprocess.Popen[bytes]],
    url: str,
    namespace: str,
    loop: str,
    log: Path,
    *,
    lease: float = 30.0,
    concurrency: int = 10,
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        str(WORKER_SCRIPT),
        "--url",
        url,
        "--namespace",
        namespace,
        "--loop",
        loop,
        "--log",
        str(log),
        "--ready",
        str(log) + ".ready",
        "--lease",
        str(lease),
        "--concurrency",
        str(concurrency),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    processes.append(proc)
    return proc


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Wait until ``check()`` is true (polling: these tests watch other processes)."""
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.02)


async def listeners(client: RedisClient, namespace: str) -> int:
    """How many workers listen for the namespace's notices (one per worker process)."""
    reply = await client.execute("PUBSUB", "NUMSUB", f"jdobb:{{{namespace}}}:notices")
    return int(reply[1])


async def wait_for_workers(client: RedisClient, namespace: str, count: int) -> None:
    async def ready() -> bool:
        return await listeners(client, namespace) >= count

    await eventually(ready, timeout=30)


async def namespace_keys(client: RedisClient, namespace: str) -> set[bytes]:
    found: set[bytes] = set()
    cursor = b"0"
    while True:
        cursor, keys = await client.execute(
            "SCAN", cursor, "MATCH", f"jdobb:{{{namespace}}}:*", "COUNT", 1000
        )
        found.update(keys)
        if cursor == b"0":
            return found


def log_lines(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()]  # type: ignore[misc]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a worker gracefully and check it exited cleanly."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err.decode()


# -- URLs, credentials, errors ----------------------------------------------------------------


async def test_database_number_in_the_url(
    redis_url: str, admin: RedisClient, namespace: str
) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/3"
    async with JobQueue(backend="redis", url=url, namespace=namespace) as queue:
        job_id = await queue.enqueue("t")
        assert await admin.execute("EXISTS", f"jdobb:{{{namespace}}}:job:{job_id}") == 0
        async with RedisClient.from_url(url) as db3:
            assert await db3.execute("EXISTS", f"jdobb:{{{namespace}}}:job:{job_id}") == 1
        backend = queue.backend
        assert isinstance(backend, RedisBackend)
        await backend.drop_namespace()


async def test_unix_socket(private_server: RedisServer, namespace: str) -> None:
    url = f"unix://{private_server.directory / 'redis.sock'}?db=1"
    async with JobQueue(url, namespace=namespace) as queue:
        job_id = await queue.enqueue("t", {"via": "socket"})
        job = await queue.claim()
        assert job is not None
        assert job.id == job_id
        assert job.data == {"via": "socket"}
        backend = queue.backend
        assert isinstance(backend, RedisBackend)
        await backend.drop_namespace()


async def test_acl_user_and_wrong_password(private_server: RedisServer, namespace: str) -> None:
    user = f"jdobb-{uuid.uuid4().hex[:6]}"
    host = f"127.0.0.1:{private_server.port}"
    async with RedisClient.from_url(private_server.url) as admin:
        await admin.execute("ACL", "SETUSER", user, "on", ">s3cret", "~*", "&*", "+@all")
        try:
            good = f"redis://{user}:s3cret@{host}/0"
            async with JobQueue(backend="redis", url=good, namespace=namespace) as queue:
                job_id = await queue.enqueue("t")
                assert (await queue.get(job_id)) is not None
                backend = queue.backend
                assert isinstance(backend, RedisBackend)
                await backend.drop_namespace()
            bad = f"redis://{user}:wrong@{host}/0"
            async with JobQueue(backend="redis", url=bad, namespace=namespace) as queue:
                with anyio.fail_after(WAIT), pytest.raises(ConfigurationError) as info:
                    await queue.enqueue("t")
                assert "wrong" not in str(info.value)  # the password is never repeated
                assert user in str(info.value)
        finally:
            await admin.execute("ACL", "DELUSER", user)


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:notaport/0",
        "redis:///0",
        "redis://localhost/zero",
        "unix://relative/path.sock",
        "redis://user@localhost/0",
        "redis://localhost/0?color=blue",
    ],
)
def test_bad_url_is_a_configuration_error_at_construction(url: str) -> None:
    with pytest.raises(ConfigurationError):
        JobQueue(backend="redis", url=url)
    with pytest.raises(ConfigurationError):
        RedisBackend(url)


async def test_construction_does_no_io_and_an_unreachable_server_is_unavailable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    backend = RedisBackend(url, namespace="nowhere", retry_for=0.3, connect_timeout=0.5)
    async with JobQueue(backend=backend) as queue:  # nothing connects yet
        with anyio.fail_after(WAIT), pytest.raises(BackendUnavailable) as info:
            await queue.enqueue("t")
        assert "127.0.0.1" in str(info.value)
        assert isinstance(info.value, ConnectionError)


def test_queue_can_be_made_outside_async_code(redis_url: str) -> None:
    queue = JobQueue(backend="redis", url=redis_url, namespace="made-in-sync-code")
    assert isinstance(queue.backend, RedisBackend)
    assert queue.backend.namespace == "made-in-sync-code"


# -- namespaces -------------------------------------------------------------------------------


async def test_namespaces_are_isolated(
    redis_url: str, admin: RedisClient, queue_factory: Callable[..., JobQueue]
) -> None:
    ours = queue_factory()
    other_ns = f"other-{uuid.uuid4().hex[:8]}"
    async with JobQueue(backend="redis", url=redis_url, namespace=other_ns) as theirs:
        mine = await ours.enqueue("t", unique_key="k")
        assert await theirs.enqueue("t", unique_key="k") != mine  # the key is per namespace
        assert (await ours.stats()).pending == 1
        assert (await theirs.stats()).pending == 1
        assert await theirs.get(mine) is None
        claimed = await theirs.claim()
        assert claimed is not None
        assert claimed.id != mine
        assert await theirs.claim() is None
        # Every key sits under its namespace's hash tag; dropping one leaves the other.
        ns = ours.backend
        assert isinstance(ns, RedisBackend)
        for key in await namespace_keys(admin, ns.namespace):
            assert key.startswith(f"jdobb:{{{ns.namespace}}}:".encode())
        other = theirs.backend
        assert isinstance(other, RedisBackend)
        await other.drop_namespace()
        assert await namespace_keys(admin, other_ns) == set()
        assert (await ours.stats()).pending == 1


async def test_namespace_with_glob_characters_drops_only_itself(
    redis_url: str, admin: RedisClient
) -> None:
    tricky, plain = "a*[b]?", "a-x-b-"
    async with (
        JobQueue(backend="redis", url=redis_url, namespace=tricky) as q1,
        JobQueue(backend="redis", url=redis_url, namespace=plain) as q2,
    ):
        await q1.enqueue("t")
        await q2.enqueue("t")
        b1, b2 = q1.backend, q2.backend
        assert isinstance(b1, RedisBackend)
        assert isinstance(b2, RedisBackend)
        await b1.drop_namespace()
        assert await namespace_keys(admin, plain)
        await b2.drop_namespace()
        assert await namespace_keys(admin, plain) == set()


# -- wake-ups and updates ---------------------------------------------------------------------


async def test_idle_worker_wakes_within_milliseconds(
    queue_factory: Callable[..., JobQueue],
) -> None:
    queue = queue_factory()
    worker = Worker(queue, poll_interval=10)
    started: dict[str, float] = {}
    got = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        started[ctx.id] = time.perf_counter()
        got.set()

    latencies = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        for _ in range(5):
            await anyio.sleep(0.1)  # idle: asleep for up to poll_interval
            got = anyio.Event()
            t0 = time.perf_counter()
            job_id = await queue.enqueue("t")
            with anyio.fail_after(1):
                await got.wait()
            latencies.append(started[job_id] - t0)
        await worker.stop()
    # Each within 1 s (fail_after above) while the worker polls every 10 s; typically ~1 ms.
    assert sorted(latencies)[2] < 0.25, latencies


async def test_updates_from_a_worker_in_another_process(
    redis_url: str,
    admin: RedisClient,
    queue_factory: Callable[..., JobQueue],
    namespace: str,
    anyio_backend: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    queue = queue_factory()
    job_id = await queue.enqueue("report")
    seen = []
    async with aclosing(Broadcaster(queue).subscribe(job_id)) as updates:
        proc = start_worker(processes, redis_url, namespace, anyio_backend, tmp_path / "w.log")
        with anyio.fail_after(30):
            async for update in updates:
                seen.append(update)
    assert seen[0].status is JobStatus.PENDING
    assert seen[-1].status is JobStatus.COMPLETE
    assert seen[-1].results == {"done": True}
    progress = [u.progress for u in seen if u.status is JobStatus.PROCESSING]
    assert 0.75 in progress, seen
    assert progress == sorted(progress)
    stop(proc)


async def test_cancel_reaches_a_worker_in_another_process(
    redis_url: str,
    admin: RedisClient,
    queue_factory: Callable[..., JobQueue],
    namespace: str,
    anyio_backend: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    queue = queue_factory()
    log = tmp_path / "w.log"
    proc = start_worker(processes, redis_url, namespace, anyio_backend, log)
    job_id = await queue.enqueue("block")

    async def running() -> bool:
        return ("run", job_id) in log_lines(log)

    await eventually(running, timeout=30)
    assert await queue.cancel(job_id, "enough") is True

    async def cancelled() -> bool:
        return ("cancelled", job_id) in log_lines(log)

    await eventually(cancelled, timeout=2)  # pushed: lease renewals come every 10 s only
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED
    assert job.error == "enough"
    stop(proc)


# -- many processes ---------------------------------------------------------------------------


async def test_three_processes_complete_each_job_exactly_once(
    redis_url: str,
    admin: RedisClient,
    queue_factory: Callable[..., JobQueue],
    namespace: str,
    anyio_backend: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    queue = queue_factory()
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    procs = [
        start_worker(processes, redis_url, namespace, anyio_backend, log, concurrency=20)
        for log in logs
    ]
    await wait_for_workers(admin, namespace, 3)
    ids: list[str] = []
    for _ in range(6):  # in batches, while the workers run
        ids += await queue.enqueue_many([{"job_type": "noop"} for _ in range(500)])

    async def all_done() -> bool:
        return (await queue.stats()).complete == len(ids)

    await eventually(all_done, timeout=60)
    for proc in procs:
        stop(proc)
    runs = Counter(job_id for log in logs for event, job_id in log_lines(log) if event == "run")
    assert set(runs) == set(ids)
    assert max(runs.values()) == 1, [j for j, n in runs.items() if n > 1][:5]
    per_process = [sum(1 for e, _ in log_lines(log) if e == "run") for log in logs]
    assert sum(per_process) == 3000
    assert all(n > 0 for n in per_process), per_process


async def test_a_worker_killed_mid_run_loses_no_job(
    redis_url: str,
    admin: RedisClient,
    queue_factory: Callable[..., JobQueue],
    namespace: str,
    anyio_backend: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    queue = queue_factory()
    ids = await queue.enqueue_many([{"job_type": "slow", "data": {"seconds": 0.02}}] * 200)
    first = start_worker(
        processes, redis_url, namespace, anyio_backend, tmp_path / "a.log", lease=1.0
    )

    async def some_ran() -> bool:
        return len(log_lines(tmp_path / "a.log")) >= 30

    await eventually(some_ran, timeout=30)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=WAIT)
    stats = await queue.stats()
    assert stats.processing > 0  # the dead worker held jobs: their leases must lapse
    second = start_worker(
        processes, redis_url, namespace, anyio_backend, tmp_path / "b.log", lease=1.0
    )

    async def all_done() -> bool:
        return (await queue.stats()).complete == len(ids)

    await eventually(all_done, timeout=60)
    stop(second)
    for job_id in ids:
        job = await queue.get(job_id)
        assert job is not None
        assert job.status is JobStatus.COMPLETE
    rerun = [j for _, j in log_lines(tmp_path / "b.log")]
    assert set(rerun) & {j for _, j in log_lines(tmp_path / "a.log")}  # recovered, run again


# -- faults -----------------------------------------------------------------------------------


async def test_server_restart_mid_run(private_server: RedisServer, namespace: str) -> None:
    queue = JobQueue(backend="redis", url=private_server.url, namespace=namespace)
    worker = Worker(queue, poll_interval=0.5, max_concurrent=5, lease=2)
    done: Counter[str] = Counter()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        done[ctx.id] += 1
        await anyio.sleep(0.01)

    ids = await queue.enqueue_many([{"job_type": "t"} for _ in range(100)])
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(WAIT):
                while len(done) < 20:
                    await anyio.sleep(0.005)
            await anyio.to_thread.run_sync(private_server.restart)
            ids += await queue.enqueue_many([{"job_type": "t"} for _ in range(100)])
            with anyio.fail_after(30):
                while (await queue.stats()).complete < len(ids):
                    await anyio.sleep(0.05)
            await worker.stop()
        assert set(done) == set(ids)
    finally:
        backend = queue.backend
        assert isinstance(backend, RedisBackend)
        await backend.drop_namespace()
        await queue.close()


# -- memory bound -----------------------------------------------------------------------------


async def test_key_count_returns_to_its_baseline(
    admin: RedisClient, queue_factory: Callable[..., JobQueue], namespace: str
) -> None:
    clock = MockClock()
    queue = queue_factory(clock=clock, default_ttl=3600)

    async def settle() -> None:
        """Let every ttl run out and trigger the cleanup (100 jobs per call)."""
        clock.advance(36_000)
        for _ in range(30):
            await queue.stats()
        assert await queue.claim() is None  # an idle claim: no notice pending

    # A first round leaves the keys every namespace keeps (the sequence counter, the claim memo).
    await _workload(queue, clock, 1)
    await settle()
    baseline = await namespace_keys(admin, namespace)
    assert len(baseline) <= 3, baseline

    await _workload(queue, clock, 300)
    assert len(await namespace_keys(admin, namespace)) > 300
    await settle()
    assert await namespace_keys(admin, namespace) == baseline
    assert (await queue.stats()).model_dump() == dict.fromkeys(
        ("pending", "processing", "complete", "failed", "cancelled", "scheduled", "waiting"), 0
    )


async def _workload(queue: JobQueue, clock: MockClock, n: int) -> None:
    """Jobs of every kind, all ending terminal: scheduled, retried, dependent, unique, failed,
    cancelled (directly and by a dependency)."""
    for i in range(n):
        a = await queue.enqueue("t", {"i": i}, unique_key=f"u{i}", max_retries=1, retry_delay=1)
        b = await queue.enqueue("t", depends_on=[a])
        c = await queue.enqueue("t", delay=5)
        d = await queue.enqueue("u", depends_on=[a, b])
        e = await queue.enqueue("t")
        await queue.cancel(e)
        job = await queue.claim(["t"])
        assert job is not None
        assert job.id == a
        await queue.fail(a, "flaky")  # retried in 1 s
        clock.advance(6)
        job = await queue.claim(["t"])
        assert job is not None
        assert job.id == a
        await queue.update(a, progress=0.5)
        await queue.complete(a, {"ok": True})
        job = await queue.claim(["t"])  # b: a is complete
        assert job is not None
        await queue.fail(job.id, "boom", retry=False)  # cancels d
        job = await queue.claim(["t"])
        assert job is not None
        assert job.id == c
        await queue.complete(c)
        assert (await queue.get(d)) is not None


# -- calls sent again after a lost reply ------------------------------------------------------


class LosesFirstReply:
    """Wraps a transport client: the first call of ``script`` runs, then its reply is "lost"."""

    def __init__(self, client: RedisClient, script: Any) -> None:
        self._client = client
        self._script = script
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def evalsha(self, script: Any, keys: Any, args: Any, **kwargs: Any) -> Any:
        reply = await self._client.evalsha(script, keys, args, **kwargs)
        return self._lose(script is self._script, reply)

    async def fcall(self, library: Any, function: str, keys: Any, args: Any, **kw: Any) -> Any:
        reply = await self._client.fcall(library, function, keys, args, **kw)
        return self._lose(function == self._script.function, reply)

    def _lose(self, mine: bool, reply: Any) -> Any:
        if mine and not self.lost:
            from jdobb_async_queue.backends.redis.resp import RedisConnectionError

            self.lost += 1
            raise RedisConnectionError("lost the connection before the reply (simulated)")
        return reply


def lose_first_reply(queue: JobQueue, name: str) -> LosesFirstReply:
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    wrapper = LosesFirstReply(backend._client, getattr(backend._scripts, name))
    backend._calls._client = wrapper  # type: ignore[assignment]
    return wrapper


@pytest.mark.parametrize("with_key", [False, True])
async def test_resent_enqueue_stores_once(
    queue_factory: Callable[..., JobQueue], with_key: bool
) -> None:
    queue = queue_factory()
    holder = await queue.enqueue("t", unique_key="k") if with_key else None
    lossy = lose_first_reply(queue, "enqueue")
    ids = await queue.enqueue_many(
        [{"job_type": "t", "job_id": "a"}, {"job_type": "t", "unique_key": "k", "job_id": "b"}]
    )
    assert lossy.lost == 1
    assert ids == ["a", holder or "b"]
    assert (await queue.stats()).pending == 2


async def test_resent_claim_returns_the_same_jobs(queue_factory: Callable[..., JobQueue]) -> None:
    queue = queue_factory()
    ids = await queue.enqueue_many([{"job_type": "t"} for _ in range(3)])
    lossy = lose_first_reply(queue, "claim")
    claimed = await queue.backend.claim_pending_job(
        None, limit=2, worker_id="w", lease=30, now=queue.clock()
    )
    assert lossy.lost == 1
    assert [r.id for r in claimed] == ids[:2]
    assert [r.attempts for r in claimed] == [1, 1]
    assert [r.fence for r in claimed] == [1, 1]
    assert (await queue.stats()).processing == 2


@pytest.mark.parametrize("operation", ["complete", "fail", "cancel", "retry"])
async def test_resent_transitions_report_success_once(
    queue_factory: Callable[..., JobQueue], operation: str
) -> None:
    queue = queue_factory()
    job_id = await queue.enqueue("t", max_retries=1)
    await queue.claim()
    if operation == "retry":
        await queue.cancel(job_id)
    script = "finish" if operation in ("complete", "fail") else operation
    lossy = lose_first_reply(queue, script)
    if operation == "complete":
        assert await queue.complete(job_id, {"r": 1}) is True
    elif operation == "fail":
        assert await queue.fail(job_id, "boom") is True
    elif operation == "cancel":
        assert await queue.cancel(job_id) is True
    else:
        assert await queue.retry(job_id) is True
    assert lossy.lost == 1
    job = await queue.get(job_id)
    assert job is not None
    expected = {
        "complete": JobStatus.COMPLETE,
        "fail": JobStatus.PENDING,  # retried later: its attempt counted once
        "cancel": JobStatus.CANCELLED,
        "retry": JobStatus.PENDING,
    }[operation]
    assert job.status is expected
    assert job.attempts == (0 if operation == "retry" else 1)


# -- odd names --------------------------------------------------------------------------------

ODD = "a b|c\nd\u2603{x}*"


async def test_ids_types_and_keys_with_odd_characters(
    queue_factory: Callable[..., JobQueue],
) -> None:
    queue = queue_factory()
    first = await queue.enqueue(ODD, {"k": ODD}, job_id=ODD, unique_key=ODD)
    second = await queue.enqueue(ODD, job_id=ODD + "2", depends_on=[first])
    assert first == ODD
    assert await queue.enqueue(ODD, unique_key=ODD) == ODD
    async with queue.backend.listen() as notices:
        lossy = lose_first_reply(queue, "claim")  # the claim memo holds odd ids too
        job = await queue.claim([ODD])
        assert lossy.lost == 1
        assert job is not None
        assert job.id == ODD
        assert job.data == {"k": ODD}
        assert await queue.cancel(ODD, ODD) is True
        with anyio.fail_after(WAIT):
            async for notice in notices:
                if notice.kind == "cancel":
                    assert notice.job_id == ODD
                    break
    dependent = await queue.get(second)
    assert dependent is not None
    assert dependent.status is JobStatus.CANCELLED
    assert dependent.error == f"dependency {ODD} cancelled"
    assert [j.id for j in await queue.list_jobs(job_type=ODD)] == [second, ODD]


async def test_a_purge_in_many_script_calls_deletes_only_what_had_ended(
    queue_factory: Callable[..., JobQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs per script call: the cursor and the ceiling carry over between calls, a job that
    ends between two calls is left for the next purge, and an orphan is cancelled and kept."""
    import jdobb_async_queue.backends.redis.backend as redis_backend

    monkeypatch.setattr(redis_backend, "PURGE_BATCH", 2)
    queue = queue_factory()
    ended = [await queue.enqueue("old") for _ in range(5)]
    for job_id in ended:
        assert await queue.cancel(job_id) is True
    a = await queue.enqueue("t")
    b = await queue.enqueue("t", depends_on=[a])
    claimed = await queue.claim(["t"])
    assert claimed is not None and claimed.id == a
    await queue.fail(a, "boom")
    assert await queue.retry(b) is True  # waits for a
    late = await queue.enqueue("late")

    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    run, calls = backend._run, []

    async def run_and_end_one_midway(script: Any, args: list[Any], **kwargs: Any) -> Any:
        reply = await run(script, args, **kwargs)
        if script is backend._scripts.purge:
            calls.append(args)
            if len(calls) == 1:
                assert await queue.cancel(late) is True  # ends after the purge began
        return reply

    monkeypatch.setattr(backend, "_run", run_and_end_one_midway)
    assert await queue.purge() == 6  # the five old ones and a
    assert len(calls) > 3  # several calls per status
    job_b, job_late = await queue.get(b), await queue.get(late)
    assert job_b is not None and job_b.status is JobStatus.CANCELLED
    assert job_b.error == f"dependency {a} deleted"
    assert job_late is not None and job_late.status is JobStatus.CANCELLED
    assert await queue.purge() == 2
    assert (await queue.stats()).cancelled == 0
