"""Function tasks (``@queue.task``) on every backend, under asyncio and trio.

What a task stores is public (``docs/tasks.md``): the job type is the task's name, the data is
``{"args": [...], "kwargs": {...}}`` (empty parts left out) and the results ``{"result": value}``. Several tests check
that format on the stored job, and one enqueues a task by name from a producer that never saw the
function. Every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest

import jdobb_async_queue._tasks as tasks_module
from jdobb_async_queue import (
    Broadcaster,
    ConfigurationError,
    InvalidJobError,
    JobCancelled,
    JobContext,
    JobFailed,
    JobNotFoundError,
    JobPriority,
    JobQueue,
    JobStatus,
    SerializationError,
    Task,
    TaskArgumentError,
    TaskResult,
    Worker,
    current_job,
)

from .conftest import QueueFactory

ROOT = Path(__file__).resolve().parents[1]
#: Upper bound, in seconds, of every wait here.
WAIT = 5.0


def fast_worker(queue: JobQueue, **kwargs: Any) -> Worker:
    """A worker that looks at an idle queue often (polling backends pick jobs up quickly)."""
    return Worker(queue, poll_interval=0.05, **kwargs)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` in the background for the body, then stop it (bounded)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield worker
        finally:
            with anyio.fail_after(WAIT):
                await worker.stop()
            tg.cancel_scope.cancel()


async def burst(worker: Worker) -> None:
    with anyio.fail_after(WAIT):
        await worker.run(burst=True)


def producer_and_consumer(make_queue: QueueFactory, backend_name: str) -> tuple[JobQueue, JobQueue]:
    """Two queues on one store (one queue twice on sqlite-memory, where each is its own db)."""
    consumer = make_queue()
    producer = consumer if backend_name == "sqlite-memory" else make_queue()
    return producer, consumer


# -- the round trip and the stored format --------------------------------------------------------


@pytest.mark.anyio
async def test_an_async_task_round_trip_stores_the_documented_format(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()

    @queue.task
    async def add(x: int, y: int = 0) -> int:
        return x + y

    assert add.name == f"{__name__}.{add.__qualname__}"
    assert add.name.endswith(
        "test_an_async_task_round_trip_stores_the_documented_format.<locals>.add"
    )
    job_id = await add.enqueue(1, y=2)
    job = await queue.get(job_id)
    assert job is not None
    assert job.job_type == add.name
    assert job.data == {"args": [1], "kwargs": {"y": 2}}
    assert job.status is JobStatus.PENDING

    await burst(fast_worker(queue))
    with anyio.fail_after(WAIT):
        assert await add.wait(job_id) == 3
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETE
    assert job.results == {"result": 3}


@pytest.mark.anyio
async def test_a_plain_def_task_runs_in_a_worker_thread(make_queue: QueueFactory) -> None:
    queue = make_queue()
    loop_thread = threading.get_ident()

    @queue.task
    def where(tag: str) -> dict[str, Any]:
        return {"tag": tag, "in_loop_thread": threading.get_ident() == loop_thread}

    job_id = await where.enqueue("t1")
    await burst(fast_worker(queue))
    assert await where.wait(job_id, timeout=WAIT) == {"tag": "t1", "in_loop_thread": False}


@pytest.mark.anyio
async def test_a_producer_without_the_function_enqueues_by_name(
    make_queue: QueueFactory, backend_name: str
) -> None:
    producer, consumer = producer_and_consumer(make_queue, backend_name)

    @consumer.task("billing.charge")
    def charge(amount: int, *, currency: str = "EUR") -> str:
        return f"{amount} {currency}"

    # The producer knows only the documented format: no import of `charge`, no task on its queue.
    by_name = await producer.enqueue("billing.charge", {"args": [5], "kwargs": {"currency": "USD"}})
    only_args = await producer.enqueue("billing.charge", {"args": [7]})
    wrong_call = await producer.enqueue("billing.charge", {"args": [], "kwargs": {}})
    not_task_data = await producer.enqueue("billing.charge", {"amount": 5})

    await burst(fast_worker(consumer))
    assert await charge.wait(by_name, timeout=WAIT) == "5 USD"
    assert await charge.wait(only_args, timeout=WAIT) == "7 EUR"
    with pytest.raises(JobFailed) as failed:
        await charge.wait(wrong_call, timeout=WAIT)
    assert failed.value.error is not None
    assert "TaskArgumentError" in failed.value.error
    assert "billing.charge" in failed.value.error
    assert "amount" in failed.value.error
    with pytest.raises(JobFailed) as malformed:
        await charge.wait(not_task_data, timeout=WAIT)
    assert malformed.value.error is not None
    assert '{"args": [...], "kwargs": {...}}' in malformed.value.error
    # ... and the producer can read the outcome the same way.
    job = await producer.get(by_name)
    assert job is not None and job.results == {"result": "5 USD"}


@pytest.mark.anyio
async def test_a_task_of_one_queue_is_enqueued_through_another_on_the_same_store(
    make_queue: QueueFactory, backend_name: str
) -> None:
    producer, consumer = producer_and_consumer(make_queue, backend_name)

    async def double(x: int) -> int:
        return 2 * x

    # The same function registered on both queues: the producer enqueues, the consumer runs it.
    sender = producer.task(name="math.double")(double) if producer is not consumer else None
    runner = consumer.task(name="math.double")(double)
    job_id = await (sender or runner).enqueue(21)
    await burst(fast_worker(consumer))
    assert await runner.wait(job_id, timeout=WAIT) == 42


# -- naming ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_names_and_wrapping(make_queue: QueueFactory) -> None:
    queue = make_queue()

    async def fetch(url: str) -> str:
        """Fetch a page."""
        return url

    task = queue.task(fetch)
    assert isinstance(task, Task)
    assert task.name == f"{__name__}.{fetch.__qualname__}"
    assert task.__name__ == "fetch"
    assert task.__doc__ == "Fetch a page."
    assert task.__wrapped__ is fetch
    assert task.func is fetch
    assert task.queue is queue
    assert repr(task) == f"<Task {task.name}>"

    named = queue.task("crawler.fetch")(fetch)
    assert named.name == "crawler.fetch"
    also_named = queue.task(name="crawler.fetch2", priority=JobPriority.HIGH)(fetch)
    assert also_named.name == "crawler.fetch2"


@pytest.mark.anyio
async def test_two_tasks_with_one_name_on_a_queue_is_an_error(make_queue: QueueFactory) -> None:
    queue = make_queue()

    def one() -> int:
        return 1

    def two() -> int:
        return 2

    queue.task("same")(one)
    with pytest.raises(ConfigurationError, match="'same' is already registered"):
        queue.task("same")(two)
    queue.task(one)  # its default name is free
    with pytest.raises(ConfigurationError, match="already registered"):
        queue.task(one)
    # another queue has its own tasks
    other = JobQueue()
    try:
        other.task("same")(two)
    finally:
        await other.close()


@pytest.mark.anyio
async def test_bad_names_and_non_functions_are_refused(make_queue: QueueFactory) -> None:
    queue = make_queue()

    def f() -> None:
        pass

    with pytest.raises(ConfigurationError, match="non-empty string"):
        queue.task("")(f)
    with pytest.raises(ConfigurationError, match="non-empty string"):
        queue.task(name=3)(f)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="decorates a function"):
        queue.task("x")(42)  # type: ignore[call-overload]

    class Adder:
        async def __call__(self, x: int) -> int:
            return x + 1

    with pytest.raises(ConfigurationError, match=r"name=\.\.\."):
        queue.task(Adder())  # an instance has no __qualname__: it needs a name


@pytest.mark.anyio
async def test_an_async_callable_object_is_awaited_not_sent_to_a_thread(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()

    class Adder:
        def __init__(self, n: int) -> None:
            self.n = n

        async def __call__(self, x: int) -> int:
            await anyio.lowlevel.checkpoint()
            return x + self.n

    add_ten = queue.task("add_ten")(Adder(10))
    job_id = await add_ten.enqueue(5)
    await burst(fast_worker(queue))
    assert await add_ten.wait(job_id, timeout=WAIT) == 15
    assert await add_ten(1) == 11


@pytest.mark.anyio
async def test_a_plain_def_returning_a_coroutine_is_awaited(make_queue: QueueFactory) -> None:
    queue = make_queue()

    async def inner(x: int) -> int:
        return x * 3

    def wrapper(x: int) -> Any:  # a sync decorator's wrapper around an async function
        return inner(x)

    task = queue.task("wrapped")(wrapper)
    job_id = await task.enqueue(2)
    await burst(fast_worker(queue))
    assert await task.wait(job_id, timeout=WAIT) == 6


@pytest.mark.anyio
async def test_a_task_registered_again_on_another_queue_keeps_its_own_identity(
    make_queue: QueueFactory,
) -> None:
    first = make_queue()
    second = JobQueue()
    try:

        @first.task
        async def greet(name: str) -> str:
            return f"hi {name}"

        again = second.task(greet)  # a Task passed in: its function is registered
        assert again.queue is second
        assert again.func is greet.func
        assert again.name == greet.name
        renamed = second.task("greet.v2")(greet)
        assert renamed.name == "greet.v2" and renamed.queue is second
        assert greet.queue is first  # the original is untouched

        job_id = await renamed.enqueue("bo")
        await burst(fast_worker(second))
        assert await renamed.wait(job_id, timeout=WAIT) == "hi bo"
    finally:
        await second.close()


# -- arguments are checked before anything is stored ----------------------------------------------


@pytest.mark.anyio
async def test_arguments_are_checked_against_the_signature_before_storing(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()

    @queue.task
    async def resize(path: str, width: int, *, keep_ratio: bool = True) -> str:
        return path

    bad_calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}),
        (("a.png",), {}),
        (("a.png", 1, 2), {}),
        (("a.png", 1), {"colour": "red"}),
        (("a.png",), {"path": "b.png", "width": 2}),
        (("a.png", 1, True), {}),  # keep_ratio is keyword-only
    ]
    for args, kwargs in bad_calls:
        with pytest.raises(TaskArgumentError) as info:
            await resize.enqueue(*args, **kwargs)
        assert resize.name in str(info.value)
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, InvalidJobError)
    assert await queue.list_jobs() == []


@pytest.mark.anyio
async def test_positional_only_var_positional_and_keyword_only_signatures_are_checked(
    make_queue: QueueFactory,
) -> None:
    """Calls without keywords take a quick arity check; the rest go through Signature.bind."""
    queue = make_queue()

    @queue.task
    async def join(sep: str, /, *parts: str, upper: bool = False) -> str:
        return sep.join(parts)

    @queue.task
    async def tag(name: str, *, label: str) -> str:
        return f"{name}:{label}"

    @queue.task
    async def nothing() -> None:
        return None

    bad_calls: list[tuple[Task[..., Any], tuple[Any, ...], dict[str, Any]]] = [
        (join, (), {}),
        (join, (), {"sep": "-"}),  # positional-only, given by keyword
        (tag, ("a",), {}),  # a required keyword-only parameter is missing
        (tag, ("a", "b"), {}),
        (nothing, (1,), {}),
    ]
    for task, args, kwargs in bad_calls:
        with pytest.raises(TaskArgumentError):
            await task.enqueue(*args, **kwargs)
    assert await queue.list_jobs() == []

    stored = [
        await join.enqueue("-"),
        await join.enqueue("-", "a", "b", upper=True),
        await tag.enqueue("a", label="b"),
        await nothing.enqueue(),
    ]
    jobs = [await queue.get(job_id) for job_id in stored]
    assert [job.data for job in jobs if job is not None] == [
        {"args": ["-"]},
        {"args": ["-", "a", "b"], "kwargs": {"upper": True}},
        {"args": ["a"], "kwargs": {"label": "b"}},
        {},  # a call without arguments stores no empty parts
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        (1, 2),
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        object(),
        float("nan"),
        {1: "int key"},
        b"bytes",
        [1, {2}],
    ],
    ids=["set", "tuple", "datetime", "object", "nan", "int-key", "bytes", "nested-set"],
)
async def test_non_json_arguments_are_refused_before_storing(
    make_queue: QueueFactory, value: Any
) -> None:
    queue = make_queue()

    @queue.task
    async def store(item: Any, *, extra: Any = None) -> None:
        pass

    with pytest.raises(SerializationError, match="JSON-compatible") as info:
        await store.enqueue(value)
    assert info.value.what == f"the arguments of {store.name}"
    with pytest.raises(SerializationError, match="JSON-compatible") as info:
        await store.enqueue(1, extra=value)
    assert info.value.what == f"the arguments of {store.name}"
    assert await queue.list_jobs() == []


# -- options ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_decorator_options_are_stored_on_each_job(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task("report", priority=JobPriority.HIGH, max_retries=3, retry_delay=2.5, timeout=9.0)
    def report() -> None:
        pass

    job = await queue.get(await report.enqueue())
    assert job is not None
    assert job.priority is JobPriority.HIGH
    assert (job.max_retries, job.retry_delay, job.timeout) == (3, 2.5, 9.0)


@pytest.mark.anyio
async def test_with_options_returns_a_new_task_and_leaves_the_original_alone(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()

    @queue.task(max_retries=1)
    async def ping(n: int) -> int:
        return n

    urgent = ping.with_options(priority=JobPriority.HIGH, metadata={"by": "test"}, ttl=60)
    assert urgent is not ping
    assert ping.options == {"max_retries": 1}
    assert urgent.name == ping.name and urgent.func is ping.func and urgent.queue is queue

    plain = await queue.get(await ping.enqueue(1))
    special = await queue.get(await urgent.enqueue(2))
    assert plain is not None and special is not None
    assert plain.priority is JobPriority.NORMAL and plain.metadata == {} and plain.ttl is None
    assert special.priority is JobPriority.HIGH
    assert special.metadata == {"by": "test"} and special.ttl == 60
    assert special.max_retries == 1  # the task's own options still apply
    assert special.data == {"args": [2]}


@pytest.mark.anyio
async def test_with_options_delay_and_execute_at_schedule_the_call(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()

    @queue.task
    def later() -> str:
        return "ran"

    in_a_minute = later.with_options(delay=60)
    at_noon = in_a_minute.with_options(execute_at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert "delay" not in at_noon.options  # one replaces the other, no conflict
    now_id = await later.enqueue()
    delayed_id = await in_a_minute.enqueue()
    noon_id = await at_noon.enqueue()
    stats = await queue.stats()
    assert stats.pending == 3 and stats.scheduled == 2

    await burst(fast_worker(queue))  # burst leaves jobs that are not due yet
    assert await later.wait(now_id, timeout=WAIT) == "ran"
    for job_id in (delayed_id, noon_id):
        result = await later.get_result(job_id)
        assert result is not None and result.status is JobStatus.PENDING


@pytest.mark.anyio
async def test_with_options_depends_on_orders_calls(make_queue: QueueFactory) -> None:
    queue = make_queue()
    order: list[str] = []

    @queue.task
    async def step(name: str) -> str:
        order.append(name)
        ctx = current_job()
        return f"{name} after {sorted(ctx.dependency_results)}"

    first = await step.enqueue("first")
    second = await step.with_options(depends_on=[first]).enqueue("second")
    assert (await queue.stats()).waiting == 1
    await burst(fast_worker(queue, max_concurrent=2))
    assert await step.wait(second, timeout=WAIT) == f"second after {[first]}"
    assert order == ["first", "second"]


@pytest.mark.anyio
async def test_unique_keys_static_computed_and_overridden(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task(unique_key=lambda user_id, **_: f"sync-user:{user_id}")
    async def sync_user(user_id: int, *, full: bool = False) -> None:
        pass

    @queue.task(unique_key="nightly")
    def nightly() -> None:
        pass

    a = await sync_user.enqueue(1)
    assert await sync_user.enqueue(1, full=True) == a  # same key while pending
    b = await sync_user.enqueue(2)
    assert b != a
    job = await queue.get(a)
    assert job is not None and job.unique_key == "sync-user:1"

    n = await nightly.enqueue()
    assert await nightly.enqueue() == n
    # with_options(unique_key=...) wins over the task's own key
    other = nightly.with_options(unique_key="nightly-extra")
    assert other.unique_key == "nightly-extra"
    extra = await other.enqueue()
    assert extra != n
    assert nightly.unique_key == "nightly"
    none = nightly.with_options(unique_key=None)
    assert await none.enqueue() not in (n, extra)


@pytest.mark.anyio
async def test_bad_options_are_refused_when_the_task_is_made(make_queue: QueueFactory) -> None:
    queue = make_queue()

    def f() -> None:
        pass

    with pytest.raises(InvalidJobError, match="unknown enqueue option"):
        queue.task("a", colour="red")(f)  # type: ignore[call-overload]
    with pytest.raises(InvalidJobError, match="priority"):
        queue.task("b", priority="urgent")(f)  # type: ignore[call-overload]
    with pytest.raises(InvalidJobError, match="max_retries"):
        queue.task("c", max_retries=-1)(f)
    with pytest.raises(InvalidJobError, match="unique_key"):
        queue.task("d", unique_key=5)(f)  # type: ignore[call-overload]
    task = queue.task("e")(f)
    with pytest.raises(InvalidJobError, match="unknown enqueue option"):
        task.with_options(colour="red")  # type: ignore[call-arg]
    with pytest.raises(InvalidJobError, match="timeout"):
        task.with_options(timeout=-1)
    with pytest.raises(InvalidJobError, match="data"):
        task.with_options(data={"x": 1})  # type: ignore[call-arg]
    assert [t for t in ("a", "b", "c", "d") if t in queue.tasks] == []


# -- results and waiting ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "value",
    [None, 0, -7, 1.5, "text", True, False, [], [1, "a", None, [2.5]], {}, {"a": {"b": [1, True]}}],
)
async def test_any_json_value_comes_back_as_returned(make_queue: QueueFactory, value: Any) -> None:
    queue = make_queue()

    @queue.task
    async def echo() -> Any:
        return value

    job_id = await echo.enqueue()
    await burst(fast_worker(queue))
    got = await echo.wait(job_id, timeout=WAIT)
    assert got == value and type(got) is type(value)
    result = await echo.get_result(job_id)
    assert result is not None and result.result == value and type(result.result) is type(value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "value",
    [(1, 2), {1, 2}, object(), "lone \ud800 surrogate", float("nan")],
    ids=["tuple", "set", "object", "surrogate", "nan"],
)
async def test_a_non_json_return_value_fails_the_job(make_queue: QueueFactory, value: Any) -> None:
    """In a thread or on the event loop, and for scalars too: never a crash of the worker."""
    queue = make_queue()

    @queue.task
    def bad() -> Any:
        return value

    @queue.task
    async def bad_async() -> Any:
        return value

    job_ids = [await bad.enqueue(), await bad_async.enqueue()]
    await burst(fast_worker(queue))
    for job_id in job_ids:
        with pytest.raises(JobFailed, match="invalid result"):
            await bad.wait(job_id, timeout=WAIT)


@pytest.mark.anyio
async def test_get_result_reports_every_field(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task(max_retries=2)
    async def square(x: int) -> int:
        return x * x

    assert await square.get_result("no-such-job") is None
    job_id = await square.enqueue(4)
    pending = await square.get_result(job_id)
    assert isinstance(pending, TaskResult)
    assert pending.job_id == job_id
    assert pending.status is JobStatus.PENDING
    assert pending.result is None and pending.error is None
    assert pending.started_at is None and pending.completed_at is None
    assert pending.duration is None and not pending.is_done
    assert (pending.attempts, pending.max_retries) == (0, 2)

    await burst(fast_worker(queue))
    done = await square.get_result(job_id)
    assert done is not None
    assert done.status is JobStatus.COMPLETE and done.is_done
    assert done.result == 16 and done.error is None
    assert done.started_at is not None and done.completed_at is not None
    assert done.created_at <= done.started_at <= done.completed_at
    assert done.duration is not None and done.duration >= 0
    assert done.duration == (done.completed_at - done.started_at).total_seconds()
    assert (done.attempts, done.max_retries) == (1, 2)


@pytest.mark.anyio
async def test_wait_raises_job_failed_with_the_jobs_error(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task
    async def explode() -> None:
        raise ValueError("boom")

    @queue.task
    def explode_in_thread() -> None:
        raise KeyError("missing")

    a = await explode.enqueue()
    b = await explode_in_thread.enqueue()
    await burst(fast_worker(queue))
    with pytest.raises(JobFailed) as first:
        await explode.wait(a, timeout=WAIT)
    assert first.value.job_id == a
    assert first.value.error == "ValueError: boom"
    with pytest.raises(JobFailed) as second:
        await explode_in_thread.wait(b, timeout=WAIT)
    assert second.value.error == "KeyError: 'missing'"
    result = await explode.get_result(a)
    assert result is not None and result.status is JobStatus.FAILED
    assert result.error == "ValueError: boom" and result.result is None and result.is_done


@pytest.mark.anyio
async def test_failed_attempts_are_retried_before_wait_returns(make_queue: QueueFactory) -> None:
    queue = make_queue()
    calls = 0

    @queue.task(max_retries=2, retry_delay=0)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first attempt fails")
        return f"ok on attempt {current_job().attempt}"

    job_id = await flaky.enqueue()
    async with running(fast_worker(queue)):
        assert await flaky.wait(job_id, timeout=WAIT) == "ok on attempt 2"
    result = await flaky.get_result(job_id)
    assert result is not None and result.attempts == 2 and result.error is None


@pytest.mark.anyio
async def test_cancel_and_wait_raises_job_cancelled(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task
    async def never() -> None:
        pass

    job_id = await never.enqueue()
    assert await never.cancel(job_id) is True
    assert await never.cancel(job_id) is False  # already ended
    with pytest.raises(JobCancelled) as info:
        await never.wait(job_id, timeout=WAIT)
    assert info.value.job_id == job_id

    other = await never.enqueue()
    assert await never.cancel(other, "no longer needed") is True
    with pytest.raises(JobCancelled) as reason:
        await never.wait(other, timeout=WAIT)
    assert reason.value.error == "no longer needed"
    assert await never.cancel("no-such-job") is False


@pytest.mark.anyio
async def test_wait_times_out_and_rejects_unknown_jobs(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task
    async def idle() -> None:
        pass

    job_id = await idle.enqueue()  # no worker runs it
    with anyio.fail_after(WAIT), pytest.raises(TimeoutError):
        await idle.wait(job_id, timeout=0.1)
    with pytest.raises(JobNotFoundError):
        await idle.wait("no-such-job", timeout=WAIT)


@pytest.mark.anyio
async def test_wait_follows_pushed_updates_and_reads_the_outcome_from_them(
    make_queue: QueueFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wait`` subscribes once and takes the result from the terminal update: it reads the job
    once (the Broadcaster's snapshot) and works even when ``ttl=0`` deletes the job at once."""
    queue = make_queue()
    release = anyio.Event()
    gets = 0
    subscribed = anyio.Event()
    backend = queue.backend
    original_get = backend.get

    async def counting_get(job_id: str, *, now: float) -> Any:
        nonlocal gets
        gets += 1
        record = await original_get(job_id, now=now)
        subscribed.set()  # the Broadcaster reads its snapshot right after subscribing
        return record

    @queue.task
    async def gated() -> str:
        await release.wait()
        return "released"

    job_id = await gated.with_options(ttl=0).enqueue()
    outcome: list[str] = []

    async def waiter() -> None:
        outcome.append(await gated.wait(job_id, timeout=WAIT))

    async with running(fast_worker(queue)):
        with anyio.fail_after(WAIT):
            while (job := await queue.get(job_id)) is None or job.status is JobStatus.PENDING:
                await anyio.sleep(0.01)  # polling here is the test's, not wait()'s
        monkeypatch.setattr(backend, "get", counting_get)
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            with anyio.fail_after(WAIT):
                await subscribed.wait()
            release.set()
        monkeypatch.undo()
    assert outcome == ["released"]
    assert gets == 1
    assert await queue.get(job_id) is None  # ttl=0: gone, yet wait() had its result


# -- the job context -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_current_job_inside_async_and_plain_tasks(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task
    async def async_step(x: int) -> dict[str, Any]:
        ctx = current_job()
        await ctx.update(progress=0.5, message="halfway")
        return {"id": ctx.id, "type": ctx.job_type, "data": ctx.data, "attempt": ctx.attempt}

    @queue.task
    def thread_step(x: int) -> dict[str, Any]:
        ctx = current_job()  # the context follows the call into its thread
        anyio.from_thread.run(ctx.update, 0.5, "from a thread")
        return {"id": ctx.id, "type": ctx.job_type, "data": ctx.data}

    a = await async_step.enqueue(1)
    b = await thread_step.enqueue(x=2)
    await burst(fast_worker(queue))
    assert await async_step.wait(a, timeout=WAIT) == {
        "id": a,
        "type": async_step.name,
        "data": {"args": [1]},
        "attempt": 1,
    }
    assert await thread_step.wait(b, timeout=WAIT) == {
        "id": b,
        "type": thread_step.name,
        "data": {"kwargs": {"x": 2}},
    }
    job_a, job_b = await queue.get(a), await queue.get(b)
    assert job_a is not None and job_a.message == "halfway"
    assert job_b is not None and job_b.message == "from a thread"
    with pytest.raises(LookupError):
        current_job()  # not inside a job


@pytest.mark.anyio
async def test_progress_of_a_running_task_reaches_subscribers(make_queue: QueueFactory) -> None:
    queue = make_queue()
    release = anyio.Event()

    @queue.task
    async def long_job() -> None:
        await current_job().update(progress=0.25, message="a quarter")
        await release.wait()

    job_id = await long_job.enqueue()
    seen: list[tuple[str, float]] = []
    async with running(fast_worker(queue)):
        with anyio.fail_after(WAIT):
            async for update in Broadcaster(queue).subscribe(job_id):
                seen.append((update.status.value, update.progress))
                if update.message == "a quarter":
                    release.set()
    assert ("processing", 0.25) in seen
    assert seen[-1][0] == "complete"


# -- plain def tasks: threads, timeouts, cancellation, limits --------------------------------------


@pytest.mark.anyio
async def test_a_plain_def_task_does_not_block_the_event_loop(make_queue: QueueFactory) -> None:
    queue = make_queue()
    slept = threading.Event()

    @queue.task
    def sleeper() -> str:
        time.sleep(0.3)  # blocking, in its own thread
        slept.set()
        return "slept"

    @queue.task
    async def ticker() -> int:
        ticks = 0
        with anyio.fail_after(WAIT):
            while not slept.is_set():
                await anyio.sleep(0.01)
                ticks += 1
        return ticks

    sleeping = await sleeper.enqueue()
    ticking = await ticker.enqueue()
    await burst(fast_worker(queue, max_concurrent=2))
    assert await sleeper.wait(sleeping, timeout=WAIT) == "slept"
    # 0.3 s of sleep leaves room for ~30 ticks; a blocked loop would tick once at most.
    assert await ticker.wait(ticking, timeout=WAIT) >= 5


@pytest.mark.anyio
async def test_a_timed_out_plain_def_task_fails_and_its_thread_is_abandoned(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()
    release = threading.Event()
    finished = threading.Event()

    @queue.task(timeout=0.2)
    def stuck() -> str:
        release.wait(WAIT)  # cannot be interrupted
        finished.set()
        return "too late"

    job_id = await stuck.enqueue()
    try:
        with anyio.fail_after(WAIT):
            await fast_worker(queue).process_one()  # returns at the timeout, not after WAIT
        with pytest.raises(JobFailed, match=r"timed out after 0\.2s"):
            await stuck.wait(job_id, timeout=WAIT)
        result = await stuck.get_result(job_id)
        assert result is not None and result.status is JobStatus.FAILED
        assert result.error == "timed out after 0.2s" and result.result is None
        assert not finished.is_set()  # the thread was still running when the job failed
    finally:
        release.set()
    await anyio.to_thread.run_sync(finished.wait, WAIT)
    job = await queue.get(job_id)
    assert job is not None and job.status is JobStatus.FAILED  # its late result is discarded


@pytest.mark.anyio
async def test_cancelling_a_running_plain_def_task(make_queue: QueueFactory) -> None:
    queue = make_queue()
    started = threading.Event()
    release = threading.Event()

    @queue.task
    def blocking() -> None:
        started.set()
        release.wait(WAIT)

    job_id = await blocking.enqueue()
    try:
        async with running(fast_worker(queue)):
            assert await anyio.to_thread.run_sync(started.wait, WAIT)
            assert await blocking.cancel(job_id, "stop it") is True
            with pytest.raises(JobCancelled, match="stop it"):
                await blocking.wait(job_id, timeout=WAIT)
    finally:
        release.set()


@pytest.mark.anyio
async def test_plain_def_tasks_share_a_bounded_thread_limiter(
    make_queue: QueueFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks_module, "SYNC_TASK_THREADS", 2)
    queue = make_queue()
    lock = threading.Lock()
    meet = threading.Barrier(2, timeout=WAIT)
    active = peak = 0

    @queue.task
    def work(n: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        meet.wait()  # two at a time must be possible ...
        with lock:
            active -= 1
        return n

    ids = [await work.enqueue(n) for n in range(4)]
    await burst(fast_worker(queue, max_concurrent=4))
    assert [await work.wait(i, timeout=WAIT) for i in ids] == [0, 1, 2, 3]
    assert peak == 2  # ... and never more


def test_a_queue_outlives_its_event_loops() -> None:
    """One queue, used by ``anyio.run`` under asyncio and then trio: each loop gets its own
    thread limiter for plain ``def`` tasks."""
    queue = JobQueue()

    @queue.task
    def double(x: int) -> int:
        return 2 * x

    async def main(x: int) -> int:
        job_id = await double.enqueue(x)
        await burst(fast_worker(queue))
        return await double.wait(job_id, timeout=WAIT)

    assert anyio.run(main, 1, backend="asyncio") == 2
    assert anyio.run(main, 2, backend="trio") == 4
    assert anyio.run(main, 3, backend="asyncio") == 6


# -- workers: handlers and tasks together, process_one, burst --------------------------------------


@pytest.mark.anyio
async def test_a_worker_runs_the_queues_tasks_and_its_handlers(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task
    async def task_job(x: int) -> int:
        return x + 1

    worker = fast_worker(queue)

    @worker.handler("plain")
    async def plain(ctx: JobContext) -> dict[str, Any]:
        return {"handled": ctx.data}

    t = await task_job.enqueue(1)
    h = await queue.enqueue("plain", {"n": 1})
    async with running(worker):
        assert await task_job.wait(t, timeout=WAIT) == 2
        with anyio.fail_after(WAIT):
            async for update in Broadcaster(queue).subscribe(h):
                last = update
    assert last.status is JobStatus.COMPLETE and last.results == {"handled": {"n": 1}}


@pytest.mark.anyio
async def test_a_worker_with_job_types_runs_only_those(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task
    async def wanted() -> str:
        return "ran"

    @queue.task
    async def unwanted() -> str:
        return "should not run"

    w = await wanted.enqueue()
    u = await unwanted.enqueue()
    await burst(fast_worker(queue, job_types=[wanted.name]))
    assert await wanted.wait(w, timeout=WAIT) == "ran"
    result = await unwanted.get_result(u)
    assert result is not None and result.status is JobStatus.PENDING


@pytest.mark.anyio
async def test_process_one_runs_one_task_call_at_a_time(make_queue: QueueFactory) -> None:
    queue = make_queue()
    ran: list[int] = []

    @queue.task
    def record(n: int) -> int:
        ran.append(n)
        return n * 10

    first = await record.enqueue(1)
    second = await record.enqueue(2)
    worker = fast_worker(queue)
    with anyio.fail_after(WAIT):
        assert await worker.process_one() is True
        assert ran == [1]
        assert await record.wait(first) == 10
        second_result = await record.get_result(second)
        assert second_result is not None and second_result.status is JobStatus.PENDING
        assert await worker.process_one() is True
        assert await worker.process_one() is False
    assert ran == [1, 2]
    assert await record.wait(second, timeout=WAIT) == 20


@pytest.mark.anyio
async def test_run_burst_runs_every_due_task_call_and_returns(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task
    async def a(n: int) -> int:
        return n

    @queue.task
    def b(n: int) -> int:
        return -n

    ids = [await a.enqueue(n) for n in range(5)] + [await b.enqueue(n) for n in range(5)]
    await burst(fast_worker(queue, max_concurrent=3))
    stats = await queue.stats()
    assert stats.complete == 10 and stats.pending == 0 and stats.processing == 0
    assert [await a.wait(i, timeout=WAIT) for i in ids[:5]] == [0, 1, 2, 3, 4]
    assert [await b.wait(i, timeout=WAIT) for i in ids[5:]] == [0, -1, -2, -3, -4]


# -- direct calls and the blocking twins from threads ----------------------------------------------


@pytest.mark.anyio
async def test_calling_a_task_runs_the_function_here(make_queue: QueueFactory) -> None:
    queue = make_queue()

    @queue.task
    async def add(x: int, y: int) -> int:
        return x + y

    @queue.task
    def mul(x: int, y: int) -> int:
        return x * y

    assert await add(2, 3) == 5
    assert await mul(2, y=3) == 6
    assert await queue.list_jobs() == []


@pytest.mark.anyio
async def test_blocking_twins_work_from_anyio_threads_and_inside_plain_tasks(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()

    @queue.task
    async def leaf(x: int) -> int:
        return x + 100

    @queue.task
    def fan_out(n: int) -> list[str]:
        # a plain def task enqueues follow-up calls from its thread
        return [leaf.enqueue_sync(i) for i in range(n)]

    job_id = await anyio.to_thread.run_sync(lambda: fan_out.enqueue_sync(3))
    async with running(fast_worker(queue, max_concurrent=2)):
        children = await anyio.to_thread.run_sync(lambda: fan_out.wait_sync(job_id, timeout=WAIT))
        assert len(children) == 3
        values = [
            await anyio.to_thread.run_sync(functools.partial(leaf.wait_sync, c, timeout=WAIT))
            for c in children
        ]
    assert values == [100, 101, 102]


@pytest.mark.anyio
async def test_blocking_twins_refuse_the_event_loop_thread_clearly(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()

    @queue.task
    async def noop() -> None:
        pass

    with pytest.raises(RuntimeError, match="blocking twins need"):
        noop.enqueue_sync()
    with pytest.raises(RuntimeError, match="blocking twins need"):
        noop.wait_sync("x")

    outcome: list[BaseException] = []

    def plain_thread() -> None:  # not started by anyio: no way back to the loop
        try:
            noop.enqueue_sync()
        except RuntimeError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=plain_thread)
    thread.start()
    await anyio.to_thread.run_sync(thread.join, WAIT)
    assert len(outcome) == 1 and "blocking twins need" in str(outcome[0])
    assert await queue.list_jobs() == []


@pytest.mark.anyio
async def test_errors_of_the_call_itself_pass_through_the_blocking_twins(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()

    @queue.task
    async def noop(x: int) -> None:
        pass

    def wrong() -> None:
        noop.enqueue_sync("not", "json", {1})  # type: ignore[arg-type, call-arg]

    with pytest.raises(TaskArgumentError):
        await anyio.to_thread.run_sync(wrong)
    with pytest.raises(JobNotFoundError):
        await anyio.to_thread.run_sync(lambda: noop.wait_sync("no-such-job", timeout=WAIT))


# -- the example -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_the_tasks_example_runs(scheme: str, tmp_path: Path) -> None:
    url = "memory://" if scheme == "memory" else f"sqlite:///{tmp_path / 'tasks.db'}"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tasks.py"), url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "charge: {'customer': 'cus_42', 'charged': '19.99 USD'}" in done.stdout
    assert "resize: cat-640.png" in done.stdout
    assert "by name: {'customer': 'cus_7', 'charged': '5.00 EUR'}" in done.stdout
    assert "failed: ValueError: width must be positive, not 0" in done.stdout
    assert ": complete, " in done.stdout


# -- typing ------------------------------------------------------------------------------------------


def _mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


# Slow-ish (a few seconds: mypy checks the package once, then reuses its cache), but part of the
# suite: the typing of tasks is part of their API.
@pytest.mark.timeout(300)
def test_mypy_accepts_correct_task_use(mypy_cache: Path) -> None:
    checked = _mypy(ROOT / "tests" / "typing" / "tasks_ok.py", mypy_cache)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.timeout(300)
def test_mypy_refuses_wrong_argument_types(mypy_cache: Path) -> None:
    path = ROOT / "tests" / "typing" / "tasks_bad.py"
    checked = _mypy(path, mypy_cache)
    assert checked.returncode != 0
    wrong_lines = [
        n for n, line in enumerate(path.read_text().splitlines(), 1) if line.endswith("# wrong")
    ]
    assert len(wrong_lines) == 2
    for n in wrong_lines:
        assert f"tasks_bad.py:{n}: error:" in checked.stdout, checked.stdout
    assert checked.stdout.count("[arg-type]") == len(wrong_lines), checked.stdout
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert len(errors) == len(wrong_lines), checked.stdout
