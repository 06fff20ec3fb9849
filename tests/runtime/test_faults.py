"""The fault battery of issue 12 that runs in-process (plus helper processes): F6, items 7 and 8.

- **F6** a handler that blocks its event loop (``time.sleep``) for 3x its lease, in a worker
  process of its own (``fault_procs/blocking_worker.py``): the job is reclaimed and run by a
  worker here; the blocked holder's late report is refused; exactly one result is stored. On a
  SQLite file and on Redis.
- **Item 7** ``queue.close()`` while a worker runs: the worker stops within its drain timeout
  + 1 s, and every call on the closed queue raises ``QueueClosedError`` at once. Every backend.
- **Item 8** ``run(burst=True)`` and ``process_one()`` on a Redis outage (a private
  redis-server, stopped mid-run and started again on the same port, AOF on so the data
  survives): a short outage is ridden out like ``run()`` does; a long one ends in
  ``BackendUnavailable`` within ``GIVE_UP_BOUND`` seconds; no job is lost (the held job's lease
  brings it back once the server returns). The same when the outage meets the attempt's read
  of its dependencies' results.

Everything under asyncio and trio, against real stores. Waits are bounded; a state another
process changes is polled with ``queue.get`` (no event crosses processes).
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import pytest
from anyio.streams.text import TextReceiveStream

from jdobb_async_queue import (
    BackendUnavailable,
    Job,
    JobContext,
    JobQueue,
    JobStatus,
    QueueClosedError,
    Worker,
)
from jdobb_async_queue._runtime import backoff
from jdobb_async_queue.backends.redis import RedisBackend

from .._redis_server import RedisServer
from ..conftest import QueueFactory

pytestmark = pytest.mark.anyio

WAIT = 15.0  # bound of every wait that is not itself what is tested
#: How long burst mode / process_one may ride out an outage before raising BackendUnavailable.
#: The issue leaves the figure to the implementation ("documented"); this is the test's ceiling.
GIVE_UP_BOUND = 30.0
BLOCKING_WORKER = Path(__file__).parent / "fault_procs" / "blocking_worker.py"


async def wait_for_status(queue: JobQueue, job_id: str, status: JobStatus) -> Job:
    """Poll until the job has ``status`` (another process, or a batching reporter, sets it)."""
    with anyio.fail_after(WAIT):
        while True:
            job = await queue.get(job_id)
            if job is not None and job.status is status:
                return job
            await anyio.sleep(0.02)


class Lines:
    """A subprocess's output stream, collected line by line as it comes."""

    def __init__(self, stream: anyio.abc.ByteReceiveStream | None) -> None:
        assert stream is not None
        self.stream = stream
        self.lines: list[str] = []
        self.eof = False
        self._changed = anyio.Event()

    async def read(self) -> None:
        buffered = ""
        async for chunk in TextReceiveStream(self.stream):
            *complete, buffered = (buffered + chunk).split("\n")
            self.lines.extend(complete)
            self._changed.set()
            self._changed = anyio.Event()
        self.eof = True
        self._changed.set()

    async def wait_for(self, pattern: str, timeout: float = WAIT) -> str:
        with anyio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if re.fullmatch(pattern, line):
                        return line
                if self.eof:
                    raise AssertionError(f"no line matching {pattern!r}: {self.lines}")
                await self._changed.wait()


# -- F6: a handler that blocks its event loop ---------------------------------------------------


def _url_of(backend_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend_name == "sqlite-file":
        return f"sqlite:///{tmp_path / 'jobs.db'}"  # the file make_queue opens
    return str(request.getfixturevalue("redis_url"))


@pytest.mark.parametrize("backend_name", ["sqlite-file", "redis"], indirect=True)
async def test_a_handler_blocking_its_loop_loses_the_job_and_its_late_report_is_refused(
    make_queue: QueueFactory,
    backend_name: str,
    anyio_backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    lease = 1.0
    queue = make_queue()
    job_id = await queue.enqueue("block")
    url = _url_of(backend_name, tmp_path, request)

    other = Worker(make_queue(), job_types=["block"], lease=lease, poll_interval=0.05)
    runs: list[str] = []
    ran = anyio.Event()

    @other.handler("block")
    async def run_here(ctx: JobContext) -> dict[str, Any]:
        runs.append(ctx.id)
        ran.set()
        return {"by": "other"}

    command = [sys.executable, str(BLOCKING_WORKER), url, queue.namespace, "--loop", anyio_backend,
               "--lease", str(lease)]  # fmt: skip
    async with await anyio.open_process(
        command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as process:
        out, err = Lines(process.stdout), Lines(process.stderr)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(out.read)
                tg.start_soon(err.read)
                await out.wait_for(f"start {job_id}", timeout=30)  # the blocked one holds it
                tg.start_soon(other.run)
                with anyio.fail_after(3 * lease):  # before the holder even wakes up
                    await ran.wait()
                done = await wait_for_status(queue, job_id, JobStatus.COMPLETE)

                # Now the blocked holder wakes, believes it completed, and reports: refused.
                await out.wait_for(f"end {job_id}")
                await out.wait_for(r"outcome (complete|lost)")  # it may see its lease gone
                await out.wait_for("exit")
                with anyio.fail_after(WAIT):
                    code = await process.wait()
                await other.stop()
        finally:
            if process.returncode is None:
                process.kill()
    assert code == 0, err.lines

    assert runs == [job_id]  # run once here, and once (blocked) there
    after = await queue.get(job_id)
    assert after is not None
    assert after.status is JobStatus.COMPLETE
    assert after.results == {"by": "other"}  # the one stored result: the blocked one was refused
    assert after.model_dump() == done.model_dump()  # the late report changed nothing at all


# -- item 7: queue.close() while a worker runs --------------------------------------------------


def _closed_calls(queue: JobQueue, job_id: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "enqueue": lambda: queue.enqueue("t"),
        "enqueue_many": lambda: queue.enqueue_many([{"job_type": "t"}]),
        "get": lambda: queue.get(job_id),
        "list_jobs": lambda: queue.list_jobs(),
        "stats": lambda: queue.stats(),
        "claim": lambda: queue.claim(["t"]),
        "update": lambda: queue.update(job_id, progress=0.5),
        "complete": lambda: queue.complete(job_id),
        "fail": lambda: queue.fail(job_id, "x"),
        "cancel": lambda: queue.cancel(job_id),
        "retry": lambda: queue.retry(job_id),
        "purge": lambda: queue.purge(),
    }


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
async def test_closing_the_queue_of_a_running_worker_stops_it_and_refuses_calls(
    make_queue: QueueFactory, backend_name: str, busy: bool
) -> None:
    make_queue()  # the fixture's first queue (it drops the Redis namespace with it): kept open
    # A store of its own for the memory backend, so closing it leaves the fixture's queue alone.
    queue = make_queue(backend="memory") if backend_name == "memory" else make_queue()
    drain = 1.0
    worker = Worker(queue, drain_timeout=drain, poll_interval=0.05, lease=5.0)
    started = anyio.Event()

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        started.set()
        if ctx.data.get("hold"):
            await anyio.sleep_forever()

    job_id = await queue.enqueue("t", {"hold": busy})
    ended: list[BaseException | None] = []

    async def run() -> None:
        try:
            await worker.run()
        except QueueClosedError as exc:  # returning, or this typed error: both are a stop
            ended.append(exc)
        else:
            ended.append(None)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(WAIT):
            await started.wait()
        if not busy:
            await wait_for_status(queue, job_id, JobStatus.COMPLETE)  # now idle, waiting

        await queue.close()
        with anyio.fail_after(drain + 1):
            await worker.stop()
    assert len(ended) == 1
    assert not worker.is_running

    for name, call in _closed_calls(queue, job_id).items():
        with anyio.fail_after(1), pytest.raises(QueueClosedError):  # at once, no outage retries
            await call()
        assert name


# -- item 8: burst mode and process_one on a Redis outage ---------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server, durable (AOF, fsync always) so a restart keeps every job."""
    directory = tmp_path / "redis"
    directory.mkdir()
    started = RedisServer(
        directory=directory, extra_args=("--appendonly", "yes", "--appendfsync", "always")
    ).start()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
async def outage_queue(server: RedisServer) -> AsyncIterator[JobQueue]:
    queue = JobQueue(backend="redis", url=server.url, namespace=f"outage-{uuid.uuid4().hex[:8]}")
    yield queue
    with anyio.move_on_after(WAIT):
        if server.process is not None:
            drop = getattr(queue.backend, "drop_namespace", None)
            if drop is not None:
                await drop()
    await queue.close()


async def stop_server(server: RedisServer) -> None:
    await anyio.to_thread.run_sync(server.stop)


async def start_server(server: RedisServer) -> None:
    await anyio.to_thread.run_sync(server.start)  # the same port: clients reconnect to it


async def outage(server: RedisServer, seconds: float) -> None:
    """Stop the server, keep it down ``seconds`` (the outage itself, not a synchronisation),
    and start it again."""
    await stop_server(server)
    await anyio.sleep(seconds)
    await start_server(server)


async def all_complete_after_recovery(queue: JobQueue, ids: list[str], runs: Counter[str]) -> None:
    """Run a plain worker until every job is COMPLETE: none was lost."""
    worker = Worker(queue, lease=1.0, poll_interval=0.05)

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        runs[ctx.id] += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        for job_id in ids:
            await wait_for_status(queue, job_id, JobStatus.COMPLETE)
        await worker.stop()


def outage_worker(
    queue: JobQueue, runs: Counter[str], at_run: int, during: Callable[[], Awaitable[None]]
) -> Worker:
    """A worker whose ``at_run``-th handler call awaits ``during()`` (the outage) and then
    returns, so its outcome has to be stored while the server is down."""
    worker = Worker(queue, lease=1.0, poll_interval=0.05, max_concurrent=2)
    fired = False

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        nonlocal fired
        runs[ctx.id] += 1
        if not fired and sum(runs.values()) >= at_run:
            fired = True
            await during()

    return worker


async def test_burst_rides_out_a_short_outage(
    server: RedisServer, outage_queue: JobQueue, anyio_backend: str
) -> None:
    ids = await outage_queue.enqueue_many([{"job_type": "t"}] * 20)
    runs: Counter[str] = Counter()
    worker = outage_worker(outage_queue, runs, 5, lambda: outage(server, 1.0))

    with anyio.fail_after(WAIT + 1.0):
        await worker.run(burst=True)  # returns normally: everything claimable was run

    for job_id in ids:
        job = await outage_queue.get(job_id)
        assert job is not None and job.status is JobStatus.COMPLETE, job
    assert set(runs) == set(ids)


async def test_burst_gives_up_on_a_long_outage_and_loses_no_job(
    server: RedisServer, outage_queue: JobQueue, anyio_backend: str
) -> None:
    ids = await outage_queue.enqueue_many([{"job_type": "t"}] * 20)
    runs: Counter[str] = Counter()
    worker = outage_worker(outage_queue, runs, 5, lambda: stop_server(server))

    with anyio.fail_after(GIVE_UP_BOUND), pytest.raises(BackendUnavailable):
        await worker.run(burst=True)
    assert not worker.is_running

    await start_server(server)
    await all_complete_after_recovery(outage_queue, ids, runs)
    assert set(runs) == set(ids)


async def test_process_one_rides_out_a_short_outage_at_its_claim(
    server: RedisServer, outage_queue: JobQueue, anyio_backend: str
) -> None:
    job_id = await outage_queue.enqueue("t")
    runs: Counter[str] = Counter()
    worker = outage_worker(outage_queue, runs, 99, anyio.lowlevel.checkpoint)

    await stop_server(server)
    async with anyio.create_task_group() as tg:

        async def come_back() -> None:
            await anyio.sleep(1.0)  # the outage's length
            await start_server(server)

        tg.start_soon(come_back)
        with anyio.fail_after(WAIT):
            assert await worker.process_one() is True

    job = await outage_queue.get(job_id)
    assert job is not None and job.status is JobStatus.COMPLETE, job
    assert runs == {job_id: 1}


async def test_process_one_rides_out_a_short_outage_while_storing(
    server: RedisServer, outage_queue: JobQueue, anyio_backend: str
) -> None:
    job_id = await outage_queue.enqueue("t")
    runs: Counter[str] = Counter()
    async with anyio.create_task_group() as tg:

        async def during() -> None:
            await stop_server(server)
            tg.start_soon(start_later)

        async def start_later() -> None:
            await anyio.sleep(1.0)  # the outage's length
            await start_server(server)

        worker = outage_worker(outage_queue, runs, 1, during)
        with anyio.fail_after(WAIT):
            assert await worker.process_one() is True

    job = await outage_queue.get(job_id)
    assert job is not None and job.status is JobStatus.COMPLETE, job
    assert runs == {job_id: 1}


async def test_process_one_gives_up_on_a_long_outage_and_loses_no_job(
    server: RedisServer, outage_queue: JobQueue, anyio_backend: str
) -> None:
    job_id = await outage_queue.enqueue("t")
    runs: Counter[str] = Counter()
    worker = outage_worker(outage_queue, runs, 1, lambda: stop_server(server))

    # The outcome cannot be stored: process_one must say so, not report a job it did not finish.
    with anyio.fail_after(GIVE_UP_BOUND), pytest.raises(BackendUnavailable):
        await worker.process_one()

    await start_server(server)
    await all_complete_after_recovery(outage_queue, [job_id], runs)
    assert runs[job_id] == 2  # its lease ran out, and it ran again


class _DownAfterClaim(RedisBackend):
    """The real Redis backend, whose server stops as soon as the first claim of a job that
    depends on another has returned: the attempt's read of its dependency's results meets the
    outage."""

    server: RedisServer
    stopped = False

    async def claim_pending_job(self, *args: Any, **kwargs: Any) -> list[Any]:
        claimed = await super().claim_pending_job(*args, **kwargs)
        if not self.stopped and any(record.depends_on for record in claimed):
            self.stopped = True  # once
            await stop_server(self.server)
        return claimed


@pytest.mark.parametrize("how", ["burst", "process_one"])
async def test_a_dependency_read_gives_up_on_a_long_outage_and_loses_no_job(
    server: RedisServer, anyio_backend: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, the read of a dependency's results retried for as long as the outage lasted:
    # the burst (or process_one) never ended.
    monkeypatch.setattr(backoff, "BURST_OUTAGE_LIMIT", 2.0)
    backend = _DownAfterClaim(
        server.url, namespace=f"outage-{uuid.uuid4().hex[:8]}", retry_for=1.0
    )
    backend.server = server
    queue = JobQueue(backend=backend)
    first = await queue.enqueue("t")
    runs: Counter[str] = Counter()
    assert await outage_worker(queue, runs, 99, anyio.lowlevel.checkpoint).process_one()
    second = await queue.enqueue("t", depends_on=[first])
    # One job at a time: the burst's claimer waits for the attempt, so only the read meets
    # the outage.
    worker = Worker(queue, lease=1.0, poll_interval=0.05, max_concurrent=1)

    @worker.handler("t")
    async def handle(ctx: JobContext) -> None:
        runs[ctx.id] += 1

    run = partial(worker.run, burst=True) if how == "burst" else worker.process_one
    try:
        with anyio.fail_after(WAIT), pytest.raises(BackendUnavailable):
            await run()
        assert runs[second] == 0  # it never reached its handler
    finally:
        if server.process is None:
            await start_server(server)
    try:
        await all_complete_after_recovery(queue, [second], runs)
        assert runs[second] == 1
    finally:
        with anyio.move_on_after(WAIT):
            await backend.drop_namespace()
        await queue.close()
