"""jdobb-async-queue beside bare baselines and its peers, per store, in one run, under one rule set.

    # the peers live in a venv of their own (bench/README.md):
    python3.11 -m venv .venv-bench
    .venv-bench/bin/pip install -r bench/requirements-peers.txt -e .
    .venv-bench/bin/python bench/compare.py                          # the default set, ~6 min
    .venv-bench/bin/python bench/compare.py --backends redis --libs bare,jdobb,huey
    .venv-bench/bin/python bench/compare.py --all --repeat 3 --json compare.json

For each store (SQLite file, Redis, PostgreSQL) it measures a bare baseline (no library), jdobb
(under asyncio and trio) and the peers, each in two processes of its own: a producer and a
worker, never the same process. Every handler pays the same cost: one Redis command on the
bench's own control redis-server (``_peers/record.py``). Per library:

- enqueue/s: sequential single-job enqueue calls from one producer (up to --jobs, or
  --enqueue-budget seconds), after one warm-up call;
- process/s: the worker process is started on that backlog; backlog / (its start -> the
  control counter reaches the backlog); cpu us/job is the worker process's CPU over that span;
- p50/p99 ms: enqueue->start with an idle worker in the other process, one job at a time: the
  producer's time.monotonic() just before the enqueue call to the handler's, pushed back on
  the control server (CLOCK_MONOTONIC is system-wide on Linux);
- x bare: each figure over the same store's bare baseline in the same run.

The stores are the run's own: two private redis-servers (control, and the one under test,
FLUSHALLed before each library), a database bench_<run>_<n> per library on PG_URL's server
(dropped after it), SQLite files in a temp dir. See bench/README.md for the rules in full.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import BACKENDS, MODULES, Env, load, modules_for, record
from _peers.child import RESULT_MARK, ProducerConfig, run_producer, run_worker
from _peers.servers import Postgres, RedisServer

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TITLES = {
    "sqlite": "SQLite (a file in a temp dir; every poller set to 10 ms)",
    "redis": "Redis (a private redis-server, FLUSHALLed before each library)",
    "postgres": "PostgreSQL (a new database per library)",
}
FIGURES = ("enqueue_per_s", "process_per_s", "cpu_us_per_job", "p50_ms", "p99_ms")


@dataclass
class Row:
    """One library on one store and loop: what the two processes measured."""

    backend: str
    lib: str
    loop: str
    version: str = "-"
    enqueue_per_s: float = float("nan")
    process_per_s: float = float("nan")
    cpu_us_per_job: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    samples: int = 0
    backlog: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None
    x_bare: dict[str, float] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Cell:
    backend: str
    module: str
    loop: str

    @property
    def mod(self) -> ModuleType:
        return load(self.module)

    def key(self) -> str:
        return f"{self.mod.NAME}@{self.backend}/{self.loop}"


# --------------------------------------------------------------------------------------------
# one measurement


class Stores:
    """The run's servers: control and subject redis-servers, PostgreSQL, a temp dir."""

    def __init__(self, backends: list[str], pg_url: str, run_id: str) -> None:
        self.control = RedisServer("control")
        self.subject = RedisServer("subject") if "redis" in backends else None
        self.tmp = tempfile.mkdtemp(prefix="compare-sqlite-")
        self.pg: Postgres | None = None
        self.pg_error: str | None = None
        if "postgres" in backends:
            try:
                self.pg = Postgres(pg_url, run_id)
            except Exception as exc:  # report the store as skipped, run the others
                self.pg_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        self.count = 0

    def prepare(self, backend: str, name: str) -> str:
        """A clean store for one library; its URL (or file path)."""
        self.control.flush()
        self.count += 1
        if backend == "redis":
            assert self.subject is not None
            self.subject.flush()
            return self.subject.url
        if backend == "sqlite":
            return os.path.join(self.tmp, f"{self.count}-{name}.db")
        assert self.pg is not None
        return self.pg.create()

    def release(self, backend: str, url: str) -> None:
        if backend == "postgres" and self.pg is not None:
            self.pg.drop(url)
        elif backend == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(url + suffix).unlink(missing_ok=True)

    def versions(self) -> dict[str, str]:
        out = {"redis": self.control.version}
        if self.pg is not None:
            out["postgres"] = self.pg.version
        import sqlite3

        out["sqlite"] = sqlite3.sqlite_version
        return out

    def close(self) -> None:
        self.control.close()
        if self.subject is not None:
            self.subject.close()
        if self.pg is not None:
            self.pg.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Child:
    """A producer or worker process, its stderr in a temp file."""

    def __init__(self, role: str, cell: Cell, env: Env, args: argparse.Namespace) -> None:
        cfg = ProducerConfig(
            jobs=args.jobs,
            enqueue_budget=args.enqueue_budget,
            samples=args.samples,
            latency_budget=args.latency_budget,
            seed=args.seed,
        )
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            role,
            "--module",
            cell.module,
            "--env",
            json.dumps(env.to_json()),
            "--cfg",
            json.dumps(asdict(cfg)),
        ]
        self.role = role
        # closed in close(): they outlive this call, as the process does
        self.out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err, text=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def result(self, timeout: float) -> dict[str, Any] | None:
        """The JSON line the producer prints last, once it has exited."""
        self.proc.wait(timeout)
        self.out.seek(0)
        lines = [ln for ln in self.out.read().splitlines() if ln.startswith(RESULT_MARK)]
        return json.loads(lines[-1][len(RESULT_MARK) :]) if lines else None

    def last_error(self) -> str:
        lines = [ln for ln in self.stderr().strip().splitlines() if ln.strip()]
        return f"{self.role}: {lines[-1] if lines else f'exit code {self.proc.returncode}'}"

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.out.close()
        self.err.close()


class Failed(Exception):
    pass


def _await(ctl: Any, key: str, timeout: float, *children: Child) -> bytes | None:
    """BLPOP ``key`` for up to ``timeout`` seconds, failing as soon as a child has died."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        reply = ctl.blpop([key], timeout=min(1.0, max(left, 0.01)))
        if reply is not None:
            return bytes(reply[1])
        for child in children:
            if not child.alive():
                raise Failed(child.last_error())


def _version(mod: ModuleType) -> str:
    if mod.DIST is None:
        return "-"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(mod.DIST)
    except PackageNotFoundError:
        return "missing"


def _unavailable(cell: Cell, stores: Stores) -> str | None:
    mod = cell.mod
    if cell.backend == "postgres" and stores.pg is None:
        return f"PostgreSQL not reachable: {stores.pg_error}"
    check = getattr(mod, "unavailable", None)
    if check is not None and (why := check(cell.backend)):
        return str(why)
    if mod.DIST is not None and _version(mod) == "missing":
        return f"{mod.DIST} is not installed (pip install -r bench/requirements-peers.txt)"
    return None


def measure(cell: Cell, stores: Stores, args: argparse.Namespace, tag: str) -> Row:
    mod = cell.mod
    row = Row(backend=cell.backend, lib=mod.NAME, loop=cell.loop, version=_version(mod))
    if why := _unavailable(cell, stores):
        row.skipped = why
        return row
    began = time.monotonic()
    url = stores.prepare(cell.backend, f"{mod.NAME}-{cell.loop}")
    env = Env(
        backend=cell.backend,
        url=url,
        control=stores.control.url,
        tag=tag,
        loop=cell.loop,
        concurrency=args.concurrency,
        threads=args.threads,
        poll=args.poll,
    )
    ctl = stores.control.client
    children: list[Child] = []
    try:
        producer = Child("producer", cell, env, args)
        children.append(producer)
        got = _await(ctl, record.ENQUEUED, 60 + 2 * args.enqueue_budget, producer)
        if got is None:
            raise Failed("the producer did not finish its enqueue phase")
        row.backlog = int(json.loads(got)["backlog"])
        worker = Child("worker", cell, env, args)
        children.append(worker)
        if _await(ctl, record.WORKER_READY, 60, worker) is None:
            raise Failed("the worker did not get ready in 60 s")
        ctl.rpush(record.GO, row.backlog)
        finished = _await(ctl, record.FINISHED, args.process_timeout, worker)
        started = _await(ctl, record.STARTED, 5, worker)
        if started is None:
            raise Failed("the worker did not report its start")
        t0, cpu0 = map(float, started.split())
        if finished is not None:
            t1, cpu1 = map(float, finished.split())
            row.process_per_s = row.backlog / (t1 - t0)
            row.cpu_us_per_job = (cpu1 - cpu0) / row.backlog * 1e6
        else:
            done = int(ctl.get(record.DONE) or 0)
            row.process_per_s = done / (time.monotonic() - t0)
            row.notes.append(
                f"partial: {done}/{row.backlog} done in {args.process_timeout:g} s "
                "(rate over that span; no latency taken)"
            )
        ctl.rpush(record.LATENCY_GO, "1" if finished is not None else "0")
        try:
            result = producer.result(timeout=args.latency_budget + 60)
        except subprocess.TimeoutExpired:
            raise Failed("the producer did not finish its latency phase") from None
        if result is None:
            raise Failed(producer.last_error())
        row.enqueue_per_s = result["enqueue_per_s"]
        row.samples = result["samples"]
        row.p50_ms = result.get("p50_ms", float("nan"))
        row.p99_ms = result.get("p99_ms", float("nan"))
        row.notes += result["notes"]
        if finished is not None and row.samples < args.samples:
            row.notes.append(f"latency budget {args.latency_budget:g} s: {row.samples} samples")
    except Failed as exc:
        row.error = str(exc)
    finally:
        for child in reversed(children):
            child.stop()
            if args.verbose and (text := child.stderr().strip()):
                print(f"--- {cell.key()} {child.role} stderr:\n{text}", file=sys.stderr)
            child.close()
        stores.release(cell.backend, url)
    row.seconds = time.monotonic() - began
    return row


# --------------------------------------------------------------------------------------------
# what to run, and the report


def select(args: argparse.Namespace) -> list[Cell]:
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in BACKENDS:
            raise SystemExit(f"unknown backend {b!r}: use {', '.join(BACKENDS)}")
    wanted = [w for w in args.libs.split(",") if w] if args.libs else []
    known = {load(m).NAME for m in MODULES}
    for w in wanted:
        name, _, backend = w.partition("@")
        if name not in known or (backend and backend not in BACKENDS):
            raise SystemExit(
                f"unknown library {w!r}: use NAME or NAME@BACKEND, NAME in {sorted(known)}"
            )
    loops = [lp for lp in args.loops.split(",") if lp]
    cells = []
    for backend in backends:
        for name in [m.__name__.rsplit(".", 1)[1] for m in modules_for(backend)]:
            mod = load(name)
            if wanted:
                if not any(w in (mod.NAME, f"{mod.NAME}@{backend}") for w in wanted):
                    continue
            elif not (mod.DEFAULT or args.all):
                continue
            for loop in (
                [lp for lp in mod.LOOPS if lp in loops] if len(mod.LOOPS) > 1 else mod.LOOPS
            ):
                cells.append(Cell(backend, name, loop))
    return cells


def combine(runs: list[Row]) -> Row:
    """Several rounds of one cell: the median of each figure (failed rounds left out)."""
    ok = [r for r in runs if not r.error and not r.skipped]
    if not ok:
        return runs[-1]
    out = Row(**{k: v for k, v in asdict(ok[0]).items() if k != "runs"})
    for name in (*FIGURES, "seconds"):
        values = [getattr(r, name) for r in ok if getattr(r, name) == getattr(r, name)]
        setattr(out, name, statistics.median(values) if values else float("nan"))
    out.samples = min(r.samples for r in ok)
    out.notes = list(dict.fromkeys(n for r in runs for n in r.notes))
    out.notes += [f"round failed: {r.error}" for r in runs if r.error]
    out.runs = [{k: getattr(r, k) for k in (*FIGURES, "samples", "error")} for r in runs]
    if len(runs) > 1:
        spread = ", ".join(f"{r.process_per_s:,.0f}" for r in ok)
        out.notes.append(f"median of {len(ok)}/{len(runs)} rounds; process/s: {spread}")
    return out


def fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)  # NaN -> "-"


RATIOS = {"enqueue": "enqueue_per_s", "process": "process_per_s", "p50": "p50_ms"}


def add_ratios(rows: list[Row]) -> None:
    """Each row's figures over its store's bare baseline (``Row.x_bare``)."""
    for r in rows:
        bare = next(
            (b for b in rows if b.backend == r.backend and b.lib == "bare" and not b.error), None
        )
        if bare is None or bare.skipped or r.error or r.skipped:
            continue
        for key, name in RATIOS.items():
            x, base = getattr(r, name), getattr(bare, name)
            if x == x and base == base and base:
                r.x_bare[key] = x / base


def ratio(r: Row, key: str) -> str:
    return f"{r.x_bare[key]:.2f}" if key in r.x_bare else "-"


def report(rows: list[Row], args: argparse.Namespace, versions: dict[str, str]) -> None:
    print()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, jobs<={args.jobs}, "
        f"concurrency {args.concurrency}, threads {args.threads}, poll {args.poll:g} s, "
        f"latency samples<={args.samples}, repeat {args.repeat}; "
        f"redis {versions.get('redis', '?')}, sqlite {versions.get('sqlite', '?')}, "
        f"postgres {versions.get('postgres', '-')}"
    )
    head = (
        f"{'library':15} {'loop':8} {'version':8} {'enqueue/s':>10} {'xbare':>5} "
        f"{'process/s':>10} {'xbare':>5} {'p50 ms':>7} {'p99 ms':>7} {'xbare':>5} {'n':>4} "
        f"{'cpu us/job':>10}"
    )
    for backend in dict.fromkeys(r.backend for r in rows):
        group = [r for r in rows if r.backend == backend]
        print(f"\n{TITLES[backend]}")
        print(head)
        print("-" * len(head))
        for r in group:
            label = f"{r.lib}@{backend}" if r.lib == "jdobb" else r.lib
            if r.skipped or r.error:
                print(f"{label:15} {r.loop:8} {r.version:8} "
                      + (f"skipped: {r.skipped}" if r.skipped else f"failed: {r.error}"))  # fmt: skip
                continue
            print(
                f"{label:15} {r.loop:8} {r.version:8} {fmt(r.enqueue_per_s, '10,.0f')} "
                f"{ratio(r, 'enqueue'):>5} {fmt(r.process_per_s, '10,.0f')} "
                f"{ratio(r, 'process'):>5} {fmt(r.p50_ms, '7.2f')} {fmt(r.p99_ms, '7.2f')} "
                f"{ratio(r, 'p50'):>5} {r.samples:4d} "
                f"{fmt(r.cpu_us_per_job, '10,.0f')}"
            )
        for r in group:
            for n in r.notes:
                print(f"  note {r.lib}/{r.loop}: {n}")
        for name in dict.fromkeys(r.lib for r in group):
            settings = next(m.SETTINGS for m in modules_for(backend) if name == m.NAME)
            print(
                f"  {name}: {settings.get(backend, '') if isinstance(settings, dict) else settings}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backends", default="sqlite,redis,postgres", help="(default: all three)")
    ap.add_argument(
        "--libs",
        help="comma-separated NAME or NAME@BACKEND (bare, jdobb, huey, saq, streaq, dramatiq, "
        "taskiq, arq, rq, gigq, dbjobq, pgqueuer, procrastinate); default: the default set",
    )
    ap.add_argument("--all", action="store_true", help="add the peers left out by default")
    ap.add_argument("--loops", default="asyncio,trio", help="jdobb's event loops")
    ap.add_argument("--jobs", type=int, default=10_000, help="backlog size (at most)")
    ap.add_argument("--concurrency", type=int, default=50, help="async workers' jobs in flight")
    ap.add_argument("--threads", type=int, default=8, help="thread-based workers' threads")
    ap.add_argument("--poll", type=float, default=0.01, help="polling period where settable")
    ap.add_argument("--samples", type=int, default=200, help="idle-latency samples (at most)")
    ap.add_argument("--enqueue-budget", type=float, default=8.0, help="seconds, enqueue phase")
    ap.add_argument("--process-timeout", type=float, default=20.0, help="seconds, backlog")
    ap.add_argument("--latency-budget", type=float, default=8.0, help="seconds, idle latency")
    ap.add_argument("--repeat", type=int, default=1, help="rounds, round-robin; medians")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the children's stderr")
    ap.add_argument("--child", choices=("producer", "worker"), help=argparse.SUPPRESS)
    ap.add_argument("--module", help=argparse.SUPPRESS)
    ap.add_argument("--env", help=argparse.SUPPRESS)
    ap.add_argument("--cfg", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        mod, env = load(args.module), Env(**json.loads(args.env))
        if args.child == "producer":
            run_producer(mod, env, ProducerConfig(**json.loads(args.cfg)))
        else:
            run_worker(mod, env)
        return

    cells = select(args)
    if not cells:
        raise SystemExit("nothing selected")
    run_id = uuid.uuid4().hex[:8]
    backends = list(dict.fromkeys(c.backend for c in cells))
    pg_url = os.environ.get("PG_URL") or PG_URL
    stores = Stores(backends, pg_url, run_id)
    runs: dict[str, list[Row]] = {c.key(): [] for c in cells}
    print(f"compare: {len(cells)} measurements x {args.repeat}, run {run_id}", file=sys.stderr)
    try:
        versions = stores.versions()
        for round_ in range(args.repeat):
            for cell in cells:
                print(f"  {cell.key()} ...", end="", flush=True, file=sys.stderr)
                row = measure(cell, stores, args, tag=f"b{run_id}r{round_}")
                status = "skipped" if row.skipped else f"FAILED: {row.error}" if row.error else ""
                print(f" {row.seconds:.0f}s {status}", file=sys.stderr)
                runs[cell.key()].append(row)
    finally:
        stores.close()
    rows = [combine(r) for r in runs.values()]
    add_ratios(rows)
    report(rows, args, versions)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"versions": versions, "args": vars(args), "rows": [asdict(r) for r in rows]},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
