"""Workflows: steps with ids known up front, submitted atomically."""

from __future__ import annotations

import pytest

from jdobb_async_queue import (
    DuplicateJobError,
    InvalidJobError,
    JobPriority,
    JobQueue,
    JobStatus,
    QueueStats,
    SerializationError,
    Workflow,
)

from ._support import EMPTY

pytestmark = pytest.mark.anyio


async def test_submit_stores_every_step_and_returns_ids_in_order(queue: JobQueue) -> None:
    wf = Workflow("nightly")
    fetch = wf.add("fetch", {"url": "http://example.com"})
    parse = wf.add("parse", depends_on=[fetch])
    report = wf.add("report", {"fmt": "pdf"}, depends_on=[parse], priority=JobPriority.HIGH)
    ids_before = [fetch.job_id, parse.job_id, report.job_id]
    assert all(isinstance(i, str) and i for i in ids_before)
    assert len(set(ids_before)) == 3
    assert wf.steps == [fetch, parse, report]

    ids = await wf.submit(queue)
    assert ids == ids_before
    assert await queue.stats() == QueueStats(pending=3, waiting=2)

    job = await queue.get(report.job_id)
    assert job is not None
    assert job.job_type == "report"
    assert job.data == {"fmt": "pdf"}
    assert job.priority is JobPriority.HIGH
    assert job.depends_on == [parse.job_id]


async def test_every_step_carries_the_workflow_name(queue: JobQueue) -> None:
    wf = Workflow("etl")
    a = wf.add("a", metadata={"owner": "me"})
    b = wf.add("b", depends_on=[a])
    await wf.submit(queue)
    job_a = await queue.get(a.job_id)
    job_b = await queue.get(b.job_id)
    assert job_a is not None
    assert job_b is not None
    assert job_a.metadata == {"owner": "me", "workflow": "etl"}
    assert job_b.metadata["workflow"] == "etl"


async def test_steps_run_in_dependency_order(queue: JobQueue) -> None:
    wf = Workflow("chain")
    first = wf.add("t")
    second = wf.add("t", depends_on=[first])
    await wf.submit(queue)
    job = await queue.claim()
    assert job is not None
    assert job.id == first.job_id
    assert await queue.claim() is None
    await queue.complete(first.job_id)
    job = await queue.claim()
    assert job is not None
    assert job.id == second.job_id


async def test_failing_a_step_cancels_the_steps_after_it(queue: JobQueue) -> None:
    wf = Workflow("chain")
    first = wf.add("t")
    second = wf.add("t", depends_on=[first])
    third = wf.add("t", depends_on=[second])
    await wf.submit(queue)
    await queue.claim()
    await queue.fail(first.job_id, "boom")
    for step in (second, third):
        job = await queue.get(step.job_id)
        assert job is not None
        assert job.status is JobStatus.CANCELLED


async def test_step_with_custom_job_id(queue: JobQueue) -> None:
    wf = Workflow("named")
    step = wf.add("t", job_id="step-1")
    assert step.job_id == "step-1"
    assert await wf.submit(queue) == ["step-1"]
    assert await queue.get("step-1") is not None


async def test_bad_step_data_stores_nothing(queue: JobQueue) -> None:
    wf = Workflow("bad")
    wf.add("ok", {"x": 1})
    wf.add("bad", {"x": {1, 2}})
    with pytest.raises(SerializationError):
        await wf.submit(queue)
    assert await queue.stats() == EMPTY


async def test_step_with_a_taken_id_stores_nothing(queue: JobQueue) -> None:
    await queue.enqueue("t", job_id="taken")
    wf = Workflow("clash")
    first = wf.add("t")
    wf.add("t", job_id="taken", depends_on=[first])
    with pytest.raises(DuplicateJobError):
        await wf.submit(queue)
    assert await queue.get(first.job_id) is None
    assert await queue.stats() == QueueStats(pending=1)


async def test_dependency_on_another_workflows_step_is_refused(queue: JobQueue) -> None:
    other = Workflow("other")
    foreign = other.add("t")
    wf = Workflow("mine")
    with pytest.raises(InvalidJobError):
        wf.add("t", depends_on=[foreign])
    assert wf.steps == []


@pytest.mark.parametrize("dep", ["some-job-id", None, 3])
async def test_dependency_on_a_non_step_is_refused(queue: JobQueue, dep: object) -> None:
    wf = Workflow("mine")
    with pytest.raises(InvalidJobError):
        wf.add("t", depends_on=[dep])  # type: ignore[list-item]
    assert wf.steps == []


async def test_unknown_step_option_is_refused() -> None:
    wf = Workflow("mine")
    with pytest.raises(InvalidJobError):
        wf.add("t", colour="blue")


async def test_workflow_needs_a_name() -> None:
    with pytest.raises(InvalidJobError):
        Workflow("")


async def test_submit_twice_is_refused(queue: JobQueue) -> None:
    wf = Workflow("once")
    wf.add("t")
    await wf.submit(queue)
    with pytest.raises(InvalidJobError):
        await wf.submit(queue)
    assert await queue.stats() == QueueStats(pending=1)
