"""F11: does an idle worker's memory grow with the backlog it is not running?

    python bench/memory_backlog.py                       # memory, sqlite, redis; both loops
    python bench/memory_backlog.py --backends sqlite,redis --large 20000 --loops trio

For each backend, each kind of backlog and each event loop, a worker runs **in a process of its
own** while N pending 1 KiB jobs wait in the store, and that process reports its RSS (VmRSS from
``/proc/self/status``, after ``--settle`` seconds of running and a ``gc.collect()``). N is
``--small`` (10^2) and then ``--large`` (10^5), each in a fresh store and a fresh process; the
script prints both RSS figures and the difference. Target (issue 12, F11): within 10 MiB.

Kinds of backlog (``--kinds``):

- ``scheduled``: jobs of the worker's own type, due in an hour (the worker looks for due jobs,
  finds none, and sleeps until the next due time or its poll interval);
- ``other-type``: jobs due now, of a type this worker does not run.

Backends: ``memory`` (the store lives in the worker's process, so its RSS holds the jobs
themselves: the target does not apply, the line is there for scale), ``sqlite`` (a new file in a
temp dir), ``redis`` (``--url``, else ``REDIS_URL`` if it answers, else a private redis-server
started on a free port; a random namespace, dropped afterwards), ``postgres`` (``--pg-url``,
else ``PG_URL``, else the local server on 127.0.0.1:5432; a schema per measurement, dropped
afterwards).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import anyio

from jdobb_async_queue import JobContext, JobQueue, Worker

PAYLOAD = {"blob": "x" * 1000}  # about 1 KiB of JSON per job
CHUNK = 1000  # jobs per enqueue_many call
TARGET_MIB = 10.0


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found["VmRSS"], found["VmHWM"]


def backlog_items(n: int, kind: str) -> list[dict[str, object]]:
    if kind == "scheduled":
        return [{"job_type": "work", "data": PAYLOAD, "delay": 3600.0}] * n
    return [{"job_type": "other", "data": PAYLOAD}] * n


async def fill(queue: JobQueue, n: int, kind: str) -> None:
    items = backlog_items(CHUNK, kind)
    left = n
    while left > 0:
        await queue.enqueue_many(items[: min(CHUNK, left)])
        left -= CHUNK


# -- the worker process -------------------------------------------------------------------------


async def child(args: argparse.Namespace) -> None:
    queue = JobQueue(backend=args.url, namespace=args.namespace)
    if args.url == "memory://" or args.url == "memory":
        await fill(queue, args.n, args.kind)  # the store is this process's own
    worker = Worker(queue, job_types=["work"], poll_interval=0.2, lease=30.0)

    @worker.handler("work")
    async def work(ctx: JobContext) -> None:
        raise AssertionError("an idle worker ran a job")

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await anyio.sleep(args.settle)  # the measurement window: the worker idles through it
        gc.collect()
        rss, peak = rss_kib()
        stats = await queue.stats()
        print(json.dumps({"rss_kib": rss, "hwm_kib": peak, "pending": stats.pending}), flush=True)
        await worker.stop()
    await queue.close()


def measure(url: str, namespace: str, n: int, kind: str, loop: str, settle: float) -> dict:
    command = [sys.executable, __file__, "--child", "--url", url, "--namespace", namespace,
               "--n", str(n), "--kind", kind, "--loop", loop, "--settle", str(settle)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"the worker process failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["pending"] != n:
        raise SystemExit(f"expected {n} pending jobs, the worker saw {result['pending']}")
    return result


# -- stores --------------------------------------------------------------------------------------


def answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), 0.5
        ) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class PrivateRedis:
    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis: no server at REDIS_URL and no redis-server on PATH")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.process = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while not answers(self.url):
            if time.monotonic() > deadline:
                raise SystemExit("the private redis-server did not start")
            time.sleep(0.05)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


async def prepare(url: str, namespace: str, n: int, kind: str) -> None:
    async with JobQueue(backend=url, namespace=namespace) as queue:
        await fill(queue, n, kind)


async def drop(url: str, namespace: str) -> None:
    async with JobQueue(backend=url, namespace=namespace) as queue:
        dropper = getattr(queue.backend, "drop_namespace", None)
        if dropper is not None:
            await dropper()


def run(args: argparse.Namespace) -> None:
    backends = args.backends.split(",")
    loops = args.loops.split(",")
    kinds = args.kinds.split(",")
    private: PrivateRedis | None = None
    tmp = Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    rows = []
    print(f"idle worker RSS with {args.small} vs {args.large} pending 1 KiB jobs "
          f"(settle {args.settle:g}s; target: within {TARGET_MIB:g} MiB)\n")  # fmt: skip
    header = f"{'backend':8} {'backlog':11} {'loop':8} {'RSS@' + str(args.small):>12} " \
             f"{'RSS@' + str(args.large):>12} {'diff MiB':>9}  verdict"  # fmt: skip
    print(header)
    print("-" * len(header))
    try:
        for backend in backends:
            url = "memory://"
            if backend == "sqlite":
                url = ""  # a fresh file per measurement
            elif backend == "redis":
                url = args.url or os.environ.get("REDIS_URL") or ""
                if not url or not answers(url):
                    private = private or PrivateRedis()
                    url = private.url
            elif backend == "postgres":
                url = args.pg_url
                try:
                    import psycopg

                    psycopg.connect(url, connect_timeout=2).close()
                except Exception as exc:  # no server, or no psycopg: say so, measure the rest
                    print(f"postgres: skipped ({type(exc).__name__}: {exc})".splitlines()[0])
                    continue
            for kind in kinds:
                for loop in loops:
                    figures = []
                    for n in (args.small, args.large):
                        namespace = f"bench-{uuid.uuid4().hex[:8]}"
                        where = url
                        if backend == "sqlite":
                            where = f"sqlite:///{tmp / (namespace + '.db')}"
                        if backend != "memory":
                            anyio.run(prepare, where, namespace, n, kind)
                        try:
                            figures.append(measure(where, namespace, n, kind, loop, args.settle))
                        finally:
                            if backend in ("redis", "postgres"):
                                anyio.run(drop, where, namespace)
                            elif backend == "sqlite":
                                for f in tmp.glob(namespace + ".db*"):
                                    f.unlink()
                    small, large = (f["rss_kib"] / 1024 for f in figures)
                    diff = large - small
                    verdict = "in-process store: n/a" if backend == "memory" else (
                        "ok" if diff <= TARGET_MIB else "OVER TARGET")  # fmt: skip
                    rows.append((backend, kind, loop, small, large, diff, verdict))
                    print(f"{backend:8} {kind:11} {loop:8} {small:9.1f} MiB {large:8.1f} MiB "
                          f"{diff:+9.1f}  {verdict}", flush=True)  # fmt: skip
    finally:
        if private is not None:
            private.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="memory,sqlite,redis,postgres")
    parser.add_argument("--kinds", default="scheduled,other-type")
    parser.add_argument("--loops", default="asyncio,trio")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds the worker idles first")
    parser.add_argument("--url", help="Redis URL (default: REDIS_URL, else a private server)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL URL (default: PG_URL, else the local server)",
    )
    # the worker process
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        anyio.run(child, args, backend=args.loop)
    else:
        run(args)


if __name__ == "__main__":
    main()
