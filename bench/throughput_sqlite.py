"""Processing throughput of the SQLite backend: one Worker, no-op handlers, a file database.

N jobs are enqueued first (``enqueue_many`` in chunks of 1,000), then one Worker with
``max_concurrent`` handler actors processes them all. Printed per event loop: processing jobs/s
(wall clock), CPU microseconds per job (every thread of the process: on a shared machine this is
the steadier figure), commits per second and jobs per commit (group commit at work), wall
microseconds per job spent in the database thread, and the rate of single, sequential
``enqueue`` calls.

    python bench/throughput_sqlite.py                  # 20,000 jobs, asyncio and trio
    python bench/throughput_sqlite.py --jobs 100000 --url sqlite:////tmp/bench.db
    python bench/throughput_sqlite.py --profile        # cProfile of the processing phase
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import pstats
import shutil
import tempfile
import time
from typing import Any

import anyio

from jdobb_async_queue import JobContext, JobQueue, Worker
from jdobb_async_queue.backends.sqlite.store import Store


def count_batches() -> list[float]:
    """Count ``Store.run`` calls (one per transaction) and the seconds spent in them."""
    counter = [0.0, 0.0]
    original = Store.run

    def run(self: Store, *args: Any) -> Any:
        counter[0] += 1
        start = time.perf_counter()
        try:
            return original(self, *args)
        finally:
            counter[1] += time.perf_counter() - start

    Store.run = run  # type: ignore[method-assign]
    return counter


async def run_once(args: argparse.Namespace, loop: str, batches: list[float]) -> str:
    scratch = tempfile.mkdtemp(prefix="jdobb-sqlite-bench-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # the default file goes at exit
    url = args.url or f"sqlite:///{scratch}/bench.db"
    queue = JobQueue(backend="sqlite", url=url)
    n = args.jobs
    for start in range(0, n, 1000):
        await queue.enqueue_many({"job_type": "noop"} for _ in range(min(1000, n - start)))
    done = anyio.Event()
    count = 0
    worker = Worker(queue, max_concurrent=args.concurrency, poll_interval=0.5)

    @worker.handler("noop")
    async def noop(ctx: JobContext) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    profile = cProfile.Profile() if args.profile else None
    before_batches, before_busy = batches
    wall, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        if profile:
            profile.enable()
        with anyio.fail_after(600):
            await done.wait()
        if profile:
            profile.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        commits = batches[0] - before_batches
        busy = batches[1] - before_busy
        await worker.stop()
    single = await single_enqueues(queue, args.single)
    await queue.close()
    if profile:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
    return (
        f"{loop:8} {n / wall:10,.0f} {cpu / n * 1e6:10.1f} {commits / wall:10,.0f} "
        f"{n / max(commits, 1):10.1f} {busy / n * 1e6:10.1f} {single:10,.0f}"
    )


async def single_enqueues(queue: JobQueue, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        await queue.enqueue("single")
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=None, help="default: a new file in a temp directory")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--loops", default="asyncio,trio")
    parser.add_argument("--single", type=int, default=1000, help="sequential enqueue calls")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    batches = count_batches()
    print(f"jobs={args.jobs} max_concurrent={args.concurrency}")
    print(
        f"{'loop':8} {'process/s':>10} {'cpu us/job':>10} {'commits/s':>10} "
        f"{'jobs/commit':>10} {'db us/job':>10} {'enqueue/s':>10}"
    )
    for loop in args.loops.split(","):
        print(anyio.run(run_once, args, loop, batches, backend=loop))


if __name__ == "__main__":
    main()
