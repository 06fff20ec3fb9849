"""The cheap paths of metrics and tracing: what they skip must not change what they report.

``JobOutcome`` builds its ``job`` only when read; the metrics tally attempts themselves and
must expose exactly what prometheus-client's own counter and histograms would; the tracing
middleware skips the span machinery when there is nothing to record, but still passes an
incoming trace on to the jobs a handler enqueues.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import anyio
import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jdobb_async_queue import JobContext, JobOutcome, JobQueue, JobStatus, Worker
from jdobb_async_queue._models import OutcomeStatus
from jdobb_async_queue.metrics import BUCKETS, QueueMetrics
from jdobb_async_queue.testing.contract._support import WAIT, finished, running
from jdobb_async_queue.tracing import CONTEXT_KEY, instrument_queue, instrument_worker

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_created"):  # prometheus-client's own; the tallies have none
                found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


async def test_an_outcome_gives_its_job_fields_without_building_the_job(
    make_queue: Any,
) -> None:
    queue: JobQueue = make_queue()
    worker = Worker(queue, poll_interval=0.05)
    seen: list[tuple[JobOutcome, tuple[str, str, int, float | None], bool]] = []

    @worker.on_outcome
    def told(outcome: JobOutcome) -> None:
        cheap = (outcome.job_id, outcome.job_type, outcome.attempt, outcome.queue_wait)
        seen.append((outcome, cheap, "_job" in vars(outcome)))

    @worker.handler("flaky")
    async def flaky(ctx: JobContext) -> None:
        raise ValueError("boom")

    job_id = await queue.enqueue("flaky", max_retries=1, retry_delay=0)
    with anyio.fail_after(WAIT):
        await worker.run(burst=True)

    assert [built for _, _, built in seen] == [False, False]  # nobody read outcome.job
    for outcome, (cheap_id, cheap_type, cheap_attempt, wait), _ in seen:
        job = outcome.job  # built now, from the record as this attempt claimed it
        assert (cheap_id, cheap_type, cheap_attempt) == (job.id, job.job_type, job.attempts)
        assert job.id == job_id and job.status is JobStatus.PROCESSING
        assert job.started_at is not None and wait is not None
        since = max(job.created_at, job.execute_at or job.created_at)
        assert wait == pytest.approx(max((job.started_at - since).total_seconds(), 0), abs=1e-5)
        assert outcome.job is job  # kept once built
    assert [o.attempt for o, _, _ in seen] == [1, 2]


async def test_a_hand_built_outcome_is_the_documented_dataclass() -> None:
    async with JobQueue(backend="memory") as queue:
        job = await queue.get(await queue.enqueue("t", delay=10))
    assert job is not None and job.execute_at is not None
    started = job.model_copy(update={"started_at": job.execute_at + timedelta(seconds=2.5)})

    outcome = JobOutcome(job=started, status="complete", error=None, results={"n": 1}, duration=1.0)
    assert [f.name for f in dataclasses.fields(JobOutcome)] == [
        "job",
        "status",
        "error",
        "results",
        "duration",
    ]
    assert outcome.job is started
    assert (outcome.job_id, outcome.job_type, outcome.attempt) == (job.id, "t", 0)
    assert outcome.queue_wait == pytest.approx(2.5)  # from the due time, not from the enqueue
    assert (
        JobOutcome(job=job, status="lost", error=None, results=None, duration=0).queue_wait is None
    )
    again = dataclasses.replace(outcome, status="failed", error="E")
    assert (again.job, again.status, again.error) == (started, "failed", "E")
    assert again != outcome and dataclasses.replace(again, status="complete", error=None) == outcome
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.job = job  # type: ignore[misc]
    with pytest.raises(TypeError):
        JobOutcome(status="complete", error=None, results=None, duration=0)  # type: ignore[call-arg]


async def test_the_tallies_expose_what_prometheus_client_would() -> None:
    async with JobQueue(backend="memory") as queue:
        job = await queue.get(await queue.enqueue("t"))
    assert job is not None
    metrics = QueueMetrics(queue)
    reference = CollectorRegistry()
    counter = Counter("jdobb_job_attempts", "", ("job_type", "outcome"), registry=reference)
    run = Histogram("jdobb_job_run_seconds", "", ("job_type",), buckets=BUCKETS, registry=reference)
    wait = Histogram(
        "jdobb_job_queue_wait_seconds", "", ("job_type",), buckets=BUCKETS, registry=reference
    )
    # On a bound, between bounds, beyond the last, zero; the waits likewise.
    cases: list[tuple[str, OutcomeStatus, float, float]] = [
        ("a", "complete", 0.001, 0.0),
        ("b", "complete", 0.003, 2.5),
        ("a", "complete", 700.0, 1000.0),
        ("b", "retrying", 0.0, 0.0005),
        ("a", "failed", 5.0, 30.0001),
        ("a", "complete", 0.0, 0.0),
    ]
    for job_type, status, duration, waited in cases:
        claimed = job.model_copy(
            update={"job_type": job_type, "started_at": job.created_at + timedelta(seconds=waited)}
        )
        metrics.observe(JobOutcome(claimed, status, None, None, duration))
        counter.labels(job_type, status).inc()
        run.labels(job_type).observe(duration)
        wait.labels(job_type).observe(waited)
    theirs = _samples(generate_latest(reference).decode())
    ours = {
        key: value
        for key, value in _samples(metrics.exposition().decode()).items()
        if not key[0].startswith(("jdobb_jobs", "jdobb_workers"))  # the gauges: not compared
    }
    assert len(theirs) == 4 + 2 * 2 * (len(BUCKETS) + 3)  # 4 counts; buckets, +Inf, sum, count
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value), key


async def test_without_an_sdk_nothing_is_carried_and_jobs_still_run(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    instrument_queue(queue, tracer_provider=NoOpTracerProvider())
    worker = Worker(queue, poll_interval=0.05)
    instrument_worker(worker, tracer_provider=NoOpTracerProvider())

    @worker.handler("t")
    async def t(ctx: JobContext) -> dict[str, int]:
        return {"ok": 1}

    job_id = await queue.enqueue("t", metadata={"mine": 1})
    job = await queue.get(job_id)
    assert job is not None and job.metadata == {"mine": 1}
    async with running(worker):
        last = await finished(queue, job_id)
    assert last.status is JobStatus.COMPLETE and last.results == {"ok": 1}


async def test_without_an_sdk_an_incoming_trace_flows_on_to_child_jobs(make_queue: Any) -> None:
    # The worker has the API alone; the job came traced from a producer that has the SDK. Its
    # handler's enqueues must carry that trace on, as the API's non-recording span does.
    queue: JobQueue = make_queue()
    noop = NoOpTracerProvider()
    instrument_queue(queue, tracer_provider=noop)
    worker = Worker(queue, poll_interval=0.05)
    instrument_worker(worker, tracer_provider=noop)
    children: list[str] = []

    @worker.handler("parent")
    async def parent(ctx: JobContext) -> None:
        children.append(await queue.enqueue("child"))

    sdk = TracerProvider()
    carrier: dict[str, str] = {}
    with sdk.get_tracer("producer").start_as_current_span("send parent") as sent:
        propagate.inject(carrier)
    job_id = await queue.enqueue("parent", metadata={CONTEXT_KEY: carrier})
    async with running(worker):
        await finished(queue, job_id)
    (child_id,) = children
    child = await queue.get(child_id)
    assert child is not None
    passed = trace.get_current_span(propagate.extract(child.metadata[CONTEXT_KEY]))
    assert passed.get_span_context().trace_id == sent.get_span_context().trace_id
    assert passed.get_span_context().span_id == sent.get_span_context().span_id
    sdk.shutdown()


async def test_an_attempt_taken_away_still_ends_its_span(make_queue: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    queue: JobQueue = make_queue()
    worker = Worker(queue, poll_interval=0.05)
    instrument_worker(worker, tracer_provider=provider)
    started, lost = anyio.Event(), anyio.Event()

    @worker.handler("t")
    async def blocked(ctx: JobContext) -> None:
        started.set()
        await anyio.sleep_forever()

    worker.on_outcome(lambda outcome: lost.set() if outcome.status == "lost" else None)
    job_id = await queue.enqueue("t")
    async with running(worker):
        with anyio.fail_after(WAIT):
            await started.wait()
            assert await queue.cancel(job_id) is True
            await lost.wait()
    (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert span.attributes is not None and span.attributes["messaging.message.id"] == job_id
    assert span.status.status_code is not StatusCode.ERROR  # cancelled, not failed
    provider.shutdown()
