"""Random sequences of queue operations, checked step by step against a reference model.

A Hypothesis ``RuleBasedStateMachine`` enqueues jobs (types, priorities, delays, retries,
dependencies, unique keys, unknown dependencies), claims them (with type filters and leases),
reports progress, completes, fails, cancels and retries them, moves a :class:`MockClock` (by
whole seconds, or exactly onto the next lease expiry or due time), reclaims expired leases,
renews leases and hands jobs back, and sends worker reports with current and old fences.

Every operation runs on the backend and on :class:`._model.Model`, and each
return value must match: ``claim()`` must return exactly the job the model picks (PENDING, due,
every dependency COMPLETE; then priority, then enqueue order). After every step each job's
fields, ``stats()``, ``next_due()`` and the order of ``list_jobs("pending")`` must match too;
a failure prints the differences and the model's view of every job.

Hypothesis' stateful machines are synchronous, so the machine runs in a worker thread and each
call goes back to the test's event loop (``anyio.from_thread.run``): one test per (event loop,
backend), on the ``queue_backend`` the test was given. Each example starts on an emptied store
(live jobs cancelled, then every finished job purged, through the contract itself).
``test_known_sequence`` replays short sequences that once broke a backend.
``STATE_MACHINE_SCALE=10`` runs ten times the examples.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from jdobb_async_queue import JobQueue
from jdobb_async_queue.backends import (
    JobRecord,
    Lease,
    Outcome,
    ProgressUpdate,
    QueueBackend,
    UnknownDependencyError,
)
from jdobb_async_queue.testing import MockClock

from ._model import PROCESSING, RANK, Model, ModelJob, UnknownDependency

T = TypeVar("T")

START = 1_700_000_000.0
JOB_TYPES = ["a", "b"]
#: What claim() filters on: None claims any type; an empty list matches no job at all.
CLAIM_FILTERS = [None, None, None, None, ["a"], ["b"], ["a", "b"], []]
UNIQUE_KEYS = ["k1", "k2"]

#: (examples, steps per example) by ``QueueBackend.name``: memory, both loops, takes about 15 s.
#: ``STATE_MACHINE_SCALE=10`` multiplies the examples for a deeper search (e.g. before a release).
BUDGET = {
    "memory": (300, 40),
    "sqlite": (25, 30),
    "redis": (20, 30),
    "postgres": (20, 30),
}
#: The budget of a backend not listed above (yours).
DEFAULT_BUDGET = (25, 30)
SCALE = float(os.environ.get("STATE_MACHINE_SCALE", "1"))


#: enqueue()'s options besides ``depends_on``.
JOB_OPTIONS: dict[str, Any] = {
    "job_type": st.sampled_from(JOB_TYPES),
    "priority": st.sampled_from(["high", "normal", "low"]),
    "delay": st.sampled_from([0, 0, 0, 1, 3]),
    "max_retries": st.sampled_from([0, 1, 2]),
    "retry_delay": st.sampled_from([0.0, 1.0, 2.0]),
    "unique_key": st.none() | st.sampled_from(UNIQUE_KEYS),
}
JOB_SPECS = st.fixed_dictionaries(JOB_OPTIONS)


@dataclass
class Env:
    """What one test hands to its machine: how to open a queue on the emptied store."""

    open_queue: Callable[[MockClock], Awaitable[JobQueue]]


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
        return await self.env.open_queue(self.clock)

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        async def run() -> T:
            return await fn(*args, **kwargs)

        return anyio.from_thread.run(run)

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

    @rule(
        target=jobs,
        depends_on=st.just([]) | st.lists(jobs, min_size=1, max_size=3, unique=True),
        **JOB_OPTIONS,
    )
    def enqueue(self, depends_on: list[str], **options: Any) -> Any:
        return self._enqueue(depends_on=depends_on, **options)

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
        if job is None:
            return multiple()
        mine = self.model.jobs[job.id]
        assert (job.status.value, job.attempts) == (PROCESSING, mine.attempts), (
            f"claim returned {job.id} as {job.status.value} with {job.attempts} attempts"
        )
        return job.id

    @rule(
        target=ended,
        job_types=st.sampled_from(CLAIM_FILTERS),
        report=st.sampled_from(["complete", "fail", "fail for good"]),
    )
    def claim_and_report(self, job_types: list[str] | None, report: str) -> Any:
        """What a worker does: claim a job and report how it went, in one step."""
        job = self.claim(job_types, lease=30.0)
        if not isinstance(job, str):
            return multiple()
        if report == "complete":
            self.complete(job, {"n": 1}, fence_age=0)
            return multiple()
        return self.fail(job, retry=report == "fail")

    @rule(
        job=claimed,
        progress=st.none() | st.floats(0.0, 1.0),
        message=st.none() | st.sampled_from(["half", "nearly"]),
        fence_age=st.none() | st.integers(0, 1),
    )
    def update(
        self, job: str, progress: float | None, message: str | None, fence_age: int | None
    ) -> None:
        """``fence_age`` None: the public ``update``; else a worker's fenced report."""
        if fence_age is None:
            expected = self.model.update(job, progress, message)
            got = self.call(self.queue.update, job, progress, message)
        else:
            fence = self._fence(job, fence_age)
            expected = self.model.update(job, progress, message, fence=fence)
            report = ProgressUpdate(job_id=job, progress=progress, message=message, fence=fence)
            got = self.call(self.queue.backend.update_progress, report, now=self.clock())
        assert got == expected, (
            f"update({job}, fence_age={fence_age}) returned {got}, the model expected {expected}"
        )

    @rule(
        job=consumes(claimed),
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
            f"complete({job}, fence_age={fence_age}) returned {got}, the model expected {expected}"
        )

    @rule(target=ended, job=consumes(claimed), retry=st.booleans())
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

    @rule(job=ended, delay=st.sampled_from([0, 0, 2]))
    def retry(self, job: str, delay: int) -> None:
        """Retry a job that ended FAILED or CANCELLED (it may have moved on since)."""
        expected = self.model.retry(job, delay)
        got = self.call(self.queue.retry, job, delay=delay)
        assert got == expected, f"retry({job}) returned {got}, the model expected {expected}"

    @rule(job=jobs, delay=st.sampled_from([0, 2]))
    def retry_any_job(self, job: str, delay: int) -> None:
        """Any job: refused unless FAILED or CANCELLED (also reaches jobs cancelled on enqueue)."""
        self.retry(job, delay)

    # -- time, leases and fences -------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1, 2, 3, 5, 10, 30, 60]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.model.advance(seconds)

    @rule()
    def advance_clock_to_next_deadline(self) -> None:
        """Step exactly onto the next lease expiry or due time (the boundaries)."""
        moment = self.model.next_deadline()
        if moment is not None:
            self.clock.set(moment)
            self.model.set_time(moment)

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

    @rule(job=consumes(claimed), fence_age=st.none() | st.integers(0, 1))
    def release(self, job: str, fence_age: int | None) -> None:
        """A worker hands the job back (stopping): PENDING, due at once, attempt not counted."""
        fence = None if fence_age is None else self._fence(job, fence_age)
        expected = self.model.release(job, fence)
        outcome = Outcome(job_id=job, kind="release", fence=fence)
        got = self.call(self.queue.backend.finish, outcome, now=self.clock())
        assert got == expected, (
            f"finish(release, fence={fence}) of {job} returned {got}, the model expected {expected}"
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
        records, stats, next_due, pending = self.call(self._snapshot)
        problems: list[str] = []
        for job_id, job in self.model.jobs.items():
            problems += [f"{job_id}: {p}" for p in self._differences(job, records[job_id])]
        expected_stats = self.model.stats()
        got_stats = stats.model_dump()
        if got_stats != expected_stats:
            problems.append(f"stats(): backend {got_stats}, model {expected_stats}")
        if next_due != self.model.next_due():
            problems.append(f"next_due(): backend {next_due}, model {self.model.next_due()}")
        problems += self._listing_problems(pending)
        assert not problems, (
            "backend and model disagree:\n  " + "\n  ".join(problems) + ("\n" + self.describe())
        )

    async def _snapshot(self) -> tuple[dict[str, JobRecord | None], Any, Any, list[JobRecord]]:
        now = self.clock()
        backend = self.queue.backend
        records = {job_id: await backend.get(job_id, now=now) for job_id in self.model.jobs}
        stats = await backend.stats(now=now)
        next_due = await backend.next_due(None, now=now)
        pending = await backend.list_jobs(
            "pending", job_type=None, limit=len(self.model.jobs) + 1, offset=0, now=now
        )
        return records, stats, next_due, pending

    def _listing_problems(self, listed: list[JobRecord]) -> list[str]:
        """``list_jobs("pending")``: claimable jobs in claim order, then scheduled ones by due
        time, then those waiting on dependencies (in any order)."""
        ids = [r.id for r in listed]
        jobs = self.model.jobs
        pending = sorted(j.id for j in jobs.values() if j.status == "pending")
        if sorted(ids) != pending:
            return [f"list_jobs('pending'): backend {ids}, model (any order) {pending}"]
        groups = [self.model.group(jobs[i]) for i in ids]
        claimable = [jobs[i] for i in ids if self.model.group(jobs[i]) == 0]
        dues = [r.execute_at or 0.0 for r in listed if self.model.group(jobs[r.id]) == 1]
        if (
            groups != sorted(groups)
            or claimable != sorted(claimable, key=lambda j: (RANK[j.priority], j.seq))
            or dues != sorted(dues)
        ):
            return [f"list_jobs('pending') out of order: {ids} (groups {groups})"]
        return []

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


async def _empty(backend: QueueBackend, now: float) -> None:
    """Leave no job in the store: cancel the live ones, then purge every finished one."""
    for status in ("pending", "processing"):
        while live := await backend.list_jobs(status, job_type=None, limit=500, offset=0, now=now):
            for record in live:
                await backend.cancel(record.id, None, now=now)
    await backend.purge(["cancelled", "complete", "failed"], before=None, job_type=None, now=now)


def machine_for(backend: QueueBackend) -> type[QueueMachine]:
    """A :class:`QueueMachine` class whose every instance opens a queue on ``backend``, emptied
    first, with a clock of its own."""

    async def open_queue(clock: MockClock) -> JobQueue:
        await _empty(backend, clock())
        return JobQueue(backend=backend, clock=clock)

    name = f"QueueMachine_{backend.name}"
    return type(name, (QueueMachine,), {"env": Env(open_queue=open_queue)})


async def test_queue_follows_the_model(queue_backend: QueueBackend) -> None:
    examples, steps = BUDGET.get(queue_backend.name, DEFAULT_BUDGET)
    examples = max(1, round(examples * SCALE))
    run = partial(
        run_state_machine_as_test,
        machine_for(queue_backend),
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    await anyio.to_thread.run_sync(run)


# -- sequences that once broke a backend, replayed on every backend ----------------------------

#: A plain job: ``enqueue`` options (ids come out as j0, j1, ... in enqueue order).
PLAIN: dict[str, Any] = {
    "job_type": "a",
    "priority": "normal",
    "delay": 0,
    "max_retries": 0,
    "retry_delay": 0.0,
    "unique_key": None,
}
Step = tuple[str, dict[str, Any]]

SEQUENCES: dict[str, list[Step]] = {
    # A cancelled dependent, retried, kept its old reverse edges: the first dependency to
    # complete then counted twice and the job became claimable while j1 was still pending.
    "a retried dependent waits for every dependency": [
        ("enqueue", {**PLAIN, "depends_on": []}),
        ("enqueue", {**PLAIN, "depends_on": []}),
        ("enqueue", {**PLAIN, "job_type": "b", "depends_on": ["j0", "j1"]}),
        ("cancel", {"job": "j2", "reason": None}),
        ("retry", {"job": "j2", "delay": 0}),
        ("claim_and_report", {"job_types": ["a"], "report": "complete"}),
        ("claim", {"job_types": ["b"], "lease": 30.0}),
    ],
    # The same through a job cancelled on enqueue (j1 cancelled) and then retried.
    "a job cancelled on enqueue, retried, waits for every dependency": [
        ("enqueue", {**PLAIN, "depends_on": []}),
        ("enqueue", {**PLAIN, "depends_on": []}),
        ("cancel", {"job": "j1", "reason": "stop"}),
        ("enqueue", {**PLAIN, "job_type": "b", "depends_on": ["j0", "j1"]}),
        ("retry", {"job": "j2", "delay": 0}),
        ("claim_and_report", {"job_types": None, "report": "complete"}),
        ("claim", {"job_types": None, "lease": 30.0}),
    ],
    "an empty job type filter claims nothing": [
        ("enqueue", {**PLAIN, "depends_on": []}),
        ("claim", {"job_types": [], "lease": 30.0}),
    ],
    "a completed job carries no error from an earlier attempt": [
        ("enqueue", {**PLAIN, "max_retries": 1, "depends_on": []}),
        ("claim_and_report", {"job_types": None, "report": "fail"}),
        ("claim_and_report", {"job_types": None, "report": "complete"}),
    ],
    "a lease expires after its last second, not on it": [
        ("enqueue", {**PLAIN, "depends_on": []}),
        ("claim", {"job_types": None, "lease": 5.0}),
        ("advance_clock", {"seconds": 5}),
        ("reclaim_expired_leases", {}),
        ("advance_clock", {"seconds": 1}),
        ("reclaim_expired_leases", {}),
        ("claim", {"job_types": None, "lease": 5.0}),
    ],
    "a delayed job is due on its due time": [
        ("enqueue", {**PLAIN, "delay": 3, "depends_on": []}),
        ("advance_clock", {"seconds": 2}),
        ("claim", {"job_types": None, "lease": 5.0}),
        ("advance_clock_to_next_deadline", {}),
        ("claim", {"job_types": None, "lease": 5.0}),
    ],
}


@pytest.mark.parametrize("sequence", list(SEQUENCES))
async def test_known_sequence(sequence: str, queue_backend: QueueBackend) -> None:
    def replay() -> None:
        machine = machine_for(queue_backend)()
        try:
            machine.backend_agrees_with_model()
            for name, arguments in SEQUENCES[sequence]:
                getattr(machine, name)(**arguments)
                machine.backend_agrees_with_model()
        finally:
            machine.teardown()

    await anyio.to_thread.run_sync(replay)
