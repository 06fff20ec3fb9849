"""The ``jdobb-queue`` command line, run the way users run it.

Every test starts the installed console script in a subprocess, against a SQLite file in
``tmp_path`` and against the session's Redis server (a namespace per test, deleted afterwards).
Worker targets live in ``tests/cli_apps/``, the directory the worker subprocesses run in; they
find the store through the same ``JDOBB_QUEUE_URL`` / ``JDOBB_QUEUE_NAMESPACE`` as the CLI.

The tests themselves are synchronous: the subprocesses bring their own event loop (asyncio, or
trio for ``worker --loop trio``, which every worker test is parametrized over). Waiting for a job
to reach a state polls the store in-process, bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from jdobb_async_queue import Job, JobQueue, JobStatus


def _find_cli() -> str | None:
    beside = Path(sys.executable).with_name("jdobb-queue")
    return str(beside) if beside.exists() else shutil.which("jdobb-queue")


CLI = _find_cli()
APPS = Path(__file__).parent / "cli_apps"
TIMEOUT = 60  # seconds any one command may take (a cold start here is about a second)
LOOPS = ["asyncio", "trio"]

pytestmark = pytest.mark.skipif(
    CLI is None, reason="the jdobb-queue console script is not installed: pip install -e ."
)


def _backend_missing(name: str) -> bool:
    return importlib.util.find_spec(f"jdobb_async_queue.backends.{name}") is None


def _env(url: str | None, namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JDOBB_QUEUE_")}
    env["JDOBB_QUEUE_NAMESPACE"] = namespace
    env["COLUMNS"] = "120"  # rich's width off a terminal: keep table rows on one line
    if url is not None:
        env["JDOBB_QUEUE_URL"] = url
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run the console script to its end and return what it did."""
    assert CLI is not None
    return subprocess.run(
        [CLI, *args], env=env, cwd=APPS, capture_output=True, text=True, timeout=timeout
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with ``code``, printing exactly one ``error:`` line and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


@dataclass
class WorkerProcess:
    """A ``jdobb-queue worker`` subprocess whose stderr (its log) is read line by line."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """Return the first log line (seen before or arriving within ``timeout``) matching."""
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if re.search(pattern, line):
                return line
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(f"no log line matching {pattern!r}: {self.seen}") from None
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit and for its whole log to be read."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"the worker did not exit within {timeout}s: {self.seen}"
            ) from None
        self._drain()
        return code

    def _drain(self) -> None:
        assert self.reader is not None
        self.reader.join(timeout=TIMEOUT)  # stderr reaches EOF once the process has exited
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        self._drain()  # the reader is done before stderr is closed under it
        assert self.process.stderr is not None
        self.process.stderr.close()


@dataclass
class Store:
    """One test's queue, as the CLI addresses it."""

    url: str
    namespace: str
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return _env(self.url, self.namespace)

    def run(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env, timeout=timeout)

    def ok(self, *args: str) -> str:
        """Run a command that must succeed; return its stdout."""
        result = self.run(*args)
        assert result.returncode == 0, (args, result.returncode, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def enqueue(self, job_type: str, *options: str) -> str:
        job_id = self.ok("enqueue", job_type, *options).strip()
        assert re.fullmatch(r"\S+", job_id), job_id
        return job_id

    def start_worker(self, *args: str) -> WorkerProcess:
        assert CLI is not None
        process = subprocess.Popen(
            [CLI, "worker", *args],
            env=self.env,
            cwd=APPS,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        worker = WorkerProcess(process)
        self.workers.append(worker)
        return worker

    def wait_for_status(self, job_id: str, status: JobStatus, timeout: float = 30) -> Job:
        """Poll the store in-process until the job has ``status``."""

        async def poll() -> Job:
            async with JobQueue(backend=self.url, namespace=self.namespace) as q:
                with anyio.fail_after(timeout):
                    while True:
                        job = await q.get(job_id)
                        if job is not None and job.status is status:
                            return job
                        await anyio.sleep(0.02)

        return anyio.run(poll)


async def _drop_namespace(url: str, namespace: str) -> None:
    async with JobQueue(backend=url, namespace=namespace) as q:
        drop = getattr(q.backend, "drop_namespace", None)
        if drop is not None:
            await drop()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store the CLI and its workers share: a SQLite file, or a Redis namespace."""
    name = str(request.param)
    if _backend_missing(name):
        pytest.skip(f"the {name} backend (jdobb_async_queue.backends.{name}) is not built yet")
    namespace = f"cli-{uuid.uuid4().hex[:12]}"
    if name == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = str(request.getfixturevalue("redis_url"))
    chosen = Store(url, namespace)
    try:
        yield chosen
    finally:
        for worker in chosen.workers:
            worker.kill()
        if name == "redis":
            anyio.run(_drop_namespace, url, namespace)


# -- the round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_enqueue_then_burst_worker_completes_the_job(store: Store, loop: str) -> None:
    job_id = store.enqueue("add", "--data", '{"a": 2, "b": 3}', "--priority", "high")

    worker = store.run("worker", "jobs:make_worker", "--burst", "--loop", loop)

    assert worker.returncode == 0, worker.stderr
    assert f"started on {loop}" in worker.stderr
    assert re.search(rf"job {job_id} add complete in \d+\.\d ms", worker.stderr), worker.stderr
    job = store.json("status", job_id)
    assert job["status"] == "complete"
    assert job["results"] == {"sum": 5}
    assert job["priority"] == "high"


@pytest.mark.parametrize("target", ["attr_worker:worker", "jobs:make_worker_async"])
def test_worker_target_may_be_a_worker_or_an_async_factory(store: Store, target: str) -> None:
    job_id = store.enqueue("add", "--data", '{"a": 1, "b": 1}')

    worker = store.run("worker", target, "--burst")

    assert worker.returncode == 0, worker.stderr
    assert store.json("status", job_id)["results"] == {"sum": 2}


def test_concurrency_option_runs_jobs_at_once(store: Store) -> None:
    ids = [store.enqueue("sleep", "--data", '{"seconds": 1}') for _ in range(3)]

    worker = store.run("worker", "jobs:make_worker", "--burst", "--concurrency", "3")

    assert worker.returncode == 0, worker.stderr
    assert "concurrency 3" in worker.stderr
    jobs = [store.json("status", job_id) for job_id in ids]
    last_start = max(job["started_at"] for job in jobs)
    first_end = min(job["completed_at"] for job in jobs)
    assert last_start < first_end  # all three ran at the same time


@pytest.mark.parametrize("loop", LOOPS)
def test_failed_job_is_logged_and_follow_exits_1(store: Store, loop: str) -> None:
    job_id = store.enqueue("boom")

    worker = store.run("worker", "jobs:make_worker", "--burst", "--loop", loop)

    assert worker.returncode == 0, worker.stderr
    assert f"job {job_id} boom failed: ValueError: boom" in worker.stderr
    assert store.run("status", job_id).returncode == 0  # found: plain status exits 0
    followed = store.run("status", job_id, "--follow")
    assert followed.returncode == 1
    assert "failed" in followed.stdout
    lines = store.run("status", job_id, "--follow", "--json")
    assert lines.returncode == 1
    assert [json.loads(line)["status"] for line in lines.stdout.splitlines()] == ["failed"]


# -- status --follow ---------------------------------------------------------------------------


def test_follow_streams_updates_until_complete(store: Store) -> None:
    assert CLI is not None
    job_id = store.enqueue("add", "--data", '{"a": 4, "b": 5}')
    follower = subprocess.Popen(
        [CLI, "status", job_id, "--follow", "--json"],
        env=store.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        ready, _, _ = select.select([follower.stdout], [], [], TIMEOUT)
        assert ready, "status --follow printed nothing"
        first = json.loads(follower.stdout.readline())  # subscribed: now run the job
        assert first["status"] == "pending"
        assert store.run("worker", "jobs:make_worker", "--burst").returncode == 0
        rest, errors = follower.communicate(timeout=TIMEOUT)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, errors
    updates = [json.loads(line) for line in rest.splitlines()]
    assert updates[-1]["status"] == "complete"
    assert updates[-1]["results"] == {"sum": 9}


def test_follow_of_a_finished_job_shows_it_and_exits_by_its_state(store: Store) -> None:
    done = store.enqueue("add", "--data", '{"a": 1, "b": 2}')
    store.ok("worker", "jobs:make_worker", "--burst")
    cancelled = store.enqueue("add")
    store.ok("cancel", cancelled)

    shown = store.run("status", done, "--follow")
    assert shown.returncode == 0, shown.stderr
    assert "complete" in shown.stdout
    assert '{"sum": 3}' in shown.stdout
    assert store.run("status", cancelled, "--follow").returncode == 1
    assert_one_error_line(store.run("status", "no-such-job", "--follow"), 1)


# -- inspecting and managing -------------------------------------------------------------------


def test_list_and_stats(store: Store) -> None:
    low = store.enqueue("add", "--priority", "low")
    high = store.enqueue("add", "--priority", "high")
    other = store.enqueue("sleep", "--data", '{"seconds": 0}', "--delay", "3600")

    pending = store.json("list", "--status", "pending")
    assert [job["id"] for job in pending] == [high, low, other]  # claim order
    assert [job["id"] for job in store.json("list", "--type", "add", "--limit", "1")] == [high]
    assert store.json("list", "--status", "complete") == []
    counts = store.json("stats")
    assert counts["pending"] == 3
    assert counts["scheduled"] == 1
    assert counts["complete"] == 0

    table = store.ok("list")
    assert all(job_id in table for job_id in (low, high, other))
    assert "pending" in store.ok("stats")
    assert store.json("enqueue", "add", "--metadata", '{"who": "me"}')["metadata"] == {"who": "me"}


def test_cancel_and_retry(store: Store) -> None:
    job_id = store.enqueue("add")

    assert store.ok("cancel", job_id, "--reason", "not needed").strip() == f"cancelled {job_id}"
    job = store.json("status", job_id)
    assert job["status"] == "cancelled"
    line = assert_one_error_line(store.run("cancel", job_id), 1)
    assert "is cancelled" in line

    retried = store.json("retry", job_id, "--delay", "60")
    assert retried["status"] == "pending"
    assert retried["execute_at"] is not None
    line = assert_one_error_line(store.run("retry", job_id), 1)
    assert "is pending: only FAILED or CANCELLED" in line
    assert_one_error_line(store.run("cancel", "no-such-job"), 1)
    assert_one_error_line(store.run("retry", "no-such-job"), 1)

    # A job kept for 0 s after it ends is gone at once: the cancel still succeeded.
    fleeting = store.enqueue("add", "--ttl", "0")
    assert store.ok("cancel", fleeting).strip() == f"cancelled {fleeting}"
    gone = store.enqueue("add", "--ttl", "0")
    assert store.json("cancel", gone) == {"id": gone, "status": "cancelled"}


def test_purge(store: Store) -> None:
    store.enqueue("add", "--data", '{"a": 1, "b": 1}')
    store.enqueue("add", "--data", '{"a": 2, "b": 2}')
    store.ok("worker", "jobs:make_worker", "--burst")
    cancelled = store.enqueue("add")
    store.ok("cancel", cancelled)

    assert store.json("purge", "--before", "2000-01-01T00:00:00Z") == {"purged": 0}
    assert store.json("purge", "--status", "complete") == {"purged": 2}
    assert [job["id"] for job in store.json("list")] == [cancelled]
    assert store.ok("purge").strip() == "purged 1 job"
    assert_one_error_line(store.run("purge", "--status", "pending"), 2)


def test_list_shows_when_a_job_is_due_and_what_it_waits_on(store: Store) -> None:
    later = store.enqueue("add", "--delay", "3600")
    first = store.enqueue("add", "--data", '{"a": 1, "b": 2}')
    second = store.enqueue("add", "--data", '{"a": 3, "b": 4}')
    after_both = store.enqueue("add", "--depends-on", first, "--depends-on", second)
    now = store.enqueue("add")

    rows = {line.split()[0]: line for line in store.ok("list").splitlines() if line.strip()}
    assert "pending, due in 1h" in rows[later], rows[later]
    assert "pending, waiting on 2" in rows[after_both], rows[after_both]
    assert "due in" not in rows[now] and "waiting on" not in rows[now]

    store.ok("cancel", later)  # so the burst worker below does not wait on it
    store.ok("cancel", second)
    # A cancelled dependency cancels its dependants: nothing waits any more.
    assert store.json("status", after_both)["status"] == "cancelled"
    rows = {line.split()[0]: line for line in store.ok("list").splitlines() if line.strip()}
    assert "waiting on" not in rows[after_both]
    assert "due in" not in rows[later]  # only PENDING jobs say when they are due


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["stats"],
        ["status", "some-id"],
        ["status", "some-id", "--follow"],
        ["cancel", "some-id"],
        ["retry", "some-id"],
        ["purge"],
    ],
)
def test_commands_that_read_refuse_a_missing_sqlite_file(args: list[str], tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    result = run_cli("--url", f"sqlite:///{typo}", *args, env=_env(None, "default"))
    line = assert_one_error_line(result, 1)
    assert f"no queue at {typo}" in line and "does not exist" in line, line
    assert not typo.exists()


def test_relative_sqlite_path_is_named_in_full(tmp_path: Path) -> None:
    assert CLI is not None
    result = subprocess.run(
        [CLI, "--url", "sqlite:///typo.db", "list"], env=_env(None, "default"), cwd=tmp_path,
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    line = assert_one_error_line(result, 1)
    assert str(tmp_path / "typo.db") in line
    assert not (tmp_path / "typo.db").exists()


def test_enqueue_and_worker_create_a_new_sqlite_file(tmp_path: Path) -> None:
    fresh = Store(f"sqlite:///{tmp_path / 'by-enqueue.db'}", "default")
    job_id = fresh.enqueue("add", "--data", '{"a": 1, "b": 1}')
    assert (tmp_path / "by-enqueue.db").exists()
    assert [job["id"] for job in fresh.json("list")] == [job_id]

    by_worker = Store(f"sqlite:///{tmp_path / 'by-worker.db'}", "default")
    by_worker.ok("worker", "jobs:make_worker", "--burst")
    assert (tmp_path / "by-worker.db").exists()
    assert by_worker.json("stats")["pending"] == 0


# -- bad input: one line, no traceback ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["enqueue", "add", "--data", "{not json"], 2),
        (["enqueue", "add", "--data", "[1, 2]"], 2),
        (["enqueue", "add", "--metadata", '{"x": NaN}'], 2),
        (["enqueue", "add", "--priority", "urgent"], 2),
        (["list", "--status", "bogus"], 2),
        (["purge", "--before", "yesterday"], 2),
        (["status"], 2),
        (["status", "no-such-job"], 1),
        (["status", "no-such-job", "--json"], 1),
    ],
)
def test_bad_input_is_one_line_on_stderr(store: Store, args: list[str], code: int) -> None:
    assert_one_error_line(store.run(*args), code)


@pytest.mark.parametrize(
    "url", ["nope://somewhere", "not-a-url", "memory://", "sqlite:////no/such/dir/jobs.db"]
)
def test_bad_url_is_one_line_on_stderr(url: str) -> None:
    result = run_cli("--url", url, "stats", env=_env(None, "default"))
    assert result.returncode != 0
    assert_one_error_line(result, result.returncode)


def test_missing_url_is_a_usage_error() -> None:
    line = assert_one_error_line(run_cli("list", env=_env(None, "default")), 2)
    assert "JDOBB_QUEUE_URL" in line


@pytest.mark.skipif(_backend_missing("redis"), reason="the redis backend is not built yet")
def test_unreachable_redis_is_one_line_on_stderr() -> None:
    result = run_cli("--url", "redis://127.0.0.1:1/0", "stats", env=_env(None, "default"))
    assert_one_error_line(result, 1)


@pytest.mark.parametrize(
    "target", ["no_such_module:worker", "jobs:no_such_attribute", "jobs", "jobs:not_a_worker"]
)
def test_bad_worker_target_is_a_usage_error(target: str) -> None:
    assert_one_error_line(run_cli("worker", target, env=_env(None, "default")), 2)


# -- signals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_sigterm_lets_the_running_job_finish(store: Store, loop: str) -> None:
    job_id = store.enqueue("sleep", "--data", '{"seconds": 1.5}')
    worker = store.start_worker("jobs:make_worker", "--loop", loop)
    store.wait_for_status(job_id, JobStatus.PROCESSING)

    worker.signal(signal.SIGTERM)

    assert worker.wait() == 0, worker.seen
    assert "Traceback" not in "\n".join(worker.seen)
    draining = worker.wait_for_line(r"SIGTERM: finishing running jobs")
    finished = worker.wait_for_line(rf"job {job_id} sleep complete in")
    assert worker.seen.index(draining) < worker.seen.index(finished)
    assert store.json("status", job_id)["status"] == "complete"


@pytest.mark.parametrize("loop", LOOPS)
def test_second_signal_stops_at_once_and_hands_the_job_back(store: Store, loop: str) -> None:
    job_id = store.enqueue("sleep", "--data", '{"seconds": 120}')
    worker = store.start_worker("jobs:make_worker", "--loop", loop)
    store.wait_for_status(job_id, JobStatus.PROCESSING)

    worker.signal(signal.SIGINT)
    worker.wait_for_line(r"SIGINT: finishing running jobs")  # the first one was handled
    worker.signal(signal.SIGINT)

    assert worker.wait(timeout=15) == 128 + signal.SIGINT, worker.seen
    worker.wait_for_line(rf"job {job_id} sleep handed back to the queue")
    assert "Traceback" not in "\n".join(worker.seen)
    job = store.json("status", job_id)
    assert job["status"] == "pending", (job, worker.seen)


# -- entry points ------------------------------------------------------------------------------


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jdobb_async_queue", "--version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("jdobb-queue ")
