"""Random sequences of queue operations, checked step by step against a reference model.

A Hypothesis ``RuleBasedStateMachine`` enqueues jobs (types, priorities, delays, retries,
dependencies, unique keys), claims them, reports progress, completes, fails, cancels and retries
them, moves a :class:`MockClock` (delays and backoffs fall due, leases run out), reclaims expired
leases and sends late reports with old fences. Every operation runs on the backend and on
:class:`~tests.contract._model.Model`; each return value must match, and after every step each
job's fields and ``stats()`` must too. ``claim()`` must return exactly the job the model picks
(priority, then enqueue order; PENDING, due, every dependency COMPLETE).

Hypothesis' stateful machines are synchronous, so the async API runs in a blocking portal on the
chosen event loop; one test per (event loop, backend).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from jdobb_async_queue import JobQueue
from jdobb_async_queue._errors import UnknownDependencyError
from jdobb_async_queue._records import JobRecord, Lease, Outcome
from jdobb_async_queue.testing import MockClock

from ._model import PROCESSING, Model, ModelJob, UnknownDependency

T = TypeVar("T")

START = 1_700_000_000.0
JOB_TYPES = ["a", "b"]
#: What claim() filters on: None claims any type; an empty list matches no job at all.
CLAIM_FILTERS = [None, None, None, ["a"], ["b"], ["a", "b"], []]
UNIQUE_KEYS = ["k1", "k2"]

#: (examples, steps per example) for each backend: the whole file stays well under 30 s on memory.
#: ``STATE_MACHINE_SCALE=10`` multiplies the examples for a deeper search (e.g. before a release).
BUDGET = {
    "memory": (200, 40),
    "sqlite-file": (40, 30),
    "sqlite-memory": (50, 30),
    "redis": (20, 30),
}
SCALE = float(os.environ.get("STATE_MACHINE_SCALE", "1"))


#: enqueue()'s options, drawn for a job without dependencies.
JOB_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "job_type": st.sampled_from(JOB_TYPES),
    "priority": st.sampled_from(["high", "normal", "low"]),
    "delay": st.sampled_from([0, 0, 1, 3, 5]),
    "max_retries": st.integers(0, 2),
    "retry_delay": st.sampled_from([0.0, 1.0, 2.0]),
    "unique_key": st.none() | st.sampled_from(UNIQUE_KEYS),
}
JOB_SPECS = st.fixed_dictionaries(JOB_OPTIONS)


@dataclass
class Env:
    """What one test hands to its machine: the portal, and how to open a fresh queue."""

    portal: BlockingPortal
    open_queue: Callable[[MockClock], JobQueue]


class QueueMachine(RuleBasedStateMachine):
    """One queue on the backend under test, shadowed by a :class:`Model`."""

    env: ClassVar[Env]

    jobs = Bundle("jobs")
    #: Jobs a claim returned (they may have moved on since: later reports must be refused).
    claimed = Bundle("claimed")
    #: Jobs a step sent to FAILED or CANCELLED (cascades included): what ``retry`` aims at.
    ended = Bundle("ended")

    def __init__(self) -> None:
        super().__init__()
        self.clock = MockClock(START)
        self.model = Model(now=START)
        self._ids = itertools.count()
        self.queue: JobQueue = self.call(self._open)

    async def _open(self) -> JobQueue:
        return self.env.open_queue(self.clock)

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        async def run() -> T:
            return await fn(*args, **kwargs)

        return self.env.portal.call(run)

    def teardown(self) -> None:
        queue = getattr(self, "queue", None)
        if queue is not None:
            self.call(_dispose, queue)

    # -- producing -------------------------------------------------------------------------------

    def _enqueue(self, **options: Any) -> Any:
        options = dict(options)
        job_id = f"j{next(self._ids)}"
        expected = self.model.enqueue(job_id, **options)
        got = self.call(self.queue.enqueue, options.pop("job_type"), job_id=job_id, **options)
        assert got == expected, f"enqueue returned {got!r}, the model expected {expected!r}"
        # A unique key already held returns its holder and stores nothing: no new job.
        return got if got == job_id else multiple()

    @initialize(target=jobs, specs=st.lists(JOB_SPECS, min_size=2, max_size=4))
    def enqueue_first_jobs(self, specs: list[dict[str, Any]]) -> Any:
        """Every example starts with a few jobs (swarm testing may switch ``enqueue`` off)."""
        ids = [self._enqueue(**spec) for spec in specs]
        return multiple(*(i for i in ids if isinstance(i, str)))

    @rule(target=jobs, **JOB_OPTIONS)
    def enqueue(
        self,
        job_type: str,
        priority: str,
        delay: int,
        max_retries: int,
        retry_delay: float,
        unique_key: str | None,
    ) -> Any:
        return self._enqueue(
            job_type=job_type,
            priority=priority,
            delay=delay,
            max_retries=max_retries,
            retry_delay=retry_delay,
            unique_key=unique_key,
        )

    @rule(
        target=jobs,
        depends_on=st.lists(jobs, min_size=1, max_size=3, unique=True),
        job_type=st.sampled_from(JOB_TYPES),
        priority=st.sampled_from(["high", "normal", "low"]),
        delay=st.sampled_from([0, 0, 2]),
        unique_key=st.none() | st.sampled_from(UNIQUE_KEYS),
    )
    def enqueue_after(
        self,
        depends_on: list[str],
        job_type: str,
        priority: str,
        delay: int,
        unique_key: str | None,
    ) -> Any:
        return self._enqueue(
            job_type=job_type,
            priority=priority,
            delay=delay,
            depends_on=depends_on,
            unique_key=unique_key,
        )

    @rule(depends_on=st.lists(jobs, max_size=2, unique=True))
    def enqueue_after_unknown_job(self, depends_on: list[str]) -> None:
        job_id = f"j{next(self._ids)}"
        deps = [*depends_on, f"ghost-{job_id}"]
        with pytest.raises(UnknownDependency):
            self.model.enqueue(job_id, "a", depends_on=deps)
        with pytest.raises(UnknownDependencyError):
            self.call(self.queue.enqueue, "a", job_id=job_id, depends_on=deps)

    # -- consuming -------------------------------------------------------------------------------

    @rule(
        target=claimed,
        job_types=st.sampled_from(CLAIM_FILTERS),
        lease=st.sampled_from([5.0, 30.0]),
    )
    def claim(self, job_types: list[str] | None, lease: float) -> Any:
        expected = self.model.claim(job_types, lease)
        job = self.call(self.queue.claim, job_types, lease=lease)
        got = None if job is None else job.id
        assert got == expected, (
            f"claim({job_types}) returned {got!r}, the model expected {expected!r}\n"
            + self.describe()
        )
        return multiple() if got is None else got

    @rule(
        job=claimed,
        progress=st.none() | st.floats(0.0, 1.0),
        message=st.none() | st.sampled_from(["half", "nearly"]),
    )
    def update(self, job: str, progress: float | None, message: str | None) -> None:
        expected = self.model.update(job, progress, message)
        got = self.call(self.queue.update, job, progress, message)
        assert got == expected, f"update({job}) returned {got}, the model expected {expected}"

    @rule(
        job=claimed,
        results=st.none() | st.fixed_dictionaries({"n": st.integers(0, 9)}),
        fence_age=st.none() | st.integers(0, 2),
    )
    def complete(self, job: str, results: dict[str, Any] | None, fence_age: int | None) -> None:
        """``fence_age`` None: the public ``complete`` (whoever holds the job); 0: a worker's
        report with the current claim's fence; 1+: a late report from an older claim."""
        if fence_age is None:
            expected = self.model.complete(job, results)
            got = self.call(self.queue.complete, job, results)
        else:
            fence = self._fence(job, fence_age)
            expected = self.model.complete(job, results, fence=fence)
            outcome = Outcome(job_id=job, kind="complete", results=results, fence=fence)
            got = self.call(self.queue.backend.finish, outcome, now=self.clock())
        assert got == expected, (
            f"complete({job}, fence_age={fence_age}) returned {got}, the model expected "
            f"{expected}"
        )

    @rule(target=ended, job=claimed, retry=st.booleans())
    def fail(self, job: str, retry: bool) -> Any:
        before = self._broken()
        error = f"boom {job}"
        expected = self.model.fail(job, error, retry)
        got = self.call(self.queue.fail, job, error, retry=retry)
        assert got == bool(expected), f"fail({job}) returned {got}, the model expected {expected}"
        if isinstance(expected, tuple):  # retried later: the backoff must lie in its window
            self._adopt_backoff(job, expected)
        return multiple(*sorted(self._broken() - before))

    def _broken(self) -> set[str]:
        return {j.id for j in self.model.jobs.values() if j.status in ("failed", "cancelled")}

    def _adopt_backoff(self, job: str, window: tuple[float, float]) -> None:
        record = self.call(self.queue.backend.get, job, now=self.clock())
        assert record is not None
        assert record.status == "pending", f"{job} is {record.status} after a retried fail"
        earliest, latest = window
        due = record.execute_at
        assert due is not None, f"{job} retried at once, not after its backoff"
        assert earliest <= due <= latest + 1e-6, (
            f"{job} retried at {due}, outside its backoff window [{earliest}, {latest}]"
        )
        self.model.adopt_execute_at(job, due)

    @rule(target=ended, job=jobs, reason=st.none() | st.just("stop"))
    def cancel(self, job: str, reason: str | None) -> Any:
        before = self._broken()
        expected = self.model.cancel(job, reason)
        got = self.call(self.queue.cancel, job, reason)
        assert got == expected, f"cancel({job}) returned {got}, the model expected {expected}"
        return multiple(*sorted(self._broken() - before))

    @rule(job=ended | jobs, delay=st.sampled_from([0, 0, 2]))
    def retry(self, job: str, delay: int) -> None:
        expected = self.model.retry(job, delay)
        got = self.call(self.queue.retry, job, delay=delay)
        assert got == expected, f"retry({job}) returned {got}, the model expected {expected}"

    # -- time, leases and fences -------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1, 2, 3, 5, 10, 30, 60]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.model.advance(seconds)

    @rule()
    def reclaim_expired_leases(self) -> None:
        expected = self.model.reclaim_expired()
        got = self.call(self.queue.backend.reclaim_expired, now=self.clock())
        assert sorted(got) == sorted(expected), (
            f"reclaim_expired returned {sorted(got)}, the model expected {sorted(expected)}"
        )

    def _fence(self, job: str, fence_age: int) -> int:
        """The fence of the job's current claim (age 0) or of an older one."""
        return self.model.jobs[job].fence - fence_age

    @rule(job=claimed, fence_age=st.integers(0, 1))
    def release_with_fence(self, job: str, fence_age: int) -> None:
        fence = self._fence(job, fence_age)
        expected = self.model.release(job, fence)
        outcome = Outcome(job_id=job, kind="release", fence=fence)
        got = self.call(self.queue.backend.finish, outcome, now=self.clock())
        assert got == expected, (
            f"finish(release, fence={fence}) of {job} returned {got}, the model expected "
            f"{expected}"
        )

    @rule(job=claimed, fence_age=st.integers(0, 1), duration=st.sampled_from([5.0, 30.0]))
    def renew_lease(self, job: str, fence_age: int, duration: float) -> None:
        fence = self._fence(job, fence_age)
        expected = self.model.renew(job, fence, duration)
        lease = Lease(job_id=job, fence=fence)
        got = self.call(self.queue.backend.renew, lease, duration=duration, now=self.clock())
        assert got == expected, (
            f"renew(fence={fence}) of {job} returned {got}, the model expected {expected}"
        )

    # -- after every step --------------------------------------------------------------------------

    @invariant()
    def backend_agrees_with_model(self) -> None:
        records, stats = self.call(self._snapshot)
        problems: list[str] = []
        for job_id, job in self.model.jobs.items():
            problems += [f"{job_id}: {p}" for p in self._differences(job, records[job_id])]
        expected_stats = self.model.stats()
        got_stats = stats.model_dump()
        if got_stats != expected_stats:
            problems.append(f"stats(): backend {got_stats}, model {expected_stats}")
        assert not problems, "backend and model disagree:\n  " + "\n  ".join(problems) + (
            "\n" + self.describe()
        )

    async def _snapshot(self) -> tuple[dict[str, JobRecord | None], Any]:
        now = self.clock()
        backend = self.queue.backend
        records = {job_id: await backend.get(job_id, now=now) for job_id in self.model.jobs}
        return records, await backend.stats(now=now)

    def _differences(self, job: ModelJob, record: JobRecord | None) -> list[str]:
        if record is None:
            return ["missing from the backend"]
        pending = job.status == "pending"
        expected: dict[str, Any] = {
            "status": job.status,
            "attempts": job.attempts,
            "fence": job.fence,
            "progress": job.progress,
            "message": job.message,
            "results": job.results,
            "started_at": job.started_at,
            "completed_at": job.completed_at,
            "lease_expires_at": job.lease_expires_at,
            "holds a worker_id": job.status == PROCESSING,
            "job_type": job.job_type,
            "priority": job.priority,
            "depends_on": list(job.depends_on),
            "unique_key": job.unique_key,
        }
        got: dict[str, Any] = {
            name: getattr(record, name, None) for name in expected if " " not in name
        }
        got["holds a worker_id"] = record.worker_id is not None
        if pending:  # due time and dependency count only matter while PENDING
            expected["execute_at"] = job.execute_at
            expected["pending_deps"] = self.model.pending_deps(job)
            got["execute_at"] = record.execute_at
            got["pending_deps"] = record.pending_deps
        problems = [
            f"{name}: backend {got[name]!r}, model {want!r}"
            for name, want in expected.items()
            if got[name] != want
        ]
        if record.error not in job.errors:
            problems.append(f"error: backend {record.error!r}, model one of {set(job.errors)}")
        return problems

    def describe(self) -> str:
        lines = [f"model at t={self.model.now - START:+g}s:"]
        lines += [f"  {job.summary()}" for job in self.model.jobs.values()]
        return "\n".join(lines)


async def _dispose(queue: JobQueue) -> None:
    try:
        drop = getattr(queue.backend, "drop_namespace", None)
        if drop is not None:
            await drop()
    finally:
        await queue.close()


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_queue_follows_the_model(
    loop: str, backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if backend_name == "redis" else None
    files = itertools.count()

    def open_queue(clock: MockClock) -> JobQueue:
        if backend_name == "memory":
            return JobQueue(backend="memory", clock=clock)
        if backend_name == "sqlite-file":
            url = f"sqlite:///{tmp_path}/sm-{next(files)}.db"
            return JobQueue(backend="sqlite", url=url, clock=clock)
        if backend_name == "sqlite-memory":
            return JobQueue(backend="sqlite", url="sqlite:///:memory:", clock=clock)
        namespace = f"sm-{uuid.uuid4().hex[:12]}"
        return JobQueue(backend="redis", url=redis_url, namespace=namespace, clock=clock)

    examples, steps = BUDGET[backend_name]
    examples = max(1, round(examples * SCALE))
    with start_blocking_portal(backend=loop) as portal:
        machine = type(
            f"QueueMachine_{backend_name.replace('-', '_')}_{loop}",
            (QueueMachine,),
            {"env": Env(portal=portal, open_queue=open_queue)},
        )
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
