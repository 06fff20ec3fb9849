"""The Redis backend against a bare Redis list, producer and worker in separate processes.

Three figures, each for this library and a bare baseline in the same run, under asyncio and trio:

1. **idle latency** -- enqueue->start with an idle worker, one job at a time: the producer reads
   ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process of the host), enqueues a
   job carrying it, and the handler's first line reads the clock again. The worker (its own
   process) pushes the difference to a results list, which the producer waits on (BLPOP) before
   the next sample, after an idle gap of 2-4 ms. The baseline: ``RPUSH`` into a list that a
   consumer waits on with ``BLPOP``.
2. **processing** -- a backlog of N jobs (loaded first), drained by one worker process:
   ``Worker(max_concurrent=50)``, against 50 bare consumers (each ``BLPOP`` on a connection of
   its own). Every handler does the same work: one ``INCR`` on a counter through the library's
   own RESP client (one per process), the last one sets the "done" event. Jobs/s is N / (worker
   start -> the N-th INCR); "cpu us/job" is the worker process's CPU over that time.
3. **enqueue** -- sequential single-call ``enqueue`` from one task against ``RPUSH`` on one bare
   connection (anyio stream + hiredis).

Where huey is installed (this interpreter, or ``.venv-bench/`` at the repository's root), its
``RedisHuey`` runs 1 and 3 in the same run as a peer: a task call from a plain (blocking)
producer, and a consumer with one worker thread, whose task does what the handler does (pushes
its own enqueue->start time). Its row is marked ``sync``.

    python bench/redis_latency.py                         # both loops, 2 rounds
    python bench/redis_latency.py --loops trio --rounds 3 --samples 500
    python bench/redis_latency.py --profile /tmp/prof     # cProfile of every jdobb child

Starts its own redis-server on a free port (no persistence) unless ``REDIS_URL`` is set; keys
live under a random tag and are deleted at the end either way. Each cell is a child process of
its own (``--role``): the numbers of one round come from the same server and the same machine
state, so compare within a run, never across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
import hiredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_roundtrip import redis_server

try:
    import jdobb_async_queue  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from jdobb_async_queue import JobContext, JobQueue, Worker
from jdobb_async_queue.backends.redis.resp import RedisAddress, RedisClient

RESULT_MARK = "LATENCY-RESULT "
KINDS = ("bare", "jdobb")
PEERS = ("huey",)  # blocking libraries: run on no event loop, in .venv-bench if need be
ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 50
_pack: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command


# --- a bare connection: an anyio stream and hiredis, nothing else ---------------------------


class Bare:
    """One connection, one command at a time (the floor a client library is measured against)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.reader = hiredis.Reader()

    async def call(self, *args: Any) -> Any:
        await self.stream.send(_pack(args))
        reply = self.reader.gets()
        while reply is False:
            self.reader.feed(await self.stream.receive(65536))
            reply = self.reader.gets()
        if isinstance(reply, Exception):
            raise reply
        return reply


@contextlib.asynccontextmanager
async def bare(address: RedisAddress) -> AsyncIterator[Bare]:
    assert address.host is not None
    async with await anyio.connect_tcp(address.host, address.port) as stream:
        conn = Bare(stream)
        if address.password is not None:
            user = () if address.username is None else (address.username,)
            await conn.call("AUTH", *user, address.password)
        if address.db:
            await conn.call("SELECT", address.db)
        yield conn


# --- the children ----------------------------------------------------------------------------


@dataclass
class Cell:
    """What a child is to do."""

    role: str
    kind: str
    loop: str
    address: RedisAddress
    tag: str
    jobs: int
    samples: int
    profile: str | None

    def key(self, name: str) -> str:
        return f"bench:{{{self.tag}}}:{name}"

    def queue(self) -> JobQueue:
        a = self.address
        auth = "" if a.password is None else f"{a.username or ''}:{a.password}@"
        url = f"redis://{auth}{a.host}:{a.port}/{a.db}"
        return JobQueue(backend="redis", url=url, namespace=self.tag)


async def latency_worker(cell: Cell) -> dict[str, Any]:
    """Run jobs until told to stop; each pushes its own enqueue->start time to the results."""
    results, stop_key = cell.key("results"), cell.key("stop")
    async with RedisClient(cell.address) as client, bare(cell.address) as conn:
        if cell.kind == "bare":
            while True:
                key, value = await conn.call("BLPOP", cell.key("list"), stop_key, 0)
                started = time.monotonic()
                if key.decode() == stop_key:
                    return {}
                await client.execute("RPUSH", results, repr(started - float(value)))
        queue = cell.queue()
        worker = Worker(queue, max_concurrent=CONCURRENCY, poll_interval=5.0)

        @worker.handler("latency")
        async def handler(ctx: JobContext) -> None:
            started = time.monotonic()
            await client.execute("RPUSH", results, repr(started - ctx.data["t0"]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await conn.call("BLPOP", stop_key, 0)
            await worker.stop()
        await queue.close()
    return {}


async def latency_producer(cell: Cell) -> dict[str, Any]:
    """Enqueue one job at a time to an idle worker; collect enqueue->start times."""
    warmup = 20
    out: list[float] = []
    async with bare(cell.address) as conn, bare(cell.address) as waiter:
        queue = cell.queue()
        for i in range(warmup + cell.samples):
            await anyio.sleep(0.002 + random.random() * 0.002)  # the worker is idle again
            t0 = time.monotonic()
            if cell.kind == "bare":
                await conn.call("RPUSH", cell.key("list"), repr(t0))
            else:
                await queue.enqueue("latency", {"t0": t0})
            reply = await waiter.call("BLPOP", cell.key("results"), 10)
            if reply is None:
                raise RuntimeError("no job started within 10 s")
            if i >= warmup:
                out.append(float(reply[1]) * 1000)
        await conn.call("RPUSH", cell.key("stop"), "1")
        await queue.close()
    return _percentiles(out)


def _percentiles(out: list[float]) -> dict[str, float]:
    out = sorted(out)
    return {
        "p50_ms": out[len(out) // 2],
        "p99_ms": out[min(len(out) - 1, int(len(out) * 0.99))],
        "mean_ms": statistics.fmean(out),
    }


async def fill(cell: Cell) -> dict[str, Any]:
    """Load the backlog: N jobs (or list items), in chunks of 1,000."""
    chunk = 1000
    if cell.kind == "bare":
        async with bare(cell.address) as conn:
            for start in range(0, cell.jobs, chunk):
                items = [f'{{"i":{i}}}' for i in range(start, min(start + chunk, cell.jobs))]
                await conn.call("RPUSH", cell.key("list"), *items)
        return {}
    queue = cell.queue()
    for start in range(0, cell.jobs, chunk):
        stop = min(start + chunk, cell.jobs)
        await queue.enqueue_many({"job_type": "work", "data": {"i": i}} for i in range(start, stop))
    await queue.close()
    return {}


async def process(cell: Cell) -> dict[str, Any]:
    """Drain the backlog: every handler does one INCR, the N-th sets ``done``."""
    n, counter, done = cell.jobs, cell.key("counter"), anyio.Event()
    async with RedisClient(cell.address) as client:
        server_cpu = await _server_cpu(client)

        async def work() -> None:
            if await client.execute("INCR", counter) == n:
                done.set()

        if cell.kind == "bare":

            async def consumer() -> None:
                async with bare(cell.address) as conn:
                    while not done.is_set():
                        if await conn.call("BLPOP", cell.key("list"), 0.2) is not None:
                            await work()

            cpu, start = time.process_time(), time.perf_counter()
            with anyio.fail_after(300):
                async with anyio.create_task_group() as tg:
                    for _ in range(CONCURRENCY):
                        tg.start_soon(consumer)
                    await done.wait()
                    end = time.perf_counter()
                    cpu = time.process_time() - cpu
        else:
            queue = cell.queue()
            worker = Worker(queue, max_concurrent=CONCURRENCY, poll_interval=5.0)

            @worker.handler("work")
            async def handler(ctx: JobContext) -> None:
                await work()

            cpu, start = time.process_time(), time.perf_counter()
            with anyio.fail_after(300):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(worker.run)
                    await done.wait()
                    end = time.perf_counter()
                    cpu = time.process_time() - cpu
                    await worker.stop()
            await queue.close()
        server_cpu = await _server_cpu(client) - server_cpu
    return {"per_s": n / (end - start), "cpu_us": cpu / n * 1e6, "server_us": server_cpu / n * 1e6}


async def _server_cpu(client: RedisClient) -> float:
    """The server's CPU seconds so far (main thread: where commands and scripts run)."""
    info = (await client.execute("INFO", "cpu")).decode()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return float(fields["used_cpu_user_main_thread"]) + float(fields["used_cpu_sys_main_thread"])


async def enqueue(cell: Cell) -> dict[str, Any]:
    """Sequential single-call enqueues (after a warm-up of 200)."""
    n = cell.jobs
    if cell.kind == "bare":
        async with bare(cell.address) as conn:
            key = cell.key("enq")
            for i in range(200):
                await conn.call("RPUSH", key, f'{{"i":{i}}}')
            start = time.perf_counter()
            for i in range(n):
                await conn.call("RPUSH", key, f'{{"i":{i}}}')
            return {"per_s": n / (time.perf_counter() - start)}
    queue = cell.queue()
    for i in range(200):
        await queue.enqueue("enq", {"i": i})
    start = time.perf_counter()
    for i in range(n):
        await queue.enqueue("enq", {"i": i})
    rate = n / (time.perf_counter() - start)
    await queue.close()
    return {"per_s": rate}


ROLES = {
    "latency-worker": latency_worker,
    "latency-producer": latency_producer,
    "fill": fill,
    "process": process,
    "enqueue": enqueue,
}


# --- huey, a peer: blocking producer, consumer with one worker thread ---------------------------


def huey_app(cell: Cell) -> Any:
    """A RedisHuey in this cell's tag, with the task the latency worker runs."""
    import redis
    from huey import RedisHuey

    a = cell.address
    app = RedisHuey(cell.tag, host=a.host, port=a.port, db=a.db, password=a.password, results=False)
    results = redis.Redis(host=a.host, port=a.port, db=a.db, password=a.password)

    @app.task(name="latency")
    def latency(t0: float) -> None:
        started = time.monotonic()
        results.rpush(cell.key("results"), repr(started - t0))

    @app.task(name="enq")
    def enq(i: int) -> None:
        pass

    return app, latency, enq, results


def huey_latency_worker(cell: Cell) -> dict[str, Any]:
    import signal
    import threading

    app, _, _, results = huey_app(cell)

    def stop_when_told() -> None:
        results.blpop([cell.key("stop")], timeout=0)
        os.kill(os.getpid(), signal.SIGINT)  # huey's graceful stop

    threading.Thread(target=stop_when_told, daemon=True).start()
    app.create_consumer(workers=1, worker_type="thread", periodic=False).run()
    return {}


def huey_latency_producer(cell: Cell) -> dict[str, Any]:
    _, latency, _, results = huey_app(cell)
    warmup, out = 20, []
    for i in range(warmup + cell.samples):
        time.sleep(0.002 + random.random() * 0.002)
        latency(time.monotonic())
        reply = results.blpop([cell.key("results")], timeout=10)
        if reply is None:
            raise RuntimeError("no task started within 10 s")
        if i >= warmup:
            out.append(float(reply[1]) * 1000)
    results.rpush(cell.key("stop"), "1")
    return _percentiles(out)


def huey_enqueue(cell: Cell) -> dict[str, Any]:
    app, _, enq, _ = huey_app(cell)
    for i in range(200):
        enq(i)
    start = time.perf_counter()
    for i in range(cell.jobs):
        enq(i)
    rate = cell.jobs / (time.perf_counter() - start)
    app.flush()
    return {"per_s": rate}


PEER_ROLES: dict[str, Callable[[Cell], dict[str, Any]]] = {
    "latency-worker": huey_latency_worker,
    "latency-producer": huey_latency_producer,
    "enqueue": huey_enqueue,
}


def peer_python() -> str | None:
    """An interpreter that has huey: this one, or the one of ``.venv-bench``."""
    try:
        import huey  # noqa: F401
    except ImportError:
        bench = ROOT / ".venv-bench" / "bin" / "python"
        if not bench.exists():
            return None
        check = subprocess.run([bench, "-c", "import huey, redis"], capture_output=True)
        return str(bench) if check.returncode == 0 else None
    return sys.executable


def child(cell: Cell) -> None:
    if cell.kind in PEERS:
        print(RESULT_MARK + json.dumps(PEER_ROLES[cell.role](cell)), flush=True)
        return
    profiler = cProfile.Profile() if cell.profile and cell.kind == "jdobb" else None
    if profiler is not None:
        profiler.enable()
    result = anyio.run(ROLES[cell.role], cell, backend=cell.loop)
    if profiler is not None:
        profiler.disable()
        Path(cell.profile or ".").mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(Path(cell.profile or ".") / f"{cell.role}-{cell.loop}.prof")
    print(RESULT_MARK + json.dumps(result), flush=True)


# --- the parent ------------------------------------------------------------------------------


def spawn(
    args: argparse.Namespace, role: str, kind: str, loop: str, **extra: Any
) -> subprocess.Popen[str]:
    options = {"jobs": args.jobs, "samples": args.samples, **extra}
    argv = [
        args.peer_python if kind in PEERS else sys.executable,
        __file__,
        "--role",
        role,
        "--kind",
        kind,
        "--loop",
        loop,
        "--address",
        json.dumps(asdict(args.address)),
        "--tag",
        args.tag,
    ]
    for name, value in options.items():
        argv += [f"--{name}", str(value)]
    if args.profile:
        argv += ["--profile", args.profile]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def result_of(proc: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"a child failed ({proc.args[3]}, exit {proc.returncode})")
    for line in out.splitlines():
        if line.startswith(RESULT_MARK):
            return dict(json.loads(line[len(RESULT_MARK) :]))
    raise RuntimeError("a child printed no result")


def clean(address: RedisAddress, tag: str) -> None:
    async def drop() -> None:
        async with bare(address) as conn:
            huey = "".join(c for c in tag if c.isalnum())  # how huey spells the name
            for pattern in (f"bench:{{{tag}}}:*", f"jdobb:{{{tag}}}:*", f"huey.*{huey}*"):
                cursor = b"0"
                while True:
                    cursor, keys = await conn.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
                    if keys:
                        await conn.call("UNLINK", *keys)
                    if cursor == b"0":
                        break

    anyio.run(drop)


def one_round(args: argparse.Namespace) -> dict[tuple[str, str, str], dict[str, Any]]:
    got: dict[tuple[str, str, str], dict[str, Any]] = {}
    parts = args.parts.split(",")
    if args.peer_python:  # blocking: one row, whatever the loop
        for role, part in (("latency", "latency"), ("enqueue", "enqueue")):
            if part not in parts:
                continue
            clean(args.address, args.tag)
            if role == "latency":
                worker = spawn(args, "latency-worker", "huey", "sync")
                got["latency", "sync", "huey"] = result_of(
                    spawn(args, "latency-producer", "huey", "sync")
                )
                result_of(worker)
            else:
                got["enqueue", "sync", "huey"] = result_of(
                    spawn(args, "enqueue", "huey", "sync", jobs=args.enqueues)
                )
    for loop in args.loops.split(","):
        for kind in KINDS if "latency" in parts else ():
            clean(args.address, args.tag)
            worker = spawn(args, "latency-worker", kind, loop)
            producer = spawn(args, "latency-producer", kind, loop)
            got["latency", loop, kind] = result_of(producer)
            result_of(worker)
        for kind in KINDS if "process" in parts else ():
            clean(args.address, args.tag)
            result_of(spawn(args, "fill", kind, "asyncio"))
            got["process", loop, kind] = result_of(spawn(args, "process", kind, loop))
        for kind in KINDS if "enqueue" in parts else ():
            clean(args.address, args.tag)
            got["enqueue", loop, kind] = result_of(
                spawn(args, "enqueue", kind, loop, jobs=args.enqueues)
            )
    clean(args.address, args.tag)
    return got


def report(
    rounds: list[dict[tuple[str, str, str], dict[str, Any]]], args: argparse.Namespace
) -> None:
    def span(values: list[float], spec: str) -> str:
        if not values:
            return "-"
        lo, hi = min(values), max(values)
        if format(lo, spec) == format(hi, spec):
            return format(lo, spec)
        return f"{format(lo, spec)}-{format(hi, spec)}"

    def cells(what: str, loop: str, kind: str, field: str) -> list[float]:
        return [r[what, loop, kind][field] for r in rounds if (what, loop, kind) in r]

    def ratio(what: str, loop: str) -> str:
        ours = cells(what, loop, "jdobb", "per_s")
        bare = cells(what, loop, "bare", "per_s")
        if not ours:
            return ""
        return span([a / b * 100 for a, b in zip(ours, bare, strict=True)], ".0f") + "%"

    print(
        f"Python {sys.version.split()[0]}, {len(rounds)} round(s), {args.samples} idle samples, "
        f"{args.jobs:,} jobs backlog, {args.enqueues:,} enqueues; ranges over rounds"
    )
    print(
        f"{'loop':8} {'kind':6} | {'idle p50 ms':>11} {'idle p99 ms':>11} | {'process/s':>13} "
        f"{'cpu us/job':>10} {'redis us':>8} {'vs bare':>9} | {'enqueue/s':>13} {'vs bare':>9}"
    )
    rows = [(loop, kind) for loop in args.loops.split(",") for kind in KINDS]
    if args.peer_python:
        rows += [("sync", peer) for peer in PEERS]
    for loop, kind in rows:
        mine = kind == "jdobb"
        print(
            f"{loop:8} {kind:6} | {span(cells('latency', loop, kind, 'p50_ms'), '.2f'):>11} "
            f"{span(cells('latency', loop, kind, 'p99_ms'), '.2f'):>11} | "
            f"{span(cells('process', loop, kind, 'per_s'), ',.0f'):>13} "
            f"{span(cells('process', loop, kind, 'cpu_us'), '.0f'):>10} "
            f"{span(cells('process', loop, kind, 'server_us'), '.0f'):>8} "
            f"{ratio('process', loop) if mine else '':>9} | "
            f"{span(cells('enqueue', loop, kind, 'per_s'), ',.0f'):>13} "
            f"{ratio('enqueue', loop) if mine else '':>9}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loops", default="asyncio,trio")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--parts", default="latency,process,enqueue", help="which figures (default: all three)"
    )
    parser.add_argument("--samples", type=int, default=300, help="idle latency samples")
    parser.add_argument("--jobs", type=int, default=10_000, help="backlog to process")
    parser.add_argument("--enqueues", type=int, default=5_000, help="single-call enqueues")
    parser.add_argument("--no-peers", action="store_true", help="leave huey out")
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="write a cProfile of every jdobb child into DIR",
    )
    # for the children
    parser.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=KINDS + PEERS, help=argparse.SUPPRESS)
    parser.add_argument("--loop", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        address = RedisAddress(**json.loads(args.address))
        child(
            Cell(
                args.role,
                args.kind,
                args.loop,
                address,
                args.tag,
                args.jobs,
                args.samples,
                args.profile,
            )
        )
        return
    started = time.perf_counter()
    args.tag = f"lat-{uuid.uuid4().hex[:8]}"
    args.peer_python = None if args.no_peers else peer_python()
    with redis_server() as address:
        args.address = address
        try:
            rounds = [one_round(args) for _ in range(args.rounds)]
        finally:
            with contextlib.suppress(OSError):
                clean(address, args.tag)
    report(rounds, args)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
