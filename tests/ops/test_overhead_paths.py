"""What the cheap paths of issue 14 skip, and what they must still do.

The worker's middleware chain (built of partials), the metrics' batched tallies (folded every
``FOLD_AT`` attempts and at each scrape, appended to without a lock), the tracing middleware's
skip when no SDK is set (yet a provider set later is used from the next attempt), the CLI's log
line without the outcome's ``job``, and a worker without the extras installed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, NoOpTracerProvider, Span
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jdobb_async_queue import JobContext, JobOutcome, JobQueue, JobStatus, Worker
from jdobb_async_queue._cli.serve import log_outcomes
from jdobb_async_queue._models import OutcomeStatus, claimed_outcome
from jdobb_async_queue._records import JobRecord, to_job
from jdobb_async_queue.metrics import BUCKETS, QueueMetrics
from jdobb_async_queue.testing.contract._support import WAIT, finished, running
from jdobb_async_queue.tracing import CONTEXT_KEY, instrument_queue, instrument_worker

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_created") and not s.name.startswith(("jdobb_jobs", "jdobb_w")):
                found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def _outcome(job_type: str, status: OutcomeStatus, duration: float, waited: float) -> JobOutcome:
    record = JobRecord(
        id="0" * 32, job_type=job_type, created_at=100.0, started_at=100.0 + waited, attempts=1
    )
    return claimed_outcome(record, to_job, status, None, None, duration)


# -- the middleware chain --------------------------------------------------------------------


async def test_middleware_run_outermost_first_around_the_handler(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    worker = Worker(queue, poll_interval=0.05)
    calls: list[str] = []

    @worker.middleware
    async def outer(ctx: JobContext, call_next: Any) -> Any:
        calls.append(f"outer {ctx.job_type}")
        results = await call_next()
        calls.append("outer done")
        return {**results, "outer": True}

    @worker.middleware
    async def inner(ctx: JobContext, call_next: Any) -> Any:
        calls.append("inner")
        if ctx.data.get("refuse"):
            raise PermissionError("refused")
        return await call_next()

    @worker.handler("t")
    async def handler(ctx: JobContext) -> dict[str, bool]:
        calls.append("handler")
        return {"handler": True}

    ok = await queue.enqueue("t")
    refused = await queue.enqueue("t", {"refuse": True})
    async with running(worker):
        done, failed = await finished(queue, ok), await finished(queue, refused)
    assert done.status is JobStatus.COMPLETE and done.results == {"handler": True, "outer": True}
    assert failed.status is JobStatus.FAILED and "PermissionError: refused" in (failed.error or "")
    # Each attempt: outer, inner, the handler (not for the refused one), back out.
    assert calls.count("handler") == 1 and calls.count("outer t") == 2
    first = calls.index("outer t")
    assert calls[first : first + 2] == ["outer t", "inner"]


# -- metrics: batched tallies ----------------------------------------------------------------


def _reference(cases: list[tuple[str, OutcomeStatus, float, float]]) -> Samples:
    registry = CollectorRegistry()
    counter = Counter("jdobb_job_attempts", "", ("job_type", "outcome"), registry=registry)
    run = Histogram("jdobb_job_run_seconds", "", ("job_type",), buckets=BUCKETS, registry=registry)
    wait = Histogram(
        "jdobb_job_queue_wait_seconds", "", ("job_type",), buckets=BUCKETS, registry=registry
    )
    for job_type, status, duration, waited in cases:
        counter.labels(job_type, status).inc()
        run.labels(job_type).observe(duration)
        wait.labels(job_type).observe(waited)
    return _samples(generate_latest(registry).decode())


async def test_folds_between_scrapes_lose_and_double_count_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("jdobb_async_queue.metrics.FOLD_AT", 4)  # many folds, some partial
    metrics = QueueMetrics(JobQueue(backend="memory"))
    cases: list[tuple[str, OutcomeStatus, float, float]] = [
        (("a", "b")[i % 2], ("complete", "failed", "retrying")[i % 3], 0.0004 * i, 0.7 * i)
        for i in range(23)
    ]
    for i, case in enumerate(cases):
        metrics.observe(_outcome(*case))
        if i in (2, 9, 15):  # a scrape folds what is there, and the next fold goes on from it
            assert _samples(metrics.exposition().decode()) == pytest.approx(
                _reference(cases[: i + 1])
            )
    ours, theirs = _samples(metrics.exposition().decode()), _reference(cases)
    assert ours.keys() == theirs.keys()
    assert ours == pytest.approx(theirs)
    again = _samples(metrics.exposition().decode())  # a scrape changes nothing
    assert ours == pytest.approx(again)


async def test_observing_from_threads_while_scraping_counts_every_attempt() -> None:
    metrics = QueueMetrics(JobQueue(backend="memory"))
    outcome = _outcome("t", "complete", 0.002, 0.02)
    threads, each = 4, 5000
    stop = threading.Event()

    def observe() -> None:
        for _ in range(each):
            metrics.observe(outcome)

    def scrape() -> None:
        while not stop.is_set():
            metrics.exposition()

    scraper = threading.Thread(target=scrape)
    workers = [threading.Thread(target=observe) for _ in range(threads)]
    scraper.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join(WAIT * 4)
    stop.set()
    scraper.join(WAIT)
    got = _samples(metrics.exposition().decode())
    total = float(threads * each)
    assert got[("jdobb_job_attempts_total", (("job_type", "t"), ("outcome", "complete")))] == total
    assert got[("jdobb_job_run_seconds_count", (("job_type", "t"),))] == total
    assert got[("jdobb_job_run_seconds_bucket", (("job_type", "t"), ("le", "0.005")))] == total
    assert got[("jdobb_job_queue_wait_seconds_bucket", (("job_type", "t"), ("le", "0.01")))] == 0
    assert got[("jdobb_job_run_seconds_sum", (("job_type", "t"),))] == pytest.approx(total * 0.002)


# -- tracing without an SDK ------------------------------------------------------------------


class _CountingNoOpTracer(NoOpTracer):
    def __init__(self) -> None:
        self.spans = 0

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        self.spans += 1
        return super().start_span(*args, **kwargs)


class _CountingNoOpProvider(NoOpTracerProvider):
    def __init__(self) -> None:
        self.tracer = _CountingNoOpTracer()

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self.tracer


async def test_without_an_sdk_only_traced_jobs_reach_the_tracer(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    producer, consumer = _CountingNoOpProvider(), _CountingNoOpProvider()
    instrument_queue(queue, tracer_provider=producer)
    worker = Worker(queue, poll_interval=0.05)
    instrument_worker(worker, tracer_provider=consumer)
    children: list[str] = []

    @worker.handler("t")
    async def t(ctx: JobContext) -> None:
        if ctx.data.get("spawn"):
            children.append(await queue.enqueue("t"))

    plain = [await queue.enqueue("t") for _ in range(3)]
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    traced = await queue.enqueue("t", {"spawn": True}, metadata={CONTEXT_KEY: carrier})
    assert producer.tracer.spans == 0  # no SDK, no current trace: the enqueues skipped it
    async with running(worker):
        for job_id in [*plain, traced]:
            await finished(queue, job_id)
        (child,) = children
        await finished(queue, child)
    # Only the traced job's attempt and its child's (which carries the trace on) started a
    # (no-op) span; of the enqueues, only the child's, in the traced attempt.
    assert consumer.tracer.spans == 2 and producer.tracer.spans == 1
    job = await queue.get(child)
    assert job is not None and job.metadata[CONTEXT_KEY]["traceparent"].split("-")[1] == (
        "0af7651916cd43dd8448eb211c80319c"
    )


_LATE_PROVIDER = textwrap.dedent(
    """
    import json, sys
    import anyio
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from jdobb_async_queue import JobQueue, Worker
    from jdobb_async_queue.tracing import CONTEXT_KEY, instrument_queue, instrument_worker

    async def main():
        async with JobQueue(backend="memory") as queue:
            instrument_queue(queue)  # no provider yet: the API's proxy
            worker = Worker(queue, poll_interval=0.05)
            instrument_worker(worker)
            exporter = InMemorySpanExporter()

            @worker.handler("t")
            async def t(ctx):
                if ctx.data.get("set"):  # the provider is set while the worker runs
                    provider = TracerProvider()
                    provider.add_span_processor(SimpleSpanProcessor(exporter))
                    trace.set_tracer_provider(provider)

            before = await queue.enqueue("t", {"set": True})
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                with anyio.fail_after(10):
                    while (await queue.get(before)).status.value != "complete":
                        await anyio.sleep(0.01)
                    after = await queue.enqueue("t")
                    while (await queue.get(after)).status.value != "complete":
                        await anyio.sleep(0.01)
                await worker.stop()
            metadata = [(await queue.get(i)).metadata for i in (before, after)]
        spans = [(s.name, s.attributes["messaging.message.id"]) for s in exporter.get_finished_spans()]
        print(json.dumps({"ids": [before, after], "spans": spans,
                          "carried": [CONTEXT_KEY in m for m in metadata]}))

    anyio.run(main, backend=sys.argv[1])
    """
)


async def test_a_provider_set_later_is_used_from_the_next_span(
    tmp_path: Path, anyio_backend: str
) -> None:
    # In a process of its own: the global provider can be set once per process.
    script = tmp_path / "late.py"
    script.write_text(_LATE_PROVIDER)
    with anyio.fail_after(WAIT * 4):
        done = await anyio.run_process(
            [sys.executable, str(script), anyio_backend], stderr=subprocess.PIPE
        )
    seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
    before, after = seen["ids"]
    assert seen["carried"] == [False, True]  # enqueued before the provider, and after
    # The attempt that set it ran unrecorded; the next enqueue and attempt were recorded.
    assert sorted(seen["spans"]) == [["process t", after], ["send t", after]]
    assert before != after


# -- the CLI's log line ----------------------------------------------------------------------


async def test_the_log_line_has_its_fields_without_building_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker(JobQueue(backend="memory"))
    log_outcomes(worker)
    (hook,) = worker._hooks
    record = JobRecord(
        id="j1", job_type="email", created_at=1.0, started_at=2.0, attempts=1, max_retries=2
    )
    endings: list[tuple[OutcomeStatus, str | None]] = [
        ("complete", None),
        ("failed", "ValueError: x"),
        ("lost", None),
        ("released", None),
        ("retrying", "ValueError: x"),
    ]
    outcomes = [claimed_outcome(record, to_job, s, error, None, 0.25) for s, error in endings]
    with caplog.at_level(logging.INFO, logger="jdobb_async_queue.cli"):
        for outcome in outcomes:
            hook(outcome)
    assert ["_job" in vars(o) for o in outcomes] == [False, False, False, False, True]
    fields = [r.job for r in caplog.records]  # type: ignore[attr-defined]
    assert [f["outcome"] for f in fields] == ["complete", "failed", "lost", "released", "retrying"]
    for f in fields:
        assert (f["job_id"], f["job_type"], f["attempt"], f["duration"]) == ("j1", "email", 1, 0.25)
    assert [f.get("error") for f in fields] == [None, "ValueError: x", None, None, "ValueError: x"]
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "job j1 email complete in 250.0 ms"
    assert messages[4] == "job j1 email failed: ValueError: x (attempt 1 of 3, will retry)"


# -- without the extras ----------------------------------------------------------------------

_WITHOUT_EXTRAS = textwrap.dedent(
    """
    import json, sys
    for name in ("prometheus_client", "opentelemetry"):
        sys.modules[name] = None  # as if not installed: importing it raises ImportError
    import anyio
    from jdobb_async_queue import JobQueue, MissingDependencyError, Worker
    import jdobb_async_queue.cli

    missing = []
    for extra in ("metrics", "tracing"):
        try:
            __import__(f"jdobb_async_queue.{extra}")
        except MissingDependencyError as exc:
            missing.append(str(exc))

    async def main():
        async with JobQueue(backend="memory") as queue:
            worker = Worker(queue)

            @worker.handler("t")
            async def t(ctx):
                return {"ok": 1}

            ids = [await queue.enqueue("t") for _ in range(3)]
            with anyio.fail_after(10):
                await worker.run(burst=True)
            return [(await queue.get(i)).status.value for i in ids], worker

    statuses, worker = anyio.run(main, backend=sys.argv[1])
    loaded = sorted(m for m in sys.modules if m.startswith(("prometheus", "opentelemetry"))
                    and sys.modules[m] is not None)
    print(json.dumps({"statuses": statuses, "missing": missing, "loaded": loaded,
                      "hooks": len(worker._hooks), "middleware": len(worker._middleware)}))
    """
)


async def test_without_the_extras_a_worker_runs_with_nothing_in_its_path(
    tmp_path: Path, anyio_backend: str
) -> None:
    script = tmp_path / "bare.py"
    script.write_text(_WITHOUT_EXTRAS)
    with anyio.fail_after(WAIT * 4):
        done = await anyio.run_process(
            [sys.executable, str(script), anyio_backend], stderr=subprocess.PIPE
        )
    seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert seen["statuses"] == ["complete"] * 3
    assert seen["loaded"] == []  # neither library was imported, by the core or the CLI
    assert seen["hooks"] == 0 and seen["middleware"] == 0  # so the runner takes its direct path
    assert len(seen["missing"]) == 2
    assert "[metrics]" in seen["missing"][0] and "prometheus_client" in seen["missing"][0]
    assert "[otel]" in seen["missing"][1] and "opentelemetry" in seen["missing"][1]
