"""What metrics and tracing cost: no-op jobs through one Worker, plain, with Prometheus metrics,
and with OpenTelemetry tracing (API with the SDK and an in-memory exporter, the heaviest usual
set-up; with the API alone every span is a no-op), under asyncio and trio.

    python bench/ops_overhead.py [--jobs 20000] [--rounds 3]

The three set-ups take turns in one process, so each sees the same machine; printed: the median
processing rate of each and its cost per job over the plain run. With neither extra installed
nothing is registered and the runtime takes its direct path (no middleware, no callback).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import anyio

from jdobb_async_queue import JobContext, JobQueue, Worker


def _setup(kind: str, queue: JobQueue, worker: Worker) -> Any:
    if kind == "metrics":
        from jdobb_async_queue.metrics import QueueMetrics

        metrics = QueueMetrics(queue)
        metrics.instrument(worker)
        return metrics
    if kind == "tracing":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from jdobb_async_queue.tracing import instrument_queue, instrument_worker

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        instrument_queue(queue, tracer_provider=provider)
        instrument_worker(worker, tracer_provider=provider)
        return provider
    return None


async def one_run(kind: str, jobs: int) -> float:
    async with JobQueue(backend="memory") as queue:
        worker = Worker(queue, max_concurrent=50, poll_interval=0.5)

        @worker.handler("noop")
        async def noop(ctx: JobContext) -> None:
            return None

        _setup(kind, queue, worker)
        await queue.enqueue_many([{"job_type": "noop"} for _ in range(jobs)])
        started = time.perf_counter()
        await worker.run(burst=True)
        return jobs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    kinds = ("plain", "metrics", "tracing")
    print(f"memory backend, {args.jobs} no-op jobs, max_concurrent=50, {args.rounds} rounds (medians)")
    print(f"{'loop':8} {'set-up':8} {'process/s':>10} {'cost':>8}")
    for loop in ("asyncio", "trio"):
        rates: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(args.rounds):
            for kind in kinds:
                rates[kind].append(anyio.run(one_run, kind, args.jobs, backend=loop))
        plain = statistics.median(rates["plain"])
        for kind in kinds:
            rate = statistics.median(rates[kind])
            cost = (plain / rate - 1) * 100
            print(f"{loop:8} {kind:8} {rate:>10,.0f} {cost:>+7.1f}%")


if __name__ == "__main__":
    main()
