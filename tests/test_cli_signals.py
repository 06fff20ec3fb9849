"""F2: graceful drain of a ``jdobb-queue worker`` process on SIGTERM (issue 12, fault battery).

The CLI worker (``tests/cli_apps/slow_jobs.py``, drain timeout ``DRAIN``) holds a short job and a
long one when it gets SIGTERM. After the signal it claims nothing (jobs enqueued during the drain
stay PENDING, never attempted); the short job finishes; the long one is handed back at the drain
deadline and a second worker (in this process: ``JobQueue`` + ``Worker``) picks it up less than a
second later. On a SQLite file and on Redis, with the CLI on the test's event loop (asyncio, trio).

The CLI's stderr (its log) is read line by line as it comes; a state in the store that no line
announces is polled with ``queue.get``. Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream

from jdobb_async_queue import Job, JobContext, JobQueue, JobStatus, Worker

pytestmark = pytest.mark.anyio

APPS = Path(__file__).parent / "cli_apps"
DRAIN = 2.0  # the CLI worker's drain_timeout (SLOW_JOBS_DRAIN)
WAIT = 30.0  # bound of every wait that is not about speed (a cold CLI start is about a second)
PICK_UP = 1.0  # the handed-back job runs elsewhere within this many seconds of the deadline


def _find_cli() -> str | None:
    beside = Path(sys.executable).with_name("jdobb-queue")
    return str(beside) if beside.exists() else shutil.which("jdobb-queue")


CLI = _find_cli()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, namespace) of a store the CLI worker and the test share."""
    name = str(request.param)
    if CLI is None:
        pytest.skip("the jdobb-queue console script is not installed: pip install -e .")
    if importlib.util.find_spec(f"jdobb_async_queue.backends.{name}") is None:
        pytest.skip(f"the {name} backend is not built yet")
    namespace = f"sig-{uuid.uuid4().hex[:12]}"
    if name == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}", namespace
        return
    url = str(request.getfixturevalue("redis_url"))
    yield url, namespace
    anyio.run(_drop_namespace, url, namespace)


async def _drop_namespace(url: str, namespace: str) -> None:
    async with JobQueue(backend=url, namespace=namespace) as q:
        drop = getattr(q.backend, "drop_namespace", None)
        if drop is not None:
            await drop()


class CliWorker:
    """A running ``jdobb-queue worker`` process whose log lines are collected as they come."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = anyio.Event()
        self.eof = False

    async def read(self) -> None:
        assert self.process.stderr is not None
        buffered = ""
        async for chunk in TextReceiveStream(self.process.stderr):
            buffered += chunk
            *complete, buffered = buffered.split("\n")
            if complete:
                self.lines.extend(complete)
                self._changed.set()
                self._changed = anyio.Event()
        if buffered:
            self.lines.append(buffered)
        self.eof = True
        self._changed.set()

    async def wait_for(self, pattern: str, timeout: float = WAIT) -> str:
        """The first log line matching ``pattern``, waiting for it up to ``timeout``."""
        with anyio.fail_after(timeout):
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if re.search(pattern, line):
                        return line
                seen = len(self.lines)
                if self.eof:
                    raise AssertionError(f"no log line matching {pattern!r}: {self.lines}")
                await self._changed.wait()

    def index(self, pattern: str) -> int:
        return next(i for i, line in enumerate(self.lines) if re.search(pattern, line))

    async def exit_code(self, timeout: float = WAIT) -> int:
        with anyio.fail_after(timeout):
            code = await self.process.wait()
            while not self.eof:
                await self._changed.wait()
        return code


@asynccontextmanager
async def cli_worker(url: str, namespace: str, loop: str) -> AsyncIterator[CliWorker]:
    assert CLI is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("JDOBB_QUEUE_")}
    env.update(JDOBB_QUEUE_URL=url, JDOBB_QUEUE_NAMESPACE=namespace, SLOW_JOBS_DRAIN=str(DRAIN))
    process = await anyio.open_process(
        [CLI, "worker", "slow_jobs:make_worker", "--loop", loop],
        cwd=APPS,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    worker = CliWorker(process)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.read)
            try:
                yield worker
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(WAIT):
                    if process.returncode is None:
                        process.kill()
                    await process.wait()
    finally:
        await process.aclose()


async def wait_for_status(queue: JobQueue, job_id: str, status: JobStatus) -> Job:
    """Poll the store (another process changes it; no event crosses) until the job has it."""
    with anyio.fail_after(WAIT):
        while True:
            job = await queue.get(job_id)
            if job is not None and job.status is status:
                return job
            await anyio.sleep(0.02)


async def test_sigterm_drains_claims_nothing_and_hands_long_jobs_to_another_worker(
    store: tuple[str, str], anyio_backend: str
) -> None:
    url, namespace = store
    async with (
        JobQueue(backend=url, namespace=namespace) as queue,
        JobQueue(backend=url, namespace=namespace) as other_queue,
    ):
        short = await queue.enqueue("short", {"seconds": 1.0})
        long = await queue.enqueue("long", {"seconds": 300})

        # The second worker runs long jobs only, so a late short job can only be taken by the
        # CLI worker (which must not take it once signalled).
        other = Worker(other_queue, job_types=["long"], poll_interval=0.1, lease=10.0)
        picked_up: list[float] = []
        picked = anyio.Event()

        @other.handler("long")
        async def take_over(ctx: JobContext) -> dict[str, Any]:
            picked_up.append(time.monotonic())
            picked.set()
            return {"by": "other"}

        async with cli_worker(url, namespace, anyio_backend) as cli:
            started = re.search(r"worker (\S+) started on", await cli.wait_for(r"started on"))
            assert started is not None
            cli_id = started.group(1)
            await wait_for_status(queue, short, JobStatus.PROCESSING)
            held = await wait_for_status(queue, long, JobStatus.PROCESSING)
            assert held.worker_id == cli_id

            async with anyio.create_task_group() as tg:
                tg.start_soon(other.run)
                signalled = time.monotonic()
                cli.process.send_signal(signal.SIGTERM)
                await cli.wait_for(r"SIGTERM: finishing running jobs")
                late = [await queue.enqueue("short", {"seconds": 0}) for _ in range(3)]

                with anyio.fail_after(DRAIN + WAIT):
                    await picked.wait()
                code = await cli.exit_code()
                await other.stop()

            log = "\n".join(cli.lines)
            assert code == 0, log
            assert "Traceback" not in log

        took = picked_up[0] - signalled
        assert DRAIN <= took < DRAIN + PICK_UP, (took, log)  # handed back at the deadline

        # The short job finished during the drain, in the CLI worker.
        done = await queue.get(short)
        assert done is not None and done.status is JobStatus.COMPLETE, done
        assert done.results == {"by": "cli"}
        assert cli.index(r"SIGTERM: finishing") < cli.index(rf"job {short} short complete in")

        # The long one was handed back by the CLI and run by the other worker, once.
        assert cli.index(rf"job {long} long handed back to the queue") < cli.index(r"stopped")
        moved = await queue.get(long)
        assert moved is not None and moved.status is JobStatus.COMPLETE, moved
        assert moved.results == {"by": "other"}
        assert len(picked_up) == 1

        # Nothing was claimed after the signal.
        for job_id in late:
            job = await queue.get(job_id)
            assert job is not None
            assert (job.status, job.attempts, job.worker_id) == (JobStatus.PENDING, 0, None), job
            assert job_id not in log
