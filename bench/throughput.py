"""Throughput and latency of one Worker on no-op jobs, under asyncio and trio.

N jobs are enqueued (one ``enqueue`` call each), then one Worker with ``max_concurrent`` handler
actors processes them. Printed per event loop: enqueue jobs/s, processing jobs/s, p50/p99 of
enqueue-to-start latency (measured on the pre-enqueued backlog, so it mostly shows queueing
time) plus idle-worker latency (one job at a time, worker already waiting), peak memory
(tracemalloc) and ``enqueue_many`` jobs/s for a batch of 10,000.

    python bench/throughput.py                       # memory backend, 50,000 jobs
    python bench/throughput.py --backend sqlite --url sqlite:///bench.db
    python bench/throughput.py --backend redis --url redis://127.0.0.1:6379/0
    python bench/throughput.py --compare 5           # tasks vs handlers, 5 alternating rounds
    python bench/throughput.py --ops metrics         # with metrics (or otel-api, otel-off, ...)

``--ops`` instruments the queue and the worker as ``bench/ops_overhead.py``'s set-up of that name
does (which measures what each costs, in alternating rounds).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio

from jdobb_async_queue import JobContext, JobQueue, Worker, current_job


@dataclass
class Figures:
    loop: str
    enqueue_per_s: float
    process_per_s: float
    p50_ms: float
    p99_ms: float
    idle_p50_ms: float
    peak_mib: float
    bulk_per_s: float


def open_queue(args: argparse.Namespace) -> JobQueue:
    if args.backend == "memory":
        return JobQueue(backend="memory")
    if args.backend == "sqlite":
        if args.url is None:  # a fresh file, removed at exit
            scratch = tempfile.mkdtemp(prefix="jdobb-bench-")
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        url = args.url or f"sqlite:///{scratch}/bench.db"
        return JobQueue(backend="sqlite", url=url)
    name = "postgres" if args.backend == "postgres" else "redis"
    return JobQueue(backend=name, url=args.url, namespace=f"bench-{uuid.uuid4().hex[:8]}")


async def run_once(args: argparse.Namespace, loop: str) -> Figures:
    queue = open_queue(args)
    n = args.jobs
    starts: dict[str, float] = {}
    done = anyio.Event()
    worker = Worker(queue, max_concurrent=args.concurrency, poll_interval=0.5)
    if args.ops != "plain":
        from ops_overhead import _setup  # beside this file; imports the OpenTelemetry SDK

        _setup(args.ops, queue, worker)
    enqueued_at: dict[str, float] = {}
    next_start: list[anyio.Event | None] = [None]  # set by the next job to start (idle latency)

    if args.tasks:
        # The same no-op as a function task: measures what @queue.task adds over a handler.
        @queue.task(name="noop")
        async def noop_task() -> None:
            ctx = current_job()
            starts[ctx.id] = time.perf_counter()
            if len(starts) == n:
                done.set()
            if next_start[0] is not None:
                next_start[0].set()

        enqueue = noop_task.enqueue
    else:

        @worker.handler("noop")
        async def noop(ctx: JobContext) -> dict[str, Any] | None:
            starts[ctx.id] = time.perf_counter()
            if len(starts) == n:
                done.set()
            if next_start[0] is not None:
                next_start[0].set()
            return None

        enqueue = partial(queue.enqueue, "noop")

    tracemalloc.start() if args.memory else None
    t0 = time.perf_counter()
    for _ in range(n):
        job_id = await enqueue()
        enqueued_at[job_id] = time.perf_counter()
    t1 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        t2 = time.perf_counter()
        tg.start_soon(worker.run)
        await done.wait()
        t3 = time.perf_counter()
        idle = await idle_latency(enqueue, starts, next_start, args.idle_samples)
        await worker.stop()
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if args.memory else float("nan")
    tracemalloc.stop() if args.memory else None
    bulk = await bulk_rate(queue)
    await drop(queue)
    await queue.close()
    lat = sorted((starts[j] - enqueued_at[j]) * 1000 for j in enqueued_at)
    return Figures(
        loop=loop,
        enqueue_per_s=n / (t1 - t0),
        process_per_s=n / (t3 - t2),
        p50_ms=lat[len(lat) // 2],
        p99_ms=lat[int(len(lat) * 0.99)],
        idle_p50_ms=statistics.median(idle) if idle else float("nan"),
        peak_mib=peak,
        bulk_per_s=bulk,
    )


async def idle_latency(
    enqueue: Callable[[], Awaitable[str]],
    starts: dict[str, float],
    next_start: list[anyio.Event | None],
    samples: int,
) -> list[float]:
    """Enqueue-to-start latency with an idle, waiting worker: one job at a time."""
    out = []
    for _ in range(samples):
        await anyio.sleep(0.005)  # let the worker go idle
        started = anyio.Event()
        next_start[0] = started
        t = time.perf_counter()
        job_id = await enqueue()
        with anyio.fail_after(10):
            await started.wait()
        out.append((starts[job_id] - t) * 1000)
    return out


async def bulk_rate(queue: JobQueue, n: int = 10_000) -> float:
    items = [{"job_type": "bulk", "data": {"i": i}} for i in range(n)]
    t = time.perf_counter()
    await queue.enqueue_many(items)
    return n / (time.perf_counter() - t)


async def drop(queue: JobQueue) -> None:
    drop_ns = getattr(queue.backend, "drop_namespace", None)
    if drop_ns is not None:
        await drop_ns()


def compare(args: argparse.Namespace) -> None:
    """Handlers and tasks, alternately, so that both see the same machine; medians."""
    print(f"backend={args.backend} jobs={args.jobs} max_concurrent={args.concurrency} "
          f"rounds={args.compare} python={sys.version.split()[0]} (medians; tasks vs handlers)")
    print(f"{'loop':8} {'kind':9} {'enqueue/s':>10} {'process/s':>10}")
    for loop in args.loops.split(","):
        runs: dict[bool, list[Figures]] = {False: [], True: []}
        for _ in range(args.compare):
            for tasks in (False, True):
                variant = argparse.Namespace(**{**vars(args), "tasks": tasks, "memory": False})
                runs[tasks].append(anyio.run(run_once, variant, loop, backend=loop))
        medians = {}
        for tasks, figures in runs.items():
            enq = statistics.median(f.enqueue_per_s for f in figures)
            proc = statistics.median(f.process_per_s for f in figures)
            medians[tasks] = (enq, proc)
            print(f"{loop:8} {'tasks' if tasks else 'handlers':9} {enq:10,.0f} {proc:10,.0f}")
        (h_enq, h_proc), (t_enq, t_proc) = medians[False], medians[True]
        print(f"{loop:8} {'overhead':9} {(h_enq / t_enq - 1) * 100:9.1f}% "
              f"{(h_proc / t_proc - 1) * 100:9.1f}%   (extra time per job, tasks over handlers)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--backend", choices=["memory", "sqlite", "redis", "postgres"], default="memory")
    parser.add_argument("--url", default=None)
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--loops", default="asyncio,trio")
    parser.add_argument("--idle-samples", type=int, default=200)
    parser.add_argument("--tasks", action="store_true",
                        help="run the no-op as a @queue.task instead of a handler")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip tracemalloc (it slows everything down by ~2x)")
    parser.add_argument("--ops", default="plain",
                        choices=["plain", "metrics", "otel-api", "otel-off", "otel-sdk"],
                        help="instrument as bench/ops_overhead.py's set-up of this name")
    parser.add_argument("--compare", type=int, default=0, metavar="ROUNDS",
                        help="run handlers and tasks alternately ROUNDS times per loop (no "
                             "tracemalloc) and print their medians and what tasks cost")
    args = parser.parse_args()
    if args.backend == "redis" and not args.url:
        args.url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if args.backend == "postgres" and not args.url:
        args.url = os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    if args.compare:
        compare(args)
        return
    print(f"backend={args.backend} jobs={args.jobs} max_concurrent={args.concurrency} "
          f"{'tasks' if args.tasks else 'handlers'} ops={args.ops} "
          f"python={sys.version.split()[0]} tracemalloc={'on' if args.memory else 'off'}")
    header = (f"{'loop':8} {'enqueue/s':>10} {'process/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'idle p50':>9} {'peak MiB':>9} {'bulk/s':>9}")
    print(header)
    for loop in args.loops.split(","):
        f = anyio.run(run_once, args, loop, backend=loop)
        print(f"{f.loop:8} {f.enqueue_per_s:10,.0f} {f.process_per_s:10,.0f} {f.p50_ms:8.1f} "
              f"{f.p99_ms:8.1f} {f.idle_p50_ms:9.3f} {f.peak_mib:9.1f} {f.bulk_per_s:9,.0f}")


if __name__ == "__main__":
    main()
