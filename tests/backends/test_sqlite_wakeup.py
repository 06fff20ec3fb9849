"""Wake-ups across processes on one SQLite file: the doorbell sockets in ``<db>.wake/``.

Every test configures a long ``poll_interval`` (5 s, in the URL and on the Worker) and asserts
that what another process did arrives well before it (2 s): a functional bound, not a timing
benchmark. Without the doorbell each of them would wait for the poll. The fallback test makes
the directory unusable and checks that polling still delivers. Real files, real processes
(``python -c`` with the worker below), asyncio and trio; every process is killed at the end.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest

from jdobb_async_queue import Broadcaster, JobContext, JobQueue, JobStatus, Worker
from jdobb_async_queue.backends.sqlite import SQLiteBackend

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="no Unix sockets: SQLite polls there"),
]

POLL = 5.0  # every poll in these tests: a wake-up that relied on it would miss SOON
SOON = 2.0
WAIT = 20.0

WORKER = """
import sys, anyio
from jdobb_async_queue import JobQueue, Worker

async def main():
    queue = JobQueue(backend="sqlite", url=sys.argv[1])
    worker = Worker(queue, poll_interval=float(sys.argv[3]))

    @worker.handler("work")
    async def work(ctx):
        print(ctx.id, flush=True)

    await worker.run()

anyio.run(main, backend=sys.argv[2])
"""


def url_of(path: Path, poll: float = POLL) -> str:
    return f"sqlite:///{path}?poll_interval={poll}"


def wake_dir(db: Path) -> Path:
    return Path(f"{db}.wake")


def doorbells(db: Path) -> list[Path]:
    directory = wake_dir(db)
    return sorted(directory.glob("*.sock")) if directory.is_dir() else []


def exists(path: Path) -> bool:
    return path.exists()


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


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


@asynccontextmanager
async def worker_process(url: str, loop: str) -> AsyncIterator[anyio.abc.Process]:
    """A worker in its own process printing the id of each job it starts; killed at the end."""
    command = [sys.executable, "-c", WORKER, url, loop, str(POLL)]
    process = await anyio.open_process(command, stderr=None)
    try:
        yield process
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


class Lines:
    """Whole lines of a process's stdout."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        self._stdout = process.stdout
        self._buffer = ""

    async def next(self) -> str:
        while "\n" not in self._buffer:
            self._buffer += (await self._stdout.receive()).decode()
        line, self._buffer = self._buffer.split("\n", 1)
        return line


async def until(condition: object) -> None:
    assert callable(condition)
    while not condition():
        await anyio.sleep(0.01)


async def settled(queue: JobQueue, job_id: str) -> None:
    """Wait until the job is COMPLETE (its worker then goes back to sleep)."""
    while (job := await queue.get(job_id)) is None or job.status != JobStatus.COMPLETE:
        await anyio.sleep(0.01)


# -- across processes ----------------------------------------------------------------------------


async def test_a_job_from_another_process_starts_long_before_the_poll(
    db: Path, anyio_backend: str
) -> None:
    url = url_of(db)
    async with opened(url) as queue, worker_process(url, anyio_backend) as process:
        lines = Lines(process)
        with anyio.fail_after(WAIT):
            await until(lambda: doorbells(db))  # the worker waits on its doorbell
            first = await queue.enqueue("work")
            assert await lines.next() == first
            await settled(queue, first)
        # Idle now: its claimer sleeps for POLL, its backend looks every POLL.
        await anyio.sleep(0.3)
        second = await queue.enqueue("work")
        with anyio.fail_after(SOON):
            assert await lines.next() == second


async def test_the_doorbell_of_a_killed_process_is_removed_by_the_next_ring(
    db: Path, anyio_backend: str
) -> None:
    url = url_of(db)
    async with opened(url) as queue:
        async with worker_process(url, anyio_backend) as process:
            with anyio.fail_after(WAIT):
                await until(lambda: doorbells(db))
            (stale,) = doorbells(db)
            process.send_signal(signal.SIGKILL)
            with anyio.fail_after(WAIT):
                await process.wait()
        assert stale.exists()  # SIGKILL left it behind
        await queue.enqueue("work")  # its commit rings every doorbell: that one refuses
        assert not stale.exists()
        assert doorbells(db) == []


# -- two queues on one file behave like two processes -------------------------------------------


async def test_a_waiting_listener_hears_another_queue_at_once(db: Path) -> None:
    async with opened(url_of(db)) as here, opened(url_of(db)) as there:
        backend = here.backend
        assert isinstance(backend, SQLiteBackend)
        async with backend.listen() as notices:
            assert len(doorbells(db)) == 1
            await there.enqueue("t")
            with anyio.fail_after(SOON):
                notice = await notices.__anext__()
        assert notice.kind == "jobs"


async def test_a_cancel_from_another_queue_stops_the_handler_at_once(db: Path) -> None:
    async with opened(url_of(db)) as remote, opened(url_of(db)) as local:
        started, stopped = anyio.Event(), anyio.Event()
        worker = Worker(local, lease=60, poll_interval=POLL)  # renewals would take 20 s

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
            assert await remote.cancel(job_id)
            with anyio.fail_after(SOON):
                await stopped.wait()
            await worker.stop()


async def test_a_subscriber_hears_another_queue_at_once(db: Path) -> None:
    async with opened(url_of(db)) as remote, opened(url_of(db)) as local:
        job_id = await remote.enqueue("t")
        seen: list[JobStatus] = []
        subscribed = anyio.Event()

        async def follow() -> None:
            async for update in Broadcaster(local).subscribe(job_id):
                seen.append(update.status)
                subscribed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            with anyio.fail_after(WAIT):
                await subscribed.wait()
            assert await remote.claim() is not None
            assert await remote.complete(job_id)
            with anyio.fail_after(SOON):
                await until(lambda: JobStatus.COMPLETE in seen)
        assert seen[0] == JobStatus.PENDING
        assert seen[-1] == JobStatus.COMPLETE


# -- cleaning up, and the fallback ---------------------------------------------------------------


async def test_closing_removes_the_doorbell_and_its_directory(db: Path) -> None:
    queue = JobQueue(backend="sqlite", url=url_of(db))
    backend = queue.backend
    assert isinstance(backend, SQLiteBackend)
    await queue.enqueue("t")
    async with backend.listen():
        assert len(doorbells(db)) == 1
    assert len(doorbells(db)) == 1  # kept while the queue is open: listening again is free
    await queue.close()
    assert doorbells(db) == []
    assert not exists(wake_dir(db))
    assert files_in(db.parent) == ["jobs.db"]  # nothing left behind


async def test_closing_while_a_listener_waits_on_the_doorbell(db: Path) -> None:
    queue = JobQueue(backend="sqlite", url=url_of(db))
    backend = queue.backend
    assert isinstance(backend, SQLiteBackend)
    ended = anyio.Event()

    async def listen() -> None:
        async with backend.listen() as notices:
            with pytest.raises(Exception, match="closed"):
                await notices.__anext__()
        ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        with anyio.fail_after(WAIT):
            await until(lambda: doorbells(db))
            await anyio.wait_all_tasks_blocked()
            await queue.close()
            await ended.wait()
    assert not exists(wake_dir(db))


async def test_without_a_usable_directory_other_processes_are_polled(db: Path) -> None:
    wake_dir(db).write_bytes(b"not a directory")  # where the doorbells would go
    url = url_of(db, poll=0.1)
    async with opened(url) as here, opened(url) as there:
        backend = here.backend
        assert isinstance(backend, SQLiteBackend)
        await here.stats()  # opened: later commits of others are news to it
        async with backend.listen() as notices:
            await there.enqueue("t")
            with anyio.fail_after(WAIT):
                notice = await notices.__anext__()
        assert notice.kind == "jobs"
        assert doorbells(db) == []
    assert wake_dir(db).read_bytes() == b"not a directory"  # left as it was


async def test_a_directory_that_cannot_be_written_falls_back_to_polling(db: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    directory = wake_dir(db)
    directory.mkdir(mode=0o500)
    try:
        url = url_of(db, poll=0.1)
        async with opened(url) as here, opened(url) as there:
            backend = here.backend
            assert isinstance(backend, SQLiteBackend)
            await here.stats()
            async with backend.listen() as notices:
                await there.enqueue("t")
                with anyio.fail_after(WAIT):
                    assert (await notices.__anext__()).kind == "jobs"
    finally:
        directory.chmod(0o700)


async def test_a_path_too_long_for_a_socket_falls_back_to_polling(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    db = deep / "jobs.db"
    url = url_of(db, poll=0.1)
    async with opened(url) as here, opened(url) as there:
        backend = here.backend
        assert isinstance(backend, SQLiteBackend)
        await here.stats()
        async with backend.listen() as notices:
            await there.enqueue("t")
            with anyio.fail_after(WAIT):
                assert (await notices.__anext__()).kind == "jobs"
        assert doorbells(db) == []
