"""The blocking API, ``jdobb_async_queue.sync.JobQueue``, on every backend and both event loops.

These tests are plain functions: no event loop runs in the test's thread, as in a script, Django
or Flask. Each queue runs its own loop (``loop="asyncio"`` or ``"trio"``) in a thread of its own.
Every wait is bounded.
"""

from __future__ import annotations

import concurrent.futures
import gc
import inspect
import os
import pydoc
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, cast

import anyio
import pytest
import sniffio

from jdobb_async_queue import (
    ConfigurationError,
    InvalidJobError,
    JobCancelled,
    JobFailed,
    JobPriority,
    JobStatus,
    Worker,
)
from jdobb_async_queue import JobQueue as AsyncJobQueue
from jdobb_async_queue.sync import JobQueue

WAIT = 5.0
SyncFactory = Callable[..., JobQueue]


Loop = Literal["asyncio", "trio"]


@pytest.fixture(params=["asyncio", "trio"])
def loop(request: pytest.FixtureRequest) -> Loop:
    return cast(Loop, request.param)


def backend_kwargs(backend_name: str, tmp_path: Path, url: str | None, namespace: str) -> dict[str, Any]:
    """The constructor arguments that open the test's backend (as ``tests/conftest.py`` does);
    ``url`` is the Redis or PostgreSQL server's."""
    if backend_name == "memory":
        return {"backend": "memory"}
    if backend_name == "sqlite-file":
        return {"backend": "sqlite", "url": f"sqlite:///{tmp_path / 'jobs.db'}"}
    if backend_name == "sqlite-memory":
        return {"backend": "sqlite", "url": "sqlite:///:memory:"}
    assert url is not None
    return {"backend": backend_name, "url": url, "namespace": namespace}


_SERVERS = {"redis": "redis_url", "postgres": "pg_url"}


@pytest.fixture
def open_kwargs(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """Constructor arguments for the test's backend; a server's namespace is deleted at the end."""
    server = _SERVERS.get(backend_name)
    url = None if server is None else request.getfixturevalue(server)
    kwargs = backend_kwargs(backend_name, tmp_path, url, f"test-{uuid.uuid4().hex[:12]}")
    yield kwargs
    if url is not None:
        with JobQueue(**kwargs) as cleanup:
            drop = getattr(cleanup.backend, "drop_namespace", None)
            if drop is not None:
                cleanup.call(drop)


@pytest.fixture
def make_sync_queue(open_kwargs: dict[str, Any], loop: Loop) -> Iterator[SyncFactory]:
    """Open blocking queues on the test's backend and loop; all are closed at the end."""
    opened: list[JobQueue] = []

    def factory(**kwargs: Any) -> JobQueue:
        q = JobQueue(**{**open_kwargs, "loop": loop, **kwargs})
        opened.append(q)
        return q

    yield factory
    for q in opened:
        q.close()


def run_worker(queue: JobQueue, **kwargs: Any) -> None:
    """Run every due job with a Worker in the queue's loop thread, then return."""
    worker = Worker(queue.aio, poll_interval=0.05, **kwargs)
    queue.call(_bounded, worker.run, True)


async def _bounded(run: Callable[..., Any], burst: bool) -> None:
    with anyio.fail_after(WAIT):
        await run(burst=burst)


def loop_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("jdobb-async-queue-")}


# -- the API mirrors the async one -----------------------------------------------------------------


#: Public names of the blocking queue that the async one has no counterpart of.
SYNC_ONLY = frozenset({"aio", "call", "closed"})


def _public(cls: type, instance: object) -> dict[str, object]:
    """The public members of ``cls``, and the attributes its ``__init__`` gives ``instance``."""
    found = {n: inspect.getattr_static(cls, n) for n in dir(cls) if not n.startswith("_")}
    found.update((n, v) for n, v in vars(instance).items() if not n.startswith("_"))
    return found


def api_differences(async_cls: type, sync_cls: type) -> list[str]:
    """Every way the blocking API of ``sync_cls`` differs from the async one of ``async_cls``: a
    member missing on either side, a method whose parameters (names, kinds, order, defaults,
    annotations) or return annotation differ, a coroutine twin, an attribute that is not a
    property, a member without a docstring, a constructor that is more than the async one plus
    ``loop``."""
    instance = async_cls()
    try:
        theirs = _public(async_cls, instance)
    finally:
        anyio.run(instance.close)
    ours = {n: inspect.getattr_static(sync_cls, n) for n in dir(sync_cls) if not n.startswith("_")}
    problems = [f"{n}: no blocking twin" for n in sorted(theirs.keys() - ours.keys())]
    problems += [f"{n}: not on the async queue" for n in sorted(ours.keys() - theirs.keys() - SYNC_ONLY)]
    for name in sorted(theirs.keys() & ours.keys()):
        original, twin = theirs[name], ours[name]
        if not (getattr(twin, "__doc__", None) or "").strip():
            problems.append(f"{name}: no docstring")
        if not inspect.isfunction(original):
            if not isinstance(twin, property):
                problems.append(f"{name}: {twin!r} is not a property")
            continue
        if not inspect.isfunction(twin) or inspect.iscoroutinefunction(twin):
            problems.append(f"{name}: {twin!r} is not a plain method")
        elif inspect.signature(twin) != inspect.signature(original):
            problems.append(f"{name}{inspect.signature(twin)} != {inspect.signature(original)}")
    theirs_init = list(inspect.signature(async_cls).parameters.values())
    loop = inspect.Parameter("loop", inspect.Parameter.KEYWORD_ONLY, default="asyncio",
                             annotation="Literal['asyncio', 'trio']")
    ours_init = list(inspect.signature(sync_cls).parameters.values())
    if ours_init != [*theirs_init, loop]:
        problems.append(f"__init__: {ours_init} != {[*theirs_init, loop]}")
    return problems


def test_the_blocking_api_is_the_async_one() -> None:
    assert api_differences(AsyncJobQueue, JobQueue) == []


def test_each_blocking_method_is_derived_from_its_async_twin() -> None:
    derived = []
    for name, member in vars(JobQueue).items():
        # close() is the one written out: closing also stops the loop thread
        if inspect.isfunction(member) and not name.startswith("_") and name != "close":
            if name in SYNC_ONLY:
                continue
            original = inspect.getattr_static(AsyncJobQueue, name)
            assert inspect.signature(member) == inspect.signature(original), name
            assert member.__module__ == "jdobb_async_queue.sync", name
            assert member.__qualname__ == f"JobQueue.{name}", name
            assert original.__doc__ is not None and member.__doc__ is not None, name
            assert original.__doc__.splitlines()[0] in member.__doc__, name
            derived.append(name)
    assert len(derived) == 15, derived


class _AsyncWithMore(AsyncJobQueue):
    async def requeue(self, job_id: str) -> bool:
        """A method the blocking queue has no twin of."""
        return False


class _AsyncWithAnotherDefault(AsyncJobQueue):
    async def retry(self, job_id: str, *, delay: float = 5) -> bool:
        """A retry whose default differs from the blocking twin's."""
        return False


class _AsyncWithAnotherConstructor(AsyncJobQueue):
    def __init__(self, backend: Any = "memory", *, lanes: int = 1) -> None:
        """A constructor parameter the blocking queue does not take."""
        super().__init__(backend)


class _SyncWithAnotherParameter(JobQueue):
    def get(self, job_id: str, fresh: bool = False) -> Any:
        """A get with a parameter the async one lacks."""


class _SyncWithAnotherName(JobQueue):
    def get(self, id: str) -> Any:
        """A get whose parameter is named differently."""


class _SyncWithACoroutine(JobQueue):
    async def stats(self) -> Any:  # type: ignore[override]
        """A twin that is still async."""


class _SyncWithAnExtra(JobQueue):
    def extra(self) -> None:
        """A name only the blocking queue has."""


class _SyncWithAnotherAnnotation(JobQueue):
    def cancel(self, job_id: str, reason: str = "") -> bool:  # type: ignore[override]
        """A default and an annotation that differ."""
        return False


@pytest.mark.parametrize(
    ("async_cls", "sync_cls", "named"),
    [
        (_AsyncWithMore, JobQueue, "requeue: no blocking twin"),
        (_AsyncWithAnotherDefault, JobQueue, "retry"),
        (_AsyncWithAnotherConstructor, JobQueue, "__init__"),
        (AsyncJobQueue, _SyncWithAnotherParameter, "get"),
        (AsyncJobQueue, _SyncWithAnotherName, "get"),
        (AsyncJobQueue, _SyncWithACoroutine, "stats"),
        (AsyncJobQueue, _SyncWithAnExtra, "extra: not on the async queue"),
        (AsyncJobQueue, _SyncWithAnotherAnnotation, "cancel"),
    ],
)
def test_the_comparison_sees_every_kind_of_drift(
    async_cls: type, sync_cls: type, named: str
) -> None:
    problems = api_differences(async_cls, sync_cls)
    assert len(problems) == 1 and problems[0].startswith(named), problems


def test_a_twin_must_mirror_the_name_it_is_given() -> None:
    from jdobb_async_queue.sync import _blocking, _derived

    with pytest.raises(TypeError, match=r"must mirror queue\.get"):

        @_derived
        class Crossed:
            get = _blocking(lambda queue: queue.stats)


def test_the_blocking_methods_keep_their_signatures_for_help() -> None:
    text = pydoc.plain(pydoc.render_doc(JobQueue))
    assert "enqueue(self, job_type: 'str', data: 'dict[str, Any] | None' = None, *," in text
    assert "retry(self, job_id: 'str', *, delay: 'float' = 0) -> 'bool'" in text
    assert "The blocking twin of :meth:`jdobb_async_queue.JobQueue.enqueue`" in text
    assert ":raises DuplicateJobError: when ``job_id`` is taken" in text  # the async docstring


_TYPED_USE = """
from jdobb_async_queue import Job, JobPriority, QueueStats
from jdobb_async_queue.sync import JobQueue


def use(queue: JobQueue) -> None:
    job_id: str = queue.enqueue("t", {"a": 1}, priority=JobPriority.HIGH, delay=5.0, max_lost=2)
    job: Job | None = queue.get(job_id)
    retried: bool = queue.retry(job_id, delay=1)
    purged: int = queue.purge(["failed"], job_type="t")
    ids: list[str] = queue.enqueue_many([{"job_type": "t"}])
    stats: QueueStats = queue.stats()

    @queue.task(max_retries=2)
    def double(x: int) -> int:
        return 2 * x

    doubled: int = double.wait_sync(double.enqueue_sync(21))
    print(job, retried, purged, ids, stats, doubled, queue.namespace.upper(), queue.closed)
    queue.enqueue("t", priority="high")  # wrong
    queue.enqueue("t", bogus=1)  # wrong
    queue.get(1)  # wrong
    count: int = queue.stats()  # wrong
    queue.retry(job_id, 5)  # wrong
    double.enqueue_sync("x")  # wrong
    reveal_type(queue.list_jobs)
"""


@pytest.mark.timeout(300)
def test_mypy_sees_the_async_signatures_on_the_blocking_queue(tmp_path: Path) -> None:
    """The twins are made at run time, yet mypy --strict checks their calls as it does the
    async methods': names, kinds, types, defaults and return types."""
    path = tmp_path / "typed_use.py"
    path.write_text(_TYPED_USE)
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(path)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=280,
    )
    lines = _TYPED_USE.splitlines()
    wrong = {n for n, line in enumerate(lines, 1) if line.endswith("# wrong")}
    errors = {int(line.split(":")[1]) for line in checked.stdout.splitlines() if ": error:" in line}
    assert errors == wrong, checked.stdout + checked.stderr
    revealed = next(line for line in checked.stdout.splitlines() if "Revealed type" in line)
    assert '"def (status: ' in revealed
    assert "*, job_type: str | None =, limit: int | None =, offset: int =) -> list[" in revealed


def test_properties_mirror_the_async_queue(loop: Loop) -> None:
    def clock() -> float:
        return 1_700_000_000.0

    with JobQueue(namespace="ns", default_ttl=60, clock=clock, loop=loop) as queue:
        assert isinstance(queue.aio, AsyncJobQueue)
        assert queue.backend is queue.aio.backend
        assert queue.namespace == "ns" and queue.default_ttl == 60 and queue.clock is clock
        assert not queue.closed
        assert "open" in repr(queue)
        job = queue.get(queue.enqueue("t"))
        assert job is not None and job.created_at.timestamp() == 1_700_000_000.0
    assert queue.closed and "closed" in repr(queue)


# -- every method, blocking, on every backend ------------------------------------------------------


def test_the_blocking_api_round_trip(make_sync_queue: SyncFactory) -> None:
    queue = make_sync_queue()
    a = queue.enqueue("email", {"to": "a@example.com"}, priority=JobPriority.HIGH, max_retries=1)
    b, c = queue.enqueue_many([{"job_type": "email"}, {"job_type": "sms", "data": {"n": 1}}])
    job = queue.get(a)
    assert job is not None and job.data == {"to": "a@example.com"}
    assert job.priority is JobPriority.HIGH and job.status is JobStatus.PENDING
    assert queue.get("no-such-job") is None
    assert [j.id for j in queue.list_jobs(JobStatus.PENDING, job_type="email")] == [a, b]
    assert queue.stats().pending == 3

    claimed = queue.claim(["email"])
    assert claimed is not None and claimed.id == a and claimed.status is JobStatus.PROCESSING
    assert queue.update(a, progress=0.5, message="half") is True
    assert queue.complete(a, {"sent": True}) is True
    done = queue.get(a)
    assert done is not None and done.status is JobStatus.COMPLETE and done.results == {"sent": True}

    second = queue.claim(["email"])
    assert second is not None and second.id == b
    assert queue.fail(b, "smtp down", retry=False) is True
    failed = queue.get(b)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error == "smtp down"
    assert queue.retry(b) is True
    assert queue.cancel(b, "not needed") is True
    assert queue.cancel(c) is True
    assert queue.cancel(c) is False
    stats = queue.stats()
    assert (stats.complete, stats.cancelled, stats.pending) == (1, 2, 0)
    assert queue.purge([JobStatus.CANCELLED]) == 2
    assert queue.purge() == 1
    assert queue.list_jobs() == []
    with pytest.raises(InvalidJobError):
        queue.update("x", progress=2.0)  # errors come through unchanged


def test_the_event_loop_it_asks_for_runs_in_its_thread(
    make_sync_queue: SyncFactory, loop: Loop
) -> None:
    queue = make_sync_queue()
    assert queue.call(_current_library) == loop
    assert queue.call(_thread_name).startswith("jdobb-async-queue-")
    assert threading.current_thread() is threading.main_thread()


async def _current_library() -> str:
    return sniffio.current_async_library()


async def _thread_name() -> str:
    return threading.current_thread().name


async def _thread() -> threading.Thread:
    return threading.current_thread()


# -- threads ---------------------------------------------------------------------------------------


def test_twenty_threads_enqueue_at_once(make_sync_queue: SyncFactory) -> None:
    queue = make_sync_queue()
    start = threading.Barrier(20, timeout=WAIT)

    def produce(n: int) -> str:
        start.wait()  # all 20 call enqueue at the same moment
        return queue.enqueue("bulk", {"n": n})

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(produce, n) for n in range(20)]
        ids = [f.result(timeout=WAIT) for f in futures]
    assert len(set(ids)) == 20
    assert queue.stats().pending == 20
    stored = {job.data["n"]: job.id for job in queue.list_jobs(job_type="bulk")}
    assert stored == dict(enumerate(ids))


def test_a_worker_thread_and_producer_threads_share_one_queue(make_sync_queue: SyncFactory) -> None:
    queue = make_sync_queue()

    @queue.task
    def square(x: int) -> int:
        return x * x

    worker = Worker(queue.aio, poll_interval=0.05, max_concurrent=4)
    background = threading.Thread(target=queue.call, args=(worker.run,))
    background.start()
    try:

        def produce(n: int) -> int:
            return square.wait_sync(square.enqueue_sync(n), timeout=WAIT)

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(produce, range(8), timeout=WAIT))
        assert results == [n * n for n in range(8)]
    finally:
        queue.call(worker.stop)
        background.join(WAIT)
    assert not background.is_alive()


# -- the loop thread's lifetime --------------------------------------------------------------------


def test_close_ends_the_loop_thread(make_sync_queue: SyncFactory) -> None:
    before = loop_threads()
    queue = make_sync_queue()
    (thread,) = loop_threads() - before
    assert thread is queue.call(_thread) and thread.is_alive()
    queue.close()
    assert thread not in threading.enumerate()
    assert loop_threads() == before
    queue.close()  # twice is fine
    assert queue.closed
    with pytest.raises(RuntimeError, match="closed"):
        queue.enqueue("t")
    with pytest.raises(RuntimeError, match="closed"):
        queue.stats()


def test_close_refuses_the_loop_thread_itself(make_sync_queue: SyncFactory) -> None:
    queue = make_sync_queue()
    with pytest.raises(RuntimeError, match="own loop thread"):
        queue.call(_close, queue)
    assert not queue.closed
    assert queue.stats().pending == 0


async def _close(queue: JobQueue) -> None:
    queue.close()


def test_the_with_block_closes_the_queue(open_kwargs: dict[str, Any], loop: Loop) -> None:
    before = loop_threads()
    with JobQueue(**open_kwargs, loop=loop) as queue:
        assert len(loop_threads() - before) == 1
        queue.enqueue("t")
    assert queue.closed
    assert loop_threads() == before


def test_a_queue_that_is_garbage_collected_stops_its_thread(loop: Loop) -> None:
    queue = JobQueue(loop=loop)
    queue.enqueue("t")

    @queue.task  # its blocking twins use the loop thread: that must not keep the queue alive
    def noop() -> None:
        pass

    noop.enqueue_sync()
    thread = queue.call(_thread)
    del queue, noop
    gc.collect()
    thread.join(WAIT)
    assert not thread.is_alive()


@pytest.mark.parametrize("backend", ["memory", "sqlite-file"])
def test_a_script_that_never_closes_its_queue_still_exits(
    backend: str, loop: Loop, tmp_path: Path
) -> None:
    kwargs = backend_kwargs(backend, tmp_path, None, "default")
    script = textwrap.dedent(
        f"""
        from jdobb_async_queue.sync import JobQueue

        queue = JobQueue(**{kwargs!r}, loop={loop!r})

        @queue.task
        def add(x: int, y: int) -> int:
            return x + y

        print(add.enqueue_sync(1, 2) is not None, queue.stats().pending)
        # no close(): the interpreter's exit must not hang on the loop thread
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1"]
    assert done.stderr == ""


def test_tasks_of_a_closed_queue_refuse_clearly(loop: Loop) -> None:
    queue = JobQueue(loop=loop)

    @queue.task
    def noop() -> None:
        pass

    job_id = noop.enqueue_sync()
    queue.close()
    with pytest.raises(RuntimeError, match="closed"):
        noop.enqueue_sync()
    with pytest.raises(RuntimeError, match="closed"):
        noop.wait_sync(job_id, timeout=WAIT)
    with pytest.raises(RuntimeError, match="closed"):
        queue.call(_current_library)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_clear_error_and_exits(loop: Loop) -> None:
    """gunicorn --preload and multiprocessing's fork copy the queue but not its loop thread: the
    child must neither hang on a call nor at exit."""
    script = textwrap.dedent(
        f"""
        import os, sys, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        from jdobb_async_queue.sync import JobQueue

        queue = JobQueue(loop={loop!r})

        @queue.task
        def noop() -> None:
            pass

        queue.enqueue("t")
        pid = os.fork()
        if pid == 0:
            for call in (lambda: queue.enqueue("t"), noop.enqueue_sync):
                try:
                    call()
                except RuntimeError as exc:
                    print("child", "another process" in str(exc), flush=True)
            sys.exit(0)  # atexit runs here too: it must not wait for the parent's thread
        os.waitpid(pid, 0)
        print("parent", queue.stats().pending, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["child True", "child True", "parent 1"]


def test_close_cancels_calls_still_running_in_other_threads(
    make_sync_queue: SyncFactory,
) -> None:
    queue = make_sync_queue()

    @queue.task
    def never_run() -> None:
        pass

    job_id = never_run.enqueue_sync()
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            never_run.wait_sync(job_id)  # no timeout, no worker: waits until close()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    queue.close()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], (concurrent.futures.CancelledError, RuntimeError))


def test_close_stops_a_running_worker_and_hands_its_job_back(
    open_kwargs: dict[str, Any], backend_name: str, loop: Loop
) -> None:
    if backend_name in ("memory", "sqlite-memory"):
        pytest.skip("the store must outlive the queue to be inspected")
    queue = JobQueue(**open_kwargs, loop=loop)
    started = threading.Event()

    @queue.task("slow")
    def slow() -> None:
        started.set()
        threading.Event().wait(0.5)  # blocking; abandoned when the worker is cancelled

    job_id = slow.enqueue_sync()
    worker = Worker(queue.aio, poll_interval=0.05)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            queue.call(worker.run)
        except BaseException as exc:
            outcome.append(exc)

    background = threading.Thread(target=run)
    background.start()
    assert started.wait(WAIT)
    queue.close()
    background.join(WAIT)
    assert not background.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], concurrent.futures.CancelledError)
    with JobQueue(**open_kwargs, loop=loop) as again:
        job = again.get(job_id)
        assert job is not None and job.status is JobStatus.PENDING  # handed back, due again


def test_a_bad_loop_or_backend_leaves_no_thread_behind() -> None:
    before = loop_threads()
    with pytest.raises(ConfigurationError, match="loop must be"):
        JobQueue(loop="curio")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown backend"):
        JobQueue(backend="nope")
    with pytest.raises(ConfigurationError):
        JobQueue(backend="sqlite", url="redis://localhost")
    assert loop_threads() == before


# -- tasks and their blocking twins ----------------------------------------------------------------


def test_tasks_on_a_blocking_queue(make_sync_queue: SyncFactory) -> None:
    queue = make_sync_queue()

    @queue.task
    async def add(x: int, y: int = 0) -> int:
        return x + y

    @queue.task("thumbs.resize", max_retries=0)
    def resize(path: str, *, width: int) -> str:
        if width <= 0:
            raise ValueError(f"bad width {width}")
        return f"{path}@{width}"

    a = add.enqueue_sync(1, y=2)
    b = resize.enqueue_sync("a.png", width=64)
    c = resize.enqueue_sync("b.png", width=0)
    d = add.with_options(priority=JobPriority.LOW).enqueue_sync(5)
    job = queue.get(a)
    assert job is not None and job.job_type == add.name
    assert job.data == {"args": [1], "kwargs": {"y": 2}}
    low = queue.get(d)
    assert low is not None and low.priority is JobPriority.LOW

    run_worker(queue)
    assert add.wait_sync(a, timeout=WAIT) == 3
    assert resize.wait_sync(b, timeout=WAIT) == "a.png@64"
    with pytest.raises(JobFailed, match="ValueError: bad width 0"):
        resize.wait_sync(c, timeout=WAIT)
    assert add.wait_sync(d, timeout=WAIT) == 5
    done = queue.get(b)
    assert done is not None and done.results == {"result": "a.png@64"}
    result = queue.call(resize.get_result, b)
    assert result is not None and result.result == "a.png@64" and result.is_done


def test_blocking_waits_time_out_and_report_cancellation(make_sync_queue: SyncFactory) -> None:
    queue = make_sync_queue()

    @queue.task
    def idle() -> None:
        pass

    job_id = idle.enqueue_sync()
    with pytest.raises(TimeoutError):
        idle.wait_sync(job_id, timeout=0.1)
    assert queue.cancel(job_id, "changed my mind") is True
    with pytest.raises(JobCancelled, match="changed my mind"):
        idle.wait_sync(job_id, timeout=WAIT)


def test_a_sync_producer_feeds_an_async_worker_elsewhere(
    open_kwargs: dict[str, Any], backend_name: str, loop: Loop
) -> None:
    """The Django/Flask shape: a blocking producer; a worker in another event loop (here the test
    thread's own ``anyio.run``) on the same store, knowing the task by name."""
    if backend_name in ("memory", "sqlite-memory"):
        pytest.skip("a store of its own per queue: nothing to share across event loops")
    with JobQueue(**open_kwargs, loop=loop) as producer:
        job_id = producer.enqueue("mail.send", {"args": ["bo@example.com"], "kwargs": {}})

        async def consume() -> None:
            async with AsyncJobQueue(**open_kwargs) as consumer:

                @consumer.task("mail.send")
                async def send(to: str) -> str:
                    return f"sent to {to}"

                with anyio.fail_after(WAIT):
                    await Worker(consumer, poll_interval=0.05).run(burst=True)

        anyio.run(consume, backend=loop)
        job = producer.get(job_id)
        assert job is not None and job.status is JobStatus.COMPLETE
        assert job.results == {"result": "sent to bo@example.com"}


@pytest.mark.parametrize("url", [None, "memory://"], ids=["sqlite-temp-dir", "memory"])
def test_the_sync_example_runs(url: str | None) -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "sync_script.py"
    done = subprocess.run(
        [sys.executable, str(script), *([url] if url else [])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "'one two three': 3 word(s)" in done.stdout
    assert "'': failed: ValueError: empty text" in done.stdout
    assert "ping: {'pong': 'MainThread'}" in done.stdout
    assert "complete=4 failed=1" in done.stdout
