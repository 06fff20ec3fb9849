"""OpenTelemetry: a producer span per enqueue, a consumer span per attempt, one trace across
processes (the SDK's in-memory exporter; no collector)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from jdobb_async_queue import JobQueue, Worker
from jdobb_async_queue.testing.contract._support import WAIT, finished, running
from jdobb_async_queue.tracing import CONTEXT_KEY, instrument_queue, instrument_worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    yield p
    p.shutdown()


def _by_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


async def test_one_trace_from_the_request_to_the_worker(
    make_queue: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    queue: JobQueue = make_queue()
    instrument_queue(queue, tracer_provider=provider)
    worker = Worker(queue, max_concurrent=2, poll_interval=0.05)
    instrument_worker(worker, tracer_provider=provider)

    @worker.handler("resize")
    async def resize(ctx: Any) -> dict[str, int]:
        return {"ok": 1}

    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("POST /upload") as request:
        job_id = await queue.enqueue("resize", {"path": "a.png"})
    job = await queue.get(job_id)
    assert job is not None and CONTEXT_KEY in job.metadata
    async with running(worker):
        await finished(queue, job_id)
    (producer,) = _by_kind(exporter, SpanKind.PRODUCER)
    (consumer,) = _by_kind(exporter, SpanKind.CONSUMER)
    trace_id = request.get_span_context().trace_id
    assert producer.context.trace_id == consumer.context.trace_id == trace_id
    assert producer.parent.span_id == request.get_span_context().span_id
    assert consumer.parent.span_id == producer.context.span_id
    assert producer.name == "send resize"
    assert consumer.name == "process resize"
    assert producer.attributes["messaging.system"] == "jdobb_async_queue"
    assert producer.attributes["messaging.operation.type"] == "send"
    assert producer.attributes["messaging.message.id"] == job_id
    assert consumer.attributes["messaging.operation.type"] == "process"
    assert consumer.attributes["messaging.destination.name"] == "resize"
    assert consumer.attributes["jdobb_async_queue.attempt"] == 1


async def test_a_failed_attempt_is_an_error_span(
    make_queue: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    queue: JobQueue = make_queue()
    worker = Worker(queue, poll_interval=0.05)
    instrument_worker(worker, tracer_provider=provider)

    @worker.handler("t")
    async def boom(ctx: Any) -> None:
        raise ValueError("bad input")

    job_id = await queue.enqueue("t")
    async with running(worker):
        await finished(queue, job_id)
    (span,) = _by_kind(exporter, SpanKind.CONSUMER)
    assert span.status.status_code is StatusCode.ERROR
    assert "ValueError" in (span.status.description or "")
    assert [e.name for e in span.events] == ["exception"]


async def test_bulk_enqueue_is_one_send_span(
    make_queue: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    queue: JobQueue = make_queue()
    instrument_queue(queue, tracer_provider=provider)
    ids = await queue.enqueue_many([{"job_type": "a"}, {"job_type": "a"}])
    (span,) = _by_kind(exporter, SpanKind.PRODUCER)
    assert span.attributes["messaging.batch.message_count"] == 2
    for job_id in ids:
        job = await queue.get(job_id)
        assert job is not None and CONTEXT_KEY in job.metadata


async def test_untraced_jobs_are_left_alone(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    job_id = await queue.enqueue("t", metadata={"mine": 1})
    job = await queue.get(job_id)
    assert job is not None and job.metadata == {"mine": 1}


_WORKER = textwrap.dedent(
    """
    import json, sys
    import anyio
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from jdobb_async_queue import JobQueue, Worker
    from jdobb_async_queue.tracing import instrument_worker

    async def main(url, loop):
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        async with JobQueue(backend="sqlite", url=url) as queue:
            worker = Worker(queue, poll_interval=0.05)
            instrument_worker(worker, tracer_provider=provider)

            @worker.handler("t")
            async def t(ctx):
                return {"pid": 1}

            await worker.run(burst=True)
        span = exporter.get_finished_spans()[0]
        print(json.dumps({"trace": span.context.trace_id, "parent": span.parent.span_id}))

    anyio.run(main, sys.argv[1], sys.argv[2], backend=sys.argv[2])
    """
)


async def test_the_trace_crosses_processes(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter, anyio_backend: str
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with JobQueue(backend="sqlite", url=url) as queue:
        instrument_queue(queue, tracer_provider=provider)
        await queue.enqueue("t")
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    with anyio.fail_after(WAIT * 4):
        done = await anyio.run_process(
            [sys.executable, str(script), url, anyio_backend], stderr=subprocess.PIPE
        )
    seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
    (producer,) = _by_kind(exporter, SpanKind.PRODUCER)
    assert seen == {"trace": producer.context.trace_id, "parent": producer.context.span_id}
