"""Throughput of the SQLite backend against a bare stdlib-sqlite3 baseline, in the same run.

Per event loop, on a fresh file database (WAL, ``synchronous=normal``):

- **processing**: N no-op jobs enqueued first (``enqueue_many``, chunks of 1,000), then one
  Worker with ``max_concurrent`` handler actors runs them all; jobs/s (wall clock), CPU µs per
  job (every thread of the process: on a shared machine the steadier figure), jobs per commit
  (group commit at work) and wall µs per job inside the database thread;
- **single enqueue**: sequential ``enqueue`` calls from one producer (each its own transaction,
  as nothing else is pending);
- **concurrent enqueue**: 50 producer tasks calling ``enqueue`` at once (group commit).

The **bare baseline**, measured just before each loop's row, is the least a job queue on stdlib
``sqlite3`` can do on this machine: a job table (seq, a unique text id, type, status, data,
result, created_at) with one partial index on the pending jobs; claims of 50 (one
``UPDATE ... RETURNING`` transaction), then their completions (one ``executemany``
transaction); and single-row ``INSERT`` transactions. Each
row prints its ratios to that baseline (issue 16's targets: processing >= 30 % of the bare
limit, single enqueue >= 30 % of a bare INSERT transaction, 50 producers >= 3x single).

    python bench/throughput_sqlite.py                  # 20,000 jobs, asyncio and trio
    python bench/throughput_sqlite.py --rounds 3       # three rows per loop, alternating
    python bench/throughput_sqlite.py --profile        # cProfile: event loop and database thread
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

import anyio

from jdobb_async_queue import JobContext, JobQueue, Worker
from jdobb_async_queue.backends.sqlite.store import Store

BARE_BATCH = 50
PRODUCERS = 50


@dataclass
class Bare:
    process_per_s: float
    insert_per_s: float


@dataclass
class Figures:
    process_per_s: float
    cpu_us: float
    jobs_per_commit: float
    db_us: float
    single_per_s: float
    concurrent_per_s: float


class Batches:
    """Counts ``Store.run`` calls (one per transaction) and the wall time spent in them; with a
    profile, profiles them (they run in the database thread, which cProfile does not follow)."""

    def __init__(self, profile: cProfile.Profile | None) -> None:
        self.count = 0
        self.seconds = 0.0
        self.profile = profile
        original = Store.run

        def run(store: Store, *args: Any) -> Any:
            self.count += 1
            start = time.perf_counter()
            if self.profile is not None:
                self.profile.enable()
            try:
                return original(store, *args)
            finally:
                if self.profile is not None:
                    self.profile.disable()
                self.seconds += time.perf_counter() - start

        Store.run = run  # type: ignore[method-assign]


# -- the bare baseline ---------------------------------------------------------------------------


def bare(scratch: str, jobs: int, inserts: int) -> Bare:
    path = os.path.join(scratch, f"bare-{time.monotonic_ns()}.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
            "job_type TEXT NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL, result TEXT, "
            "created_at REAL NOT NULL)"
        )
        conn.execute("CREATE INDEX jobs_pending ON jobs (job_type, seq) WHERE status = 'pending'")
        insert = (
            "INSERT INTO jobs (id, job_type, status, data, created_at) "
            "VALUES (?, 'noop', 'pending', '{}', ?)"
        )
        conn.execute("BEGIN")
        conn.executemany(insert, [(uuid.uuid4().hex, time.time()) for _ in range(jobs)])
        conn.execute("COMMIT")
        start = time.perf_counter()
        done = 0
        while done < jobs:
            conn.execute("BEGIN IMMEDIATE")
            claimed = conn.execute(
                "UPDATE jobs SET status = 'processing' WHERE seq IN (SELECT seq FROM jobs "
                "WHERE job_type = 'noop' AND status = 'pending' ORDER BY seq LIMIT ?) "
                "RETURNING id, data",
                (BARE_BATCH,),
            ).fetchall()
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "UPDATE jobs SET status = 'complete', result = 'null' "
                "WHERE id = ? AND status = 'processing'",
                [(job_id,) for job_id, _ in claimed],
            )
            conn.execute("COMMIT")
            done += len(claimed)
        process = jobs / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(inserts):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(insert, (uuid.uuid4().hex, time.time()))
            conn.execute("COMMIT")
        single = inserts / (time.perf_counter() - start)
    finally:
        conn.close()
    return Bare(process, single)


# -- the library ---------------------------------------------------------------------------------


async def library(args: argparse.Namespace, scratch: str, batches: Batches) -> Figures:
    url = f"sqlite:///{scratch}/lib-{time.monotonic_ns()}.db"
    queue = JobQueue(backend="sqlite", url=url)
    try:
        process, cpu, commits, busy = await processing(queue, args, batches)
        single = await single_enqueues(queue, args.single)
        concurrent = await concurrent_enqueues(queue, args.single)
    finally:
        await queue.close()
    n = args.jobs
    return Figures(process, cpu / n * 1e6, n / max(commits, 1), busy / n * 1e6, single, concurrent)


async def processing(
    queue: JobQueue, args: argparse.Namespace, batches: Batches
) -> tuple[float, float, int, float]:
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

    loop_profile = cProfile.Profile() if args.profile else None
    batches.profile = cProfile.Profile() if args.profile else None
    before_count, before_busy = batches.count, batches.seconds
    async with anyio.create_task_group() as tg:
        wall, cpu = time.perf_counter(), time.process_time()
        tg.start_soon(worker.run)
        if loop_profile:
            loop_profile.enable()
        with anyio.fail_after(600):
            await done.wait()
        if loop_profile:
            loop_profile.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        commits, busy = batches.count - before_count, batches.seconds - before_busy
        await worker.stop()
    if loop_profile and batches.profile:
        for title, profile in (
            ("event loop thread", loop_profile),
            ("database thread", batches.profile),
        ):
            print(f"--- cProfile, processing phase, {title} ---")
            pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
        batches.profile = None
    return n / wall, cpu, commits, busy


async def single_enqueues(queue: JobQueue, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await queue.enqueue("single")
    return n / (time.perf_counter() - start)


async def concurrent_enqueues(queue: JobQueue, n: int) -> float:
    each = max(n // PRODUCERS, 1)

    async def producer() -> None:
        for _ in range(each):
            await queue.enqueue("concurrent")

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(PRODUCERS):
            tg.start_soon(producer)
    return each * PRODUCERS / (time.perf_counter() - start)


def row(loop: str, b: Bare, f: Figures) -> str:
    return (
        f"{loop:8} {b.process_per_s:9,.0f} {b.insert_per_s:9,.0f} | {f.process_per_s:9,.0f} "
        f"{f.process_per_s / b.process_per_s:6.1%} {f.cpu_us:7.1f} {f.jobs_per_commit:6.1f} "
        f"{f.db_us:6.1f} | {f.single_per_s:8,.0f} {f.single_per_s / b.insert_per_s:6.1%} "
        f"{f.concurrent_per_s:8,.0f} {f.concurrent_per_s / f.single_per_s:5.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--loops", default="asyncio,trio")
    parser.add_argument("--single", type=int, default=2000, help="enqueue calls per phase")
    parser.add_argument("--rounds", type=int, default=1, help="rows per loop (alternating)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    batches = Batches(None)
    scratch = tempfile.mkdtemp(prefix="jdobb-sqlite-bench-")
    try:
        print(f"jobs={args.jobs} max_concurrent={args.concurrency} sqlite={sqlite3.sqlite_version}")
        print(
            f"{'':8} {'bare':>19} | {'processing':>38} | {'enqueue':>33}\n"
            f"{'loop':8} {'process/s':>9} {'insert/s':>9} | {'jobs/s':>9} {'%bare':>6} "
            f"{'cpu us':>7} {'j/comm':>6} {'db us':>6} | {'single/s':>8} {'%bare':>6} "
            f"{'50 prod':>8} {'xsing':>6}"
        )
        for _ in range(args.rounds):
            for loop in args.loops.split(","):
                baseline = bare(scratch, args.jobs, args.single)
                figures = anyio.run(library, args, scratch, batches, backend=loop)
                print(row(loop, baseline, figures), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
