"""jdobb-async-queue against its Redis peers (arq, SAQ, streaq): one workload, one redis-server.

For each library, in a subprocess of its own (so event-loop policies and imports cannot
interfere), on the same redis-server, with N no-op jobs:

1. enqueue/s  -- N sequential single-job enqueue calls from one producer task (after one
                 warm-up enqueue, which joins the backlog);
2. process/s  -- then one worker (concurrency 50, in the same process) processes the N+1 jobs:
                 (N+1) / (worker start -> the library's own count of completed jobs reaches N+1);
                 cpu us/job is this process's CPU over that phase, per job;
3. p50/p99 ms -- enqueue->start latency with an idle worker: one job at a time, from just before
                 the enqueue call to the first line of the handler, 200 samples (for arq, whose
                 worker polls every 0.5 s, the gap between samples is uniform over one period).

    # peers live in a separate venv; see bench/requirements-peers.txt and bench/README.md
    .venv-bench/bin/python bench/peers_redis.py                    # all, 10,000 jobs each
    .venv-bench/bin/python bench/peers_redis.py --jobs 2000 --libs saq,jdobb@trio
    .venv-bench/bin/python bench/peers_redis.py --libs arq@uvloop,saq@uvloop,streaq@trio
    REDIS_URL=redis://127.0.0.1:6379/0 .venv-bench/bin/python bench/peers_redis.py

A library is given as NAME or NAME@LOOP: NAME in arq, saq, streaq, jdobb; LOOP in asyncio
(default), uvloop, trio (trio only for streaq and jdobb, which are anyio-based).

Without REDIS_URL the script starts its own redis-server on a free port (no persistence) and
FLUSHALLs it between libraries. With REDIS_URL it never flushes: every key it writes carries a
random tag (queue name / namespace / job-id prefix) and only keys matching that tag are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

NAMES = ("arq", "saq", "streaq", "jdobb")
LOOPS = ("asyncio", "uvloop", "trio")
DEFAULT_LIBS = "arq,saq,streaq,jdobb@asyncio,jdobb@trio"
RESULT_MARK = "PEERS-RESULT "


# --------------------------------------------------------------------------------------------
# what a child reports


@dataclass
class Result:
    lib: str
    loop: str
    version: str = "?"
    enqueue_per_s: float = float("nan")
    process_per_s: float = float("nan")
    handler_per_s: float = float("nan")
    cpu_us_per_job: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    samples: int = 0
    processed: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str | None = None


# --------------------------------------------------------------------------------------------
# the child: one library, one event loop


class Probe:
    """What the no-op handlers do: count, and note when the latest one started."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self._target: int | None = None
        self._event: Any = None

    def hit(self) -> None:
        self.last = time.perf_counter()
        self.count += 1
        if self._target is not None and self.count >= self._target:
            self._target = None
            self._event.set()

    def expect(self, target: int) -> Any:
        """An event set once ``count`` reaches ``target`` (anyio.Event: any loop)."""
        import anyio

        self._event = anyio.Event()
        self._target = target
        if self.count >= target:
            self._target = None
            self._event.set()
        return self._event


@dataclass
class Config:
    url: str
    tag: str
    jobs: int
    concurrency: int
    samples: int
    latency_budget: float
    process_timeout: float
    seed: int


class Adapter:
    """One library behind the same five calls. ``poll_period`` is set for a worker that polls
    on a fixed period instead of being woken by new jobs (see ``measure``)."""

    version = "?"
    poll_period: float | None = None
    notes: list[str]

    def __init__(self, cfg: Config, probe: Probe) -> None:
        self.cfg = cfg
        self.probe = probe
        self.notes = []

    async def setup(self) -> None: ...
    async def enqueue(self) -> None: ...
    async def start_worker(self, tg: Any) -> None: ...
    async def stop_worker(self) -> None: ...
    async def teardown(self) -> None: ...

    async def completed(self) -> int:
        """How many jobs the library itself counts as completed."""
        raise NotImplementedError


class ArqAdapter(Adapter):
    async def setup(self) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings
        from arq.version import VERSION
        from arq.worker import Worker, func

        self.version = VERSION
        probe = self.probe

        async def noop(ctx: dict[str, Any]) -> None:
            probe.hit()

        self.done = 0

        async def after_job_end(ctx: dict[str, Any]) -> None:
            self.done += 1  # arq calls this once finish_job has written the outcome

        self.queue_name = f"{self.cfg.tag}:arq:queue"
        settings = RedisSettings.from_dsn(self.cfg.url)
        self.pool = await create_pool(settings, default_queue_name=self.queue_name)
        # The worker makes its own pool from the settings, as `arq` deployments do.
        self.worker = Worker(
            functions=[func(noop, name="noop")],
            queue_name=self.queue_name,
            redis_settings=settings,
            max_jobs=self.cfg.concurrency,
            handle_signals=False,
            after_job_end=after_job_end,
        )
        self.poll_period = self.worker.poll_delay_s
        self.notes.append(f"worker polls every poll_delay={self.poll_period:g}s (default)")

    async def enqueue(self) -> None:
        # A job id with the run's tag, so that a shared server can be cleaned by pattern.
        await self.pool.enqueue_job("noop", _job_id=f"{self.cfg.tag}-{uuid.uuid4().hex}")

    async def start_worker(self, tg: Any) -> None:
        import asyncio

        self.task = asyncio.ensure_future(self.worker.async_run())

    async def stop_worker(self) -> None:
        import asyncio

        await self.worker.close()  # handle_signals=False: cancels the main task, then closes
        try:
            await self.task
        except asyncio.CancelledError:
            pass

    async def teardown(self) -> None:
        await self.pool.aclose()

    async def completed(self) -> int:
        return self.done


class SaqAdapter(Adapter):
    async def setup(self) -> None:
        import saq
        from saq import Queue, Worker

        self.version = saq.__version__
        probe = self.probe

        async def noop(ctx: dict[str, Any]) -> None:
            probe.hit()

        self.queue = Queue.from_url(self.cfg.url, name=self.cfg.tag)
        await self.queue.connect()
        self.worker = Worker(
            self.queue, functions=[("noop", noop)], concurrency=self.cfg.concurrency
        )

    async def enqueue(self) -> None:
        await self.queue.enqueue("noop")

    async def start_worker(self, tg: Any) -> None:
        import asyncio

        self.task = asyncio.ensure_future(self.worker.start())

    async def stop_worker(self) -> None:
        import asyncio

        await self.worker.stop()
        try:
            await asyncio.wait_for(self.task, 10)
        except asyncio.CancelledError:
            pass

    async def teardown(self) -> None:
        await self.queue.disconnect()

    async def completed(self) -> int:
        return int(self.queue.complete)  # counted after Queue.finish wrote the outcome


class StreaqAdapter(Adapter):
    async def setup(self) -> None:
        import streaq
        from streaq import Worker

        self.version = streaq.__version__
        probe = self.probe

        def make(concurrency: int) -> tuple[Any, Any]:
            w = Worker(
                redis_url=self.cfg.url,
                queue_name=self.cfg.tag,
                concurrency=concurrency,
                handle_signals=False,
            )

            @w.task(name="noop")
            async def noop() -> None:
                probe.hit()

            return w, noop

        # Two instances, as two processes would have: a Worker object cannot be entered twice,
        # and the producer side of streaq is `async with worker: await task.enqueue()`.
        self.producer, self.task = make(self.cfg.concurrency)
        self.worker, _ = make(self.cfg.concurrency)
        await self.producer.__aenter__()

    async def enqueue(self) -> None:
        await self.task.enqueue()

    async def start_worker(self, tg: Any) -> None:
        import anyio

        self.scope = anyio.CancelScope()

        async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            try:
                with self.scope:
                    await self.worker.run_async(task_status=task_status)
            except Exception as e:  # figures are taken by then; say so rather than fail
                self.notes.append(f"worker shutdown raised {type(e).__name__}")

        await tg.start(run)

    async def stop_worker(self) -> None:
        self.scope.cancel()

    async def teardown(self) -> None:
        await self.producer.__aexit__(None, None, None)

    async def completed(self) -> int:
        # counted as the finishing pipeline is built, just before it is sent
        return int(self.worker.counters["completed"])


class JdobbAdapter(Adapter):
    async def setup(self) -> None:
        from importlib.metadata import version

        import jdobb_async_queue.backends.redis  # noqa: F401  (fail early and clearly)
        from jdobb_async_queue import JobContext, JobQueue, Worker

        self.version = version("jdobb-async-queue")
        probe = self.probe
        self.queue = JobQueue(backend="redis", url=self.cfg.url, namespace=self.cfg.tag)
        self.worker = Worker(self.queue, max_concurrent=self.cfg.concurrency)

        @self.worker.handler("noop")
        async def noop(ctx: JobContext) -> None:
            probe.hit()

    async def enqueue(self) -> None:
        await self.queue.enqueue("noop")

    async def start_worker(self, tg: Any) -> None:
        tg.start_soon(self.worker.run)

    async def stop_worker(self) -> None:
        await self.worker.stop()

    async def teardown(self) -> None:
        drop = getattr(self.queue.backend, "drop_namespace", None)
        if drop is not None:
            await drop()
        await self.queue.close()

    async def completed(self) -> int:
        return (await self.queue.stats()).complete  # read back from Redis


ADAPTERS: dict[str, type[Adapter]] = {
    "arq": ArqAdapter,
    "saq": SaqAdapter,
    "streaq": StreaqAdapter,
    "jdobb": JdobbAdapter,
}


async def measure(name: str, loop: str, cfg: Config) -> Result:
    import anyio

    probe = Probe()
    ad = ADAPTERS[name](cfg, probe)
    res = Result(lib=name, loop=loop)
    rng = random.Random(cfg.seed)
    perf = time.perf_counter
    began = perf()
    await ad.setup()
    res.version = ad.version
    try:
        await ad.enqueue()  # warm-up: connections, script loading; part of the backlog
        t0 = perf()
        for _ in range(cfg.jobs):
            await ad.enqueue()
        res.enqueue_per_s = cfg.jobs / (perf() - t0)

        backlog = cfg.jobs + 1
        done = probe.expect(backlog)
        async with anyio.create_task_group() as tg:
            t2, c2 = perf(), time.process_time()
            await ad.start_worker(tg)
            with anyio.move_on_after(cfg.process_timeout) as timeout:
                await done.wait()
                # "done" is the library's own count of completed jobs, not the handler's return
                while await ad.completed() < backlog:
                    await anyio.sleep(0.002)
            t3, c3 = perf(), time.process_time()
            res.processed = probe.count
            if not timeout.cancelled_caught:
                res.process_per_s = backlog / (t3 - t2)
                res.handler_per_s = backlog / (probe.last - t2)
                res.cpu_us_per_job = (c3 - c2) / backlog * 1e6
            else:
                res.notes.append(
                    f"only {probe.count}/{backlog} handlers started "
                    f"({await ad.completed()} completed) in "
                    f"{cfg.process_timeout:g}s"
                )

            lat: list[float] = []
            deadline = perf() + cfg.latency_budget
            for _ in range(0 if timeout.cancelled_caught else cfg.samples):
                if perf() > deadline:
                    res.notes.append(
                        f"latency budget {cfg.latency_budget:g}s ran out after {len(lat)} samples"
                    )
                    break
                # Let the worker go idle. A fixed-period poller would be phase-locked to this
                # loop (each job starts on a poll, the next one is enqueued just after it, so
                # every sample would wait a whole period): for it the gap is uniform over one
                # period, which costs no extra time and gives arrival-phase-uniform figures.
                gap = (
                    rng.uniform(0, ad.poll_period) if ad.poll_period else rng.uniform(0.005, 0.010)
                )
                await anyio.sleep(gap)
                started = probe.expect(probe.count + 1)
                t = perf()
                await ad.enqueue()
                with anyio.move_on_after(10) as scope:
                    await started.wait()
                if scope.cancelled_caught:
                    res.notes.append("a latency sample timed out after 10s")
                    break
                lat.append((probe.last - t) * 1000)
            await anyio.sleep(0.3)  # let the last job's bookkeeping finish before stopping
            await ad.stop_worker()
        if lat:
            lat.sort()
            res.samples = len(lat)
            res.p50_ms = statistics.median(lat)
            res.p99_ms = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    finally:
        await ad.teardown()  # not in a scope of its own: streaq's producer exits its context here
    res.seconds = perf() - began
    res.notes[:0] = ad.notes
    return res


def run_child(spec: str, cfg: Config) -> None:
    import anyio

    name, loop = parse_spec(spec)
    if loop == "uvloop":
        res = anyio.run(
            measure, name, loop, cfg, backend="asyncio", backend_options={"use_uvloop": True}
        )
    else:
        res = anyio.run(measure, name, loop, cfg, backend=loop)
    print(RESULT_MARK + json.dumps(asdict(res)), flush=True)


# --------------------------------------------------------------------------------------------
# the parent: the server, one subprocess per library, the table


def parse_spec(spec: str) -> tuple[str, str]:
    name, _, loop = spec.strip().partition("@")
    loop = loop or "asyncio"
    if name not in NAMES:
        raise SystemExit(f"unknown library {name!r}: use one of {', '.join(NAMES)}")
    if loop not in LOOPS:
        raise SystemExit(f"unknown loop {loop!r}: use one of {', '.join(LOOPS)}")
    if loop == "trio" and name in ("arq", "saq"):
        raise SystemExit(f"{name} runs on asyncio only")
    return name, loop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Resp:
    """Just enough of a synchronous Redis client for PING, FLUSHALL, INFO, SCAN and UNLINK."""

    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        if u.scheme not in ("redis", ""):
            raise SystemExit(f"this script's own client speaks redis:// only, not {url!r}")
        self.sock = socket.create_connection(
            (u.hostname or "127.0.0.1", u.port or 6379), timeout=30
        )
        self.buf = self.sock.makefile("rb")
        if u.password:
            args = (
                [unquote(u.username), unquote(u.password)] if u.username else [unquote(u.password)]
            )
            self.call("AUTH", *args)
        db = (u.path or "/0").lstrip("/") or "0"
        self.call("SELECT", db)

    def call(self, *args: str | bytes) -> Any:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode() if isinstance(a, str) else a
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self) -> Any:
        line = self.buf.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.buf.read(n + 2)[:-2]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def delete_matching(self, pattern: str) -> int:
        cursor, n = b"0", 0
        while True:
            cursor, keys = self.call("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            if keys:
                n += self.call("UNLINK", *keys)
            if cursor in (b"0", "0"):
                return n

    def close(self) -> None:
        self.sock.close()


class OwnServer:
    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit(
                "redis-server is not on PATH (apt-get install redis-server), or set REDIS_URL"
            )
        self.dir = tempfile.mkdtemp(prefix="peers-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                Resp(self.url).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_one(spec: str, args: argparse.Namespace, url: str, tag: str) -> Result:
    name, loop = parse_spec(spec)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--only",
        spec,
        "--url",
        url,
        "--tag",
        tag,
        "--jobs",
        str(args.jobs),
        "--concurrency",
        str(args.concurrency),
        "--samples",
        str(args.samples),
        "--latency-budget",
        str(args.latency_budget),
        "--process-timeout",
        str(args.process_timeout),
        "--seed",
        str(args.seed),
    ]
    try:
        p = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=args.child_timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return Result(lib=name, loop=loop, error=f"timed out after {args.child_timeout:g}s")
    for line in p.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            res = Result(**json.loads(line[len(RESULT_MARK) :]))
            if p.stderr.strip() and args.verbose:
                print(p.stderr, file=sys.stderr)
            return res
    err = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
    if args.verbose:
        print(p.stderr, file=sys.stderr)
    return Result(lib=name, loop=loop, error=err)


def combine(runs: list[Result]) -> Result:
    """Several runs of one library: the median of each figure (failed runs left out)."""
    ok = [r for r in runs if not r.error]
    if not ok:
        return runs[-1]
    out = Result(**asdict(ok[0]))
    for name in (
        "enqueue_per_s",
        "process_per_s",
        "handler_per_s",
        "cpu_us_per_job",
        "p50_ms",
        "p99_ms",
        "seconds",
    ):
        values = [getattr(r, name) for r in ok if getattr(r, name) == getattr(r, name)]
        setattr(out, name, statistics.median(values) if values else float("nan"))
    out.samples = min(r.samples for r in ok)
    out.notes = list(dict.fromkeys(n for r in runs for n in r.notes))
    if len(runs) > 1:
        spread = [f"{r.process_per_s:,.0f}" for r in ok]
        out.notes.append(f"median of {len(ok)}/{len(runs)} runs; process/s: {', '.join(spread)}")
    return out


def fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)  # NaN -> "-"


def report(results: list[Result], args: argparse.Namespace, server: str) -> None:
    print()
    print(
        f"jobs={args.jobs} concurrency={args.concurrency} latency samples={args.samples} "
        f"repeat={args.repeat} python={sys.version.split()[0]} redis={server}"
    )
    head = (
        f"{'library':8} {'loop':8} {'version':8} {'enqueue/s':>10} {'process/s':>10} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'n':>4} {'cpu us/job':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        if r.error:
            print(f"{r.lib:8} {r.loop:8} {r.version:8} failed: {r.error}")
            continue
        print(
            f"{r.lib:8} {r.loop:8} {r.version:8} {fmt(r.enqueue_per_s, '10,.0f')} "
            f"{fmt(r.process_per_s, '10,.0f')} {fmt(r.p50_ms, '8.2f')} "
            f"{fmt(r.p99_ms, '8.2f')} {r.samples:4d} {fmt(r.cpu_us_per_job, '10,.0f')}"
        )
    notes = [(r, n) for r in results for n in r.notes]
    for r, n in notes:
        print(f"  note {r.lib}/{r.loop}: {n}")

    ok = [r for r in results if not r.error and r.process_per_s == r.process_per_s]
    peers = [r for r in ok if r.lib != "jdobb"]
    ours = [r for r in ok if r.lib == "jdobb"]
    if not peers or not ours:
        missing = "jdobb" if not ours else "any peer"
        print(f"jdobb processing vs fastest peer: n/a (no result for {missing})")
        return
    best = max(peers, key=lambda r: r.process_per_s)
    per_loop = ", ".join(f"{r.loop} {r.process_per_s / best.process_per_s:.1f}x" for r in ours)
    top = max(ours, key=lambda r: r.process_per_s)
    print(
        f"jdobb processing vs fastest peer: {top.process_per_s / best.process_per_s:.1f}x "
        f"(jdobb/{top.loop} {top.process_per_s:,.0f}/s vs {best.lib}/{best.loop} "
        f"{best.process_per_s:,.0f}/s; per loop: {per_loop})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--libs",
        default=DEFAULT_LIBS,
        help=f"comma-separated NAME[@LOOP] list (default {DEFAULT_LIBS})",
    )
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--samples", type=int, default=200, help="idle-latency samples")
    ap.add_argument(
        "--latency-budget",
        type=float,
        default=110.0,
        help="stop taking latency samples after this many seconds (per library)",
    )
    ap.add_argument(
        "--process-timeout",
        type=float,
        default=120.0,
        help="give up waiting for the backlog after this many seconds",
    )
    ap.add_argument("--child-timeout", type=float, default=300.0)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every library this many times, round-robin; report medians",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the children's stderr")
    # internal: the child's side
    ap.add_argument("--only", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--tag", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.only:
        run_child(
            args.only,
            Config(
                url=args.url,
                tag=args.tag,
                jobs=args.jobs,
                concurrency=args.concurrency,
                samples=args.samples,
                latency_budget=args.latency_budget,
                process_timeout=args.process_timeout,
                seed=args.seed,
            ),
        )
        return

    specs = [s for s in args.libs.split(",") if s.strip()]
    for s in specs:
        parse_spec(s)
    external = os.environ.get("REDIS_URL") or None
    server = None if external else OwnServer()
    url = external or server.url  # type: ignore[union-attr]
    run_id = uuid.uuid4().hex[:10]
    runs: dict[str, list[Result]] = {spec: [] for spec in specs}
    try:
        client = Resp(url)
        info = client.call("INFO", "server").decode()
        redis_version = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in info.splitlines()
                if ln.startswith("redis_version:")
            ),
            "?",
        )
        where = f"{redis_version} {'own server ' + url if server else 'REDIS_URL (shared)'}"
        print(f"peers_redis: {len(specs)} libraries on redis {where}", file=sys.stderr)
        for round_ in range(args.repeat):
            for spec in specs:
                name, loop = parse_spec(spec)
                tag = f"pb{run_id}r{round_}{name}{loop}"
                if server:
                    client.call("FLUSHALL")
                print(f"  {name}/{loop} ...", end="", flush=True, file=sys.stderr)
                res = run_one(spec, args, url, tag)
                if not server:
                    client.delete_matching(f"*{tag}*")
                print(
                    f" {res.seconds:.0f}s" + (f" FAILED: {res.error}" if res.error else ""),
                    file=sys.stderr,
                )
                runs[spec].append(res)
        client.close()
    finally:
        if server:
            server.close()
    results = [combine(r) for r in runs.values()]
    report(results, args, where)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
