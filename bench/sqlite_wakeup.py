"""Cross-process idle latency of the SQLite backend: enqueue in one process, start in another.

A worker process (one ``Worker``, its queue idle) and this producer process share one file. For
each sample the producer enqueues one job, the worker's handler prints the moment it started
(``CLOCK_MONOTONIC``, shared by every process of the host), and the producer waits for that line
before the next sample, after a short random pause so the worker is idle again. Printed per
worker event loop: p50 / p90 / p99 / max of enqueue-call → handler-start, in ms, and the p50 of
the enqueue call alone (the producer's share).

``--mode doorbell`` (the default) is the normal set-up: waiting backends bind a socket in
``<db>.wake/`` and producers ring it after each commit. ``--mode poll`` makes that directory
unusable (a plain file stands in its way), so the backend falls back to looking every
``poll_interval`` (the URL's option, 0.1 s by default): the behaviour before doorbells.

The **bare** row, first, is this machine's floor for the same exchange, with no queue and no
event loop: the producer commits one ``INSERT`` with stdlib ``sqlite3`` and sends one datagram;
the worker process, blocked in ``recv`` on its Unix socket, claims the row in one
``UPDATE ... RETURNING`` transaction and prints the time.

    python bench/sqlite_wakeup.py                       # 200 samples, worker under asyncio, trio
    python bench/sqlite_wakeup.py --mode poll --samples 50
    python bench/sqlite_wakeup.py --poll-interval 0.01  # the URL's poll_interval
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import anyio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from jdobb_async_queue import JobContext, JobQueue, Worker

READY = "ready"


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# -- the worker process --------------------------------------------------------------------------


async def worker_main(url: str) -> None:
    queue = JobQueue(backend="sqlite", url=url)
    # A long claimer poll, so only the backend's wake-up (or its own poll) can start a job soon.
    worker = Worker(queue, max_concurrent=4, poll_interval=5.0)

    @worker.handler("ping")
    async def ping(ctx: JobContext) -> None:
        print(f"{ctx.id} {now():.9f}", flush=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await queue.stats()  # the file exists and is migrated
        with anyio.fail_after(10):
            while not await queue.workers():
                await anyio.sleep(0.01)
        print(READY, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the producer closes our stdin
        await worker.stop()
    await queue.close()


def bare_worker_main(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path + ".sock")
    print(READY, flush=True)
    try:
        while sock.recv(16) == b"\0":
            conn.execute("BEGIN IMMEDIATE")
            (job_id,) = conn.execute(
                "UPDATE jobs SET status = 'processing' WHERE seq = "
                "(SELECT seq FROM jobs WHERE status = 'pending' ORDER BY seq LIMIT 1) "
                "RETURNING id"
            ).fetchone()
            conn.execute("COMMIT")
            print(f"{job_id} {now():.9f}", flush=True)
    finally:
        sock.close()
        conn.close()


def bare(samples: int, scratch: str) -> tuple[list[float], list[float]]:
    path = os.path.join(scratch, "bare.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX jobs_pending ON jobs (seq) WHERE status = 'pending'")
    command = [sys.executable, __file__, "--bare-worker", path]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    latencies: list[float] = []
    calls: list[float] = []
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == READY
        for _ in range(samples):
            time.sleep(random.uniform(0.01, 0.03))
            before = now()
            job_id = uuid.uuid4().hex
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO jobs (id, status) VALUES (?, 'pending')", (job_id,))
            conn.execute("COMMIT")
            sender.sendto(b"\0", path + ".sock")
            calls.append((now() - before) * 1000)
            found, started = process.stdout.readline().split()
            assert found == job_id, (found, job_id)
            latencies.append((float(started) - before) * 1000)
        sender.sendto(b"q", path + ".sock")
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        sender.close()
        conn.close()
    return latencies, calls


# -- the producer --------------------------------------------------------------------------------


async def lines(process: Process) -> TextReceiveStream:
    assert process.stdout is not None
    return TextReceiveStream(process.stdout)


async def measure(args: argparse.Namespace, loop: str, url: str) -> tuple[list[float], list[float]]:
    command = [sys.executable, __file__, "--worker", url, "--worker-loop", loop]
    process = await anyio.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    queue = JobQueue(backend="sqlite", url=url)
    latencies: list[float] = []
    calls: list[float] = []  # the enqueue call alone
    try:
        stream = await lines(process)
        buffer = ""

        async def next_line() -> str:
            nonlocal buffer
            while "\n" not in buffer:
                buffer += await stream.receive()
            line, buffer = buffer.split("\n", 1)
            return line

        with anyio.fail_after(30):
            while await next_line() != READY:
                pass
        for _ in range(args.samples):
            await anyio.sleep(random.uniform(0.01, 0.03))  # the worker goes idle
            before = now()
            job_id = await queue.enqueue("ping")
            calls.append((now() - before) * 1000)
            with anyio.fail_after(30):
                found, started = (await next_line()).split()
            assert found == job_id, (found, job_id)
            latencies.append((float(started) - before) * 1000)
    finally:
        await queue.close()
        assert process.stdin is not None
        await process.stdin.aclose()
        with anyio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    return latencies, calls


def summary(loop: str, mode: str, latencies: list[float], calls: list[float]) -> str:
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(int(len(ordered) * q), len(ordered) - 1)]

    return (
        f"{loop:8} {mode:9} {len(ordered):7} {statistics.median(ordered):8.2f} {at(0.9):8.2f} "
        f"{at(0.99):8.2f} {ordered[-1]:8.2f} {statistics.median(calls):10.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--loops", default="asyncio,trio", help="the worker's event loops")
    parser.add_argument("--producer-loop", default="asyncio")
    parser.add_argument("--mode", choices=["doorbell", "poll", "both"], default="doorbell")
    parser.add_argument("--poll-interval", type=float, default=None, help="the URL's option")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--worker-loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--bare-worker", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        anyio.run(worker_main, args.worker, backend=args.worker_loop)
        return
    if args.bare_worker:
        bare_worker_main(args.bare_worker)
        return
    modes = ["doorbell", "poll"] if args.mode == "both" else [args.mode]
    query = "" if args.poll_interval is None else f"?poll_interval={args.poll_interval}"
    print(
        f"producer loop={args.producer_loop} poll_interval="
        f"{args.poll_interval or 0.1} s; enqueue call -> handler start, ms"
    )
    print(
        f"{'worker':8} {'mode':9} {'samples':>7} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} {'enqueue p50':>10}"
    )
    scratch = tempfile.mkdtemp(prefix="jdobb-wakeup-")
    try:
        print(summary("-", "bare", *bare(args.samples, scratch)), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for loop in args.loops.split(","):
        for mode in modes:
            scratch = tempfile.mkdtemp(prefix="jdobb-wakeup-")
            try:
                path = os.path.join(scratch, "wake.db")
                if mode == "poll":
                    with open(path + ".wake", "w"):  # a file where the directory would go
                        pass
                url = f"sqlite:///{path}{query}"
                latencies, calls = anyio.run(measure, args, loop, url, backend=args.producer_loop)
                print(summary(loop, mode, latencies, calls), flush=True)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
