"""What metrics and tracing cost: no-op jobs through one Worker, under asyncio and trio, in four
set-ups:

- ``plain``: neither registered (what a worker without the extras runs: no middleware, no
  ``on_outcome`` callback);
- ``metrics``: ``QueueMetrics(queue).instrument(worker)`` (prometheus-client);
- ``otel-api``: ``instrument_queue``/``instrument_worker`` with the OpenTelemetry API alone (no
  SDK: every span is a no-op, what an application that installs the extra but configures no
  tracer provider gets);
- ``otel-sdk``: the same with the SDK: a ``TracerProvider`` whose ``SimpleSpanProcessor`` hands
  every span to an exporter that drops it (so neither a network nor a growing list of kept spans
  is measured; what is left is span creation, the processor call and our middleware).

    python bench/ops_overhead.py [--jobs 20000] [--rounds 5]          # memory backend
    python bench/ops_overhead.py --backend sqlite                     # a new file per run
    python bench/ops_overhead.py --backend redis --url redis://127.0.0.1:6379/0

The set-ups take turns in one process, so each sees the same machine. Printed per set-up:
process/s (wall clock, median over the rounds; the backlog is loaded with ``enqueue_many``
before the clock starts), and this process's CPU time per job (all threads; steadier than the
wall clock on a shared machine, and without the Redis server's share), median and best over the
rounds, each with its cost over ``plain`` in microseconds per job and in percent. When other
work shares the machine, the best round is the least disturbed one, and the steadier figure.

Below, the pieces of one attempt timed in a bare loop (no queue, no event loop; best of 7, and
``timeit`` turns the garbage collector off): the libraries' own work (prometheus-client's three
observations; one SDK span whose parent is the producer's, as a traced job's is; one
``propagate.extract``) beside ours, which includes it (building the outcome and
``QueueMetrics.observe``; the tracing middleware with the SDK on a traced job, and with the API
alone), and a pass-through middleware, the floor of any middleware. These are steadier than the
worker runs above, which move by several microseconds when the machine is shared.
--rounds and --jobs trade time for steadier figures; --loops picks the event loops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from jdobb_async_queue import JobContext, JobQueue, Worker

KINDS = ("plain", "metrics", "otel-api", "otel-sdk")


class DroppingExporter(SpanExporter):
    """Counts the spans it is given and keeps none."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def sdk_provider() -> tuple[TracerProvider, DroppingExporter]:
    exporter = DroppingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _setup(kind: str, queue: JobQueue, worker: Worker) -> Any:
    if kind == "metrics":
        from jdobb_async_queue.metrics import QueueMetrics

        metrics = QueueMetrics(queue)
        metrics.instrument(worker)
        return metrics
    if kind.startswith("otel"):
        from jdobb_async_queue.tracing import instrument_queue, instrument_worker

        # otel-api: no provider given and none set globally, so the API's no-op tracer.
        provider, exporter = sdk_provider() if kind == "otel-sdk" else (None, None)
        instrument_queue(queue, tracer_provider=provider)
        instrument_worker(worker, tracer_provider=provider)
        return exporter
    return None


def open_queue(backend: str, url: str | None, scratch: str) -> JobQueue:
    if backend == "memory":
        return JobQueue(backend="memory")
    if backend == "sqlite":
        return JobQueue(backend="sqlite", url=f"sqlite:///{scratch}/{uuid.uuid4().hex}.db")
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    return JobQueue(backend="redis", url=url or os.environ.get("REDIS_URL"), namespace=namespace)


async def one_run(kind: str, args: argparse.Namespace, scratch: str) -> tuple[float, float]:
    """One set-up on a new queue: (jobs per wall-clock second, CPU microseconds per job)."""
    async with open_queue(args.backend, args.url, scratch) as queue:
        worker = Worker(queue, max_concurrent=50, poll_interval=0.5)

        @worker.handler("noop")
        async def noop(ctx: JobContext) -> None:
            return None

        seen = _setup(kind, queue, worker)
        try:
            await queue.enqueue_many([{"job_type": "noop"} for _ in range(args.jobs)])
            wall, cpu = time.perf_counter(), time.process_time()
            await worker.run(burst=True)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            drop = getattr(queue.backend, "drop_namespace", None)  # Redis: this run's keys
            if drop is not None:
                await drop()
    if kind == "otel-sdk":
        assert seen.count == args.jobs + 1, seen.count  # one send span, one per attempt
    return args.jobs / wall, cpu / args.jobs * 1e6


def per_attempt_costs() -> list[tuple[str, float]]:
    """Microseconds per attempt of each piece, in a bare loop (best of 7): no queue, no event loop
    (a middleware's coroutine is driven by hand), so other load on the machine barely shows. The
    libraries' own work first, then ours, which includes it."""
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from jdobb_async_queue._models import claimed_outcome
    from jdobb_async_queue._records import JobRecord, to_job
    from jdobb_async_queue.metrics import BUCKETS, QueueMetrics
    from jdobb_async_queue.tracing import CONTEXT_KEY, instrument_worker

    registry = CollectorRegistry()
    counter = Counter("c", "c", ("job_type", "outcome"), registry=registry).labels("t", "ok")
    run = Histogram("r", "r", ("job_type",), buckets=BUCKETS, registry=registry).labels("t")
    wait = Histogram("w", "w", ("job_type",), buckets=BUCKETS, registry=registry).labels("t")

    def prometheus() -> None:
        counter.inc()
        run.observe(0.0001)
        wait.observe(0.0002)

    provider, _ = sdk_provider()
    tracer = provider.get_tracer("bench")
    attributes: dict[str, Any] = {
        "messaging.system": "jdobb_async_queue",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "noop",
        "messaging.message.id": "0" * 36,
        "jdobb_async_queue.attempt": 1,
    }

    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(tracer.start_span("send")))
    parent = propagate.extract(carrier)

    def sdk_span() -> None:  # a child of the producer's span, as a traced job's attempt is
        tracer.start_span(
            "process noop", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ).end()

    def extract() -> None:
        propagate.extract(carrier)

    now = time.time()
    record = JobRecord(id="0" * 36, job_type="noop", created_at=now, started_at=now, attempts=1)
    traced = JobRecord(
        id="0" * 36, job_type="noop", created_at=now, started_at=now, attempts=1,
        metadata={CONTEXT_KEY: carrier},
    )  # fmt: skip
    metrics = QueueMetrics(JobQueue(backend="memory"))

    def observe() -> None:  # what the worker does per attempt for QueueMetrics, but the loop
        metrics.observe(claimed_outcome(record, to_job, "complete", None, None, 0.0001))

    async def handler() -> None:
        return None

    queue = JobQueue(backend="memory")

    def drive(middleware: Any, claimed: JobRecord) -> Callable[[], None]:
        def attempt() -> None:  # a new context per attempt, as the worker makes
            try:
                middleware(JobContext(queue, claimed), handler).send(None)
            except StopIteration:
                pass

        return attempt

    def middleware_of(tracer_provider: Any) -> Any:
        worker = Worker(JobQueue(backend="memory"))
        instrument_worker(worker, tracer_provider=tracer_provider)
        return worker._middleware[0]

    async def passthrough(ctx: JobContext, call_next: Callable[[], Any]) -> Any:
        return await call_next()

    pieces = [
        ("prometheus-client: 1 counter inc + 2 histogram observes", prometheus, 100_000),
        ("ours: the outcome + QueueMetrics.observe", observe, 100_000),
        ("OpenTelemetry SDK: 1 span (remote parent) started, ended", sdk_span, 20_000),
        ("OpenTelemetry API: propagate.extract of a traceparent", extract, 20_000),
        ("a pass-through middleware (the floor of any)", drive(passthrough, record), 100_000),
        ("ours: the tracing middleware, SDK, traced job", drive(middleware_of(provider), traced), 20_000),
        ("ours: the tracing middleware, API alone", drive(middleware_of(None), record), 100_000),
    ]  # fmt: skip
    return [
        (name, min(timeit.repeat(func, number=number, repeat=7)) / number * 1e6)
        for name, func, number in pieces
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["memory", "sqlite", "redis"], default="memory")
    parser.add_argument("--url", default=None, help="redis: default $REDIS_URL or the local one")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", default="asyncio,trio")
    args = parser.parse_args()
    print(
        f"{args.backend} backend, {args.jobs} no-op jobs, max_concurrent=50, {args.rounds} rounds"
    )
    print(f"{'loop':8} {'set-up':9} {'process/s':>10}{'cpu µs/job, cost: median':>31}{'best':>30}")
    scratch = tempfile.mkdtemp(prefix="jdobb-bench-")
    try:
        for loop in args.loops.split(","):
            runs: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}
            for _ in range(args.rounds):
                for kind in KINDS:
                    runs[kind].append(anyio.run(one_run, kind, args, scratch, backend=loop))
            cpus = {kind: [cpu for _, cpu in runs[kind]] for kind in KINDS}
            plain = statistics.median(cpus["plain"]), min(cpus["plain"])
            for kind in KINDS:
                rate = statistics.median(r for r, _ in runs[kind])
                line = f"{loop:8} {kind:9} {rate:>10,.0f}"
                for cpu, base in zip(
                    (statistics.median(cpus[kind]), min(cpus[kind])), plain, strict=True
                ):
                    line += f" {cpu:>9.1f} {cpu - base:>+8.2f}µs {(cpu / base - 1) * 100:>+7.1f}%"
                print(line)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("per attempt, in a bare loop (best of 7):")
    for name, micros in per_attempt_costs():
        print(f"  {name:58} {micros:6.2f} µs")


if __name__ == "__main__":
    main()
