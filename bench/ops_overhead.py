"""What metrics and tracing cost: no-op jobs through one Worker, under asyncio and trio, in six
set-ups:

- ``plain``: neither registered (what a worker without the extras runs: no middleware, no
  ``on_outcome`` callback);
- ``metrics``: ``QueueMetrics(queue).instrument(worker)`` (prometheus-client);
- ``otel-api``: ``instrument_queue``/``instrument_worker`` with the OpenTelemetry API alone (no
  SDK: every span would be a no-op, what an application that installs the extra but configures
  no tracer provider gets);
- ``otel-ours``: the same with a stub tracer provider and a stub propagator, whose every call
  returns at once a ready-made non-recording span or context of a valid trace (what a sampler
  that drops everything gives), so each job still carries a context, which its attempt
  extracts and makes current: what is left is this library's own share of tracing (our
  middleware, and the API's context attach and detach it calls), with none of OpenTelemetry's
  own work (no ids made, no sampler, no ``traceparent`` parsed);
- ``otel-off``: the same with the SDK and a sampler that drops every span
  (``ParentBased(ALWAYS_OFF)``): no span is recorded, yet each job's trace context is carried,
  extracted and made current: ``otel-ours`` plus the work of OpenTelemetry's that no
  instrumentation can skip (the propagator's inject and extract, the SDK's ids and sampling);
- ``otel-sdk``: the SDK recording: a ``TracerProvider`` whose ``SimpleSpanProcessor`` hands
  every span to an exporter that drops it (so neither a network nor a growing list of kept spans
  is measured; what is left is span creation, the processor call and our middleware).

    python bench/ops_overhead.py [--jobs 20000] [--rounds 5]          # memory backend
    python bench/ops_overhead.py --enqueue each                       # as bench/throughput.py
    python bench/ops_overhead.py --backend sqlite                     # a new file per run
    python bench/ops_overhead.py --backend redis --url redis://127.0.0.1:6379/0
    python bench/ops_overhead.py --setups plain,metrics --rounds 15   # an A/B of two

The set-ups take turns in one process, round after round, so each sees the same machine.
``--enqueue many`` (the default) loads the backlog with one ``enqueue_many`` before the clock
starts (one producer span for the batch, whose context every job carries); ``--enqueue each``
enqueues one job per call, as ``bench/throughput.py`` does (one producer span per job), and
also times that. Printed per set-up: process/s (wall clock, median over the rounds), and this
process's CPU time per job (all threads; steadier than the wall clock on a shared machine, and
without the Redis server's share) for processing (and enqueueing), median and best over the
rounds, each with its cost over ``plain`` in microseconds per job and in percent. When other
work shares the machine, the best round is the least disturbed one, and the steadier figure.

Below, the pieces of one attempt timed in a bare loop (no queue, no event loop; best of 7, and
``timeit`` turns the garbage collector off): the libraries' own work (prometheus-client's three
observations; one SDK span whose parent is the producer's, as a traced job's is, recorded and
dropped by the sampler; one ``propagate.extract``) beside ours, which includes it (building the
outcome and ``QueueMetrics.observe``; the tracing middleware with the SDK on a traced job, with
the dropping sampler, and with the API alone), and a pass-through middleware, the floor of any
middleware. These are steadier than the worker runs above, which move by several microseconds
when the machine is shared, and lower: in a worker, between two attempts of a handler, the
other handlers' attempts run, so less of the code and data is still in the CPU's caches.
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import anyio
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags, Tracer

from jdobb_async_queue import JobContext, JobQueue, Worker

KINDS = ("plain", "metrics", "otel-api", "otel-ours", "otel-off", "otel-sdk")


class DroppingExporter(SpanExporter):
    """Counts the spans it is given and keeps none."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def sdk_provider(sampler: Sampler | None = None) -> tuple[TracerProvider, DroppingExporter]:
    exporter = DroppingExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def dropping_provider() -> tuple[TracerProvider, DroppingExporter]:
    """The SDK with a sampler that records nothing (yet every trace context is carried on)."""
    return sdk_provider(ParentBased(ALWAYS_OFF))


_STUB_TRACE = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=False,
    trace_flags=TraceFlags(TraceFlags.DEFAULT),
)


class StubTracer(Tracer):
    """Every span: one ready-made non-recording span of a valid trace, as a dropping sampler
    gives, without the SDK's work."""

    span = NonRecordingSpan(_STUB_TRACE)

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        return self.span

    @contextmanager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[Span]:
        with trace.use_span(self.span) as span:
            yield span


class StubTracerProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> Tracer:
        return StubTracer()


class StubPropagator(TextMapPropagator):
    """Injects one fixed ``traceparent``; extracts, whatever it is given, one ready-made
    context, whose span is the remote parent of that trace."""

    parent = trace.set_span_in_context(
        NonRecordingSpan(
            SpanContext(_STUB_TRACE.trace_id, _STUB_TRACE.span_id, True, _STUB_TRACE.trace_flags)
        )
    )

    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        return self.parent

    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        carrier["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"

    @property
    def fields(self) -> set[str]:
        return {"traceparent"}


def _setup(kind: str, queue: JobQueue, worker: Worker) -> Any:
    if kind == "metrics":
        from jdobb_async_queue.metrics import QueueMetrics

        metrics = QueueMetrics(queue)
        metrics.instrument(worker)
        return metrics
    if kind.startswith("otel"):
        from jdobb_async_queue.tracing import instrument_queue, instrument_worker

        # otel-api: no provider given and none set globally, so the API's no-op tracer.
        provider, exporter = {
            "otel-sdk": sdk_provider,
            "otel-off": dropping_provider,
            "otel-ours": lambda: (StubTracerProvider(), None),
        }.get(kind, lambda: (None, None))()
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


async def one_run(kind: str, args: argparse.Namespace, scratch: str) -> Run:
    """One set-up on a new queue: jobs per wall-clock second processing, and CPU microseconds
    per job processing and (with ``--enqueue each``) enqueueing."""
    async with open_queue(args.backend, args.url, scratch) as queue:
        worker = Worker(queue, max_concurrent=50, poll_interval=0.5)

        @worker.handler("noop")
        async def noop(ctx: JobContext) -> None:
            return None

        seen = _setup(kind, queue, worker)
        propagator = propagate.get_global_textmap()
        if kind == "otel-ours":
            propagate.set_global_textmap(StubPropagator())
        try:
            enqueue_cpu = time.process_time()
            if args.enqueue == "each":
                for _ in range(args.jobs):
                    await queue.enqueue("noop")
            else:
                await queue.enqueue_many([{"job_type": "noop"} for _ in range(args.jobs)])
            enqueue_cpu = time.process_time() - enqueue_cpu
            wall, cpu = time.perf_counter(), time.process_time()
            await worker.run(burst=True)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            propagate.set_global_textmap(propagator)
            drop = getattr(queue.backend, "drop_namespace", None)  # Redis: this run's keys
            if drop is not None:
                await drop()
    if kind == "otel-sdk":  # one send span per enqueue call, one per attempt
        sends = args.jobs if args.enqueue == "each" else 1
        assert seen.count == sends + args.jobs, seen.count
    if kind == "otel-off":
        assert seen.count == 0, seen.count
    return Run(args.jobs / wall, cpu / args.jobs * 1e6, enqueue_cpu / args.jobs * 1e6)


class Run(NamedTuple):
    rate: float  # jobs processed per wall-clock second
    cpu: float  # CPU µs per job processed
    enqueue_cpu: float  # CPU µs per job enqueued


def per_attempt_costs() -> list[tuple[str, float]]:
    """Microseconds per attempt of each piece, in a bare loop (best of 7): no queue, no event loop
    (a middleware's coroutine is driven by hand), so other load on the machine barely shows. The
    libraries' own work first, then ours, which includes it."""
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

    off, _ = dropping_provider()
    off_tracer = off.get_tracer("bench")
    off_carrier: dict[str, str] = {}  # a producer's span the sampler dropped: "...-00"
    off_span = off_tracer.start_span("send")
    propagate.inject(off_carrier, context=trace.set_span_in_context(off_span))
    off_parent = propagate.extract(off_carrier)

    def dropped_span() -> None:
        off_tracer.start_span(
            "process noop", context=off_parent, kind=SpanKind.CONSUMER, attributes=attributes
        ).end()

    now = time.time()
    record = JobRecord(id="0" * 36, job_type="noop", created_at=now, started_at=now, attempts=1)
    traced = JobRecord(
        id="0" * 36, job_type="noop", created_at=now, started_at=now, attempts=1,
        metadata={CONTEXT_KEY: carrier},
    )  # fmt: skip
    off_traced = JobRecord(
        id="0" * 36, job_type="noop", created_at=now, started_at=now, attempts=1,
        metadata={CONTEXT_KEY: off_carrier},
    )  # fmt: skip
    metrics = QueueMetrics(JobQueue(backend="memory"))

    def outcome() -> None:  # what any on_outcome callback costs the worker, but the call
        claimed_outcome(record, to_job, "complete", None, None, 0.0001)

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
        ("ours: building an attempt's outcome (any callback)", outcome, 100_000),
        ("ours: the outcome + QueueMetrics.observe", observe, 100_000),
        ("OpenTelemetry SDK: 1 span (remote parent) started, ended", sdk_span, 20_000),
        ("OpenTelemetry SDK: the same, dropped by the sampler", dropped_span, 20_000),
        ("OpenTelemetry API: propagate.extract of a traceparent", extract, 20_000),
        ("a pass-through middleware (the floor of any)", drive(passthrough, record), 100_000),
        ("ours: the tracing middleware, SDK, traced job", drive(middleware_of(provider), traced), 20_000),
        ("ours: the tracing middleware, SDK dropping, traced job", drive(middleware_of(off), off_traced), 20_000),
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
    parser.add_argument(
        "--setups", default=",".join(KINDS), help=f"some of {','.join(KINDS)}, plain first"
    )
    parser.add_argument(
        "--enqueue",
        choices=["many", "each"],
        default="many",
        help="the backlog: one enqueue_many, or one enqueue per job (as bench/throughput.py)",
    )
    parser.add_argument("--no-pieces", dest="pieces", action="store_false",
                        help="skip the bare-loop table")  # fmt: skip
    args = parser.parse_args()
    kinds = args.setups.split(",")
    if kinds[0] != "plain" or not set(kinds) <= set(KINDS):
        parser.error(f"--setups: some of {','.join(KINDS)}, plain first")
    print(
        f"{args.backend} backend, {args.jobs} no-op jobs (enqueue {args.enqueue}), "
        f"max_concurrent=50, {args.rounds} rounds"
    )
    header = (
        f"{'loop':8} {'set-up':9} {'process/s':>10}{'cpu µs/job, cost: median':>31}{'best':>30}"
    )
    if args.enqueue == "each":
        header += f"{'enqueue cpu µs/job, median':>34}"
    print(header)
    scratch = tempfile.mkdtemp(prefix="jdobb-bench-")
    try:
        for loop in args.loops.split(","):
            runs: dict[str, list[Run]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for kind in kinds:
                    runs[kind].append(anyio.run(one_run, kind, args, scratch, backend=loop))
            for kind in kinds:
                print(_line(loop, kind, runs[kind], runs["plain"], args.enqueue == "each"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.pieces:
        print("per attempt, in a bare loop (best of 7):")
        for name, micros in per_attempt_costs():
            print(f"  {name:58} {micros:6.2f} µs")


def _line(loop: str, kind: str, runs: list[Run], plain: list[Run], enqueue: bool) -> str:
    def cost(value: float, base: float) -> str:
        return f" {value:>9.1f} {value - base:>+8.2f}µs {(value / base - 1) * 100:>+7.1f}%"

    cpus, bases = [r.cpu for r in runs], [r.cpu for r in plain]
    line = f"{loop:8} {kind:9} {statistics.median(r.rate for r in runs):>10,.0f}"
    line += cost(statistics.median(cpus), statistics.median(bases))
    line += cost(min(cpus), min(bases))
    if enqueue:
        line += cost(
            statistics.median(r.enqueue_cpu for r in runs),
            statistics.median(r.enqueue_cpu for r in plain),
        )
    return line


if __name__ == "__main__":
    main()
