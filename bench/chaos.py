"""SIGKILL chaos: 4 worker processes on one store, one killed every 2 s and started again.

    python bench/chaos.py                          # 10^4 jobs, SQLite file then Redis
    python bench/chaos.py --jobs 2000 --backends redis --url redis://127.0.0.1:6379/0
    python bench/chaos.py --backends postgres      # PG_URL, else the local server on :5432

The jobs are enqueued first; then ``--workers`` worker processes (alternately asyncio and trio)
run them while, every ``--kill-every`` seconds, one of them (in turn) is sent SIGKILL and a new
one started in its place. Once every job is COMPLETE (or ``--deadline`` passes) the killing
stops and the workers get SIGTERM.

What is counted, and from where:

- **runs**: every handler run appends ``start <job id> <token>`` to its process's own file
  (flushed at once, so a SIGKILL loses no line; ``<token>`` is unique per run), and ``end ...``
  when it returns; the token is also the job's result.
- **completions**: the store's own transitions to COMPLETE. On SQLite, a trigger this script
  adds to the file records each UPDATE that makes a job COMPLETE (or rewrites a COMPLETE job's
  results). On PostgreSQL, the same trigger on the namespace's ``jobs`` table writes into a side
  table in the namespace's schema (dropped with it at the end). On Redis, a subscriber on every
  job's update channel counts the ``complete`` updates the backend publishes.

Printed per backend: **lost** (not COMPLETE at the end), **run twice** (handler started more
than once: expected after kills, delivery is at least once), **completed twice** (the store
completed it more than once), and a sanity check that each stored result is the token of one of
the job's logged runs. Issues 12 and 15 ask for 0 lost and 0 completed twice.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import anyio

from jdobb_async_queue import JobContext, JobQueue, JobStatus, Worker

JOB_TYPE = "chaos"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# -- the worker process ------------------------------------------------------------------------


async def child(args: argparse.Namespace) -> None:
    queue = JobQueue(backend=args.url, namespace=args.namespace)
    worker = Worker(queue, max_concurrent=args.concurrency, lease=args.lease, poll_interval=0.2)
    log = open(args.log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as we do

    @worker.handler(JOB_TYPE)
    async def work(ctx: JobContext) -> dict[str, Any]:
        token = uuid.uuid4().hex[:12]
        log.write(f"start {ctx.id} {token}\n")
        log.flush()
        await anyio.sleep(args.work)
        log.write(f"end {ctx.id} {token}\n")
        log.flush()
        return {"token": token}

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                await worker.stop()
                break
    await queue.close()
    log.close()


# -- completion observers -------------------------------------------------------------------------


def sqlite_observer(path: Path) -> None:
    """Record, in the database file itself, every UPDATE that completes a job."""
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS chaos_completions (id TEXT NOT NULL, results TEXT);
            CREATE TRIGGER IF NOT EXISTS chaos_completed AFTER UPDATE ON jobs
            WHEN NEW.status = 'complete'
                 AND (OLD.status <> 'complete' OR NEW.results IS NOT OLD.results)
            BEGIN
                INSERT INTO chaos_completions (id, results) VALUES (NEW.id, NEW.results);
            END;
            """
        )


def sqlite_completions(path: Path) -> Counter[str]:
    with sqlite3.connect(path) as db:
        return Counter(row[0] for row in db.execute("SELECT id FROM chaos_completions"))


_PG_OBSERVER = """
CREATE TABLE {schema}.chaos_completions (id text NOT NULL, results text);
CREATE FUNCTION {schema}.chaos_completed() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO {schema}.chaos_completions (id, results) VALUES (NEW.id, NEW.results);
    RETURN NULL;
END
$body$;
CREATE TRIGGER chaos_completed AFTER UPDATE ON {schema}.jobs FOR EACH ROW
WHEN (NEW.status = 'complete'
      AND (OLD.status <> 'complete' OR NEW.results IS DISTINCT FROM OLD.results))
EXECUTE FUNCTION {schema}.chaos_completed();
"""


def _pg_schema(url: str, namespace: str) -> str:
    """The namespace's schema name, quoted for SQL."""
    import psycopg
    from psycopg import sql

    from jdobb_async_queue.backends.postgres import schema_name

    with psycopg.connect(url) as conn:
        return sql.Identifier(schema_name(namespace)).as_string(conn)


def pg_observer(url: str, namespace: str) -> None:
    """Record, in the namespace's own schema, every UPDATE that completes a job (the schema
    exists: the jobs were enqueued)."""
    import psycopg

    script = _PG_OBSERVER.format(schema=_pg_schema(url, namespace))
    with psycopg.connect(url) as conn:  # one transaction
        conn.execute(script.encode())


def pg_completions(url: str, namespace: str) -> Counter[str]:
    import psycopg

    schema = _pg_schema(url, namespace)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT id, count(*) FROM {schema}.chaos_completions GROUP BY id".encode()
        ).fetchall()
    return Counter({job_id: n for job_id, n in rows})


def pg_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


class RedisObserver:
    """Subscribes to every job's update channel and counts the ``complete`` updates."""

    def __init__(self, url: str, namespace: str, ids: list[str]) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379))
        self.reader = self.sock.makefile("rb")
        if parsed.password:
            user = parsed.username or "default"
            self._command("AUTH", user, parsed.password)
            self._read()
        self.completes: Counter[str] = Counter()
        prefix = f"jdobb:{{{namespace}}}:updates:"
        self.prefix = prefix.encode()
        for start in range(0, len(ids), 500):
            batch = [prefix + i for i in ids[start : start + 500]]
            self._command("SUBSCRIBE", *batch)
            for _ in batch:
                reply = self._read()
                assert reply[0] == b"subscribe", reply
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _command(self, *parts: str) -> None:
        out = [f"*{len(parts)}\r\n".encode()]
        for p in parts:
            b = p.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))

    def _read(self) -> Any:
        line = self.reader.readline()
        if not line:
            raise EOFError
        kind, rest = line[:1], line[1:-2]
        if kind == b"*":
            return [self._read() for _ in range(int(rest))]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.reader.read(n + 2)
            return data[:-2]
        if kind == b":":
            return int(rest)
        if kind == b"-":
            raise RuntimeError(rest.decode())
        return rest

    def _run(self) -> None:
        try:
            while True:
                msg = self._read()
                if msg[0] == b"message" and json.loads(msg[2]).get("status") == "complete":
                    self.completes[msg[1][len(self.prefix) :].decode()] += 1
        except (EOFError, OSError, ValueError):
            return

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)


# -- the driver ------------------------------------------------------------------------------


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
        self.dir = tempfile.mkdtemp(prefix="chaos-redis-")
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


async def enqueue_all(url: str, namespace: str, n: int) -> list[str]:
    async with JobQueue(backend=url, namespace=namespace) as queue:
        ids: list[str] = []
        for start in range(0, n, 1000):
            batch = [{"job_type": JOB_TYPE}] * min(1000, n - start)
            ids += await queue.enqueue_many(batch)
        return ids


async def complete_count(url: str, namespace: str) -> tuple[int, int]:
    async with JobQueue(backend=url, namespace=namespace) as queue:
        stats = await queue.stats()
        return stats.complete, stats.processing


async def final_state(url: str, namespace: str, ids: list[str]) -> dict[str, tuple[str, Any]]:
    async with JobQueue(backend=url, namespace=namespace) as queue:
        found = {}
        for job_id in ids:
            job = await queue.get(job_id)
            found[job_id] = ("gone", None) if job is None else (job.status.value, job.results)
        return found


async def drop(url: str, namespace: str) -> None:
    async with JobQueue(backend=url, namespace=namespace) as queue:
        dropper = getattr(queue.backend, "drop_namespace", None)
        if dropper is not None:
            await dropper()


def chaos(backend: str, url: str, args: argparse.Namespace, logs: Path) -> None:
    namespace = f"chaos-{uuid.uuid4().hex[:8]}"
    started_at = time.monotonic()
    ids = anyio.run(enqueue_all, url, namespace, args.jobs)
    observer: RedisObserver | None = None
    if backend == "sqlite":
        sqlite_observer(Path(urlparse(url).path))
    elif backend == "postgres":
        pg_observer(url, namespace)
    else:
        observer = RedisObserver(url, namespace, ids)

    generation = 0

    def spawn(slot: int) -> subprocess.Popen[bytes]:
        nonlocal generation
        generation += 1
        loop = "asyncio" if slot % 2 == 0 else "trio"
        command = [sys.executable, __file__, "--child", "--url", url, "--namespace", namespace,
                   "--loop", loop, "--log", str(logs / f"{backend}-{slot}-{generation}.log"),
                   "--lease", str(args.lease), "--concurrency", str(args.concurrency),
                   "--work", str(args.work)]  # fmt: skip
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    workers = [spawn(slot) for slot in range(args.workers)]
    kills = 0
    done = 0
    t0 = time.monotonic()
    next_kill = t0 + args.kill_every
    victim = 0
    try:
        while time.monotonic() - t0 < args.deadline:
            done, _ = anyio.run(complete_count, url, namespace)
            if done >= len(ids):
                break
            now = time.monotonic()
            if now >= next_kill:
                proc = workers[victim]
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=30)
                kills += 1
                workers[victim] = spawn(victim)
                victim = (victim + 1) % len(workers)
                next_kill += args.kill_every
            time.sleep(min(0.2, max(next_kill - time.monotonic(), 0.01)))
        elapsed = time.monotonic() - t0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        crashed = []
        for proc in workers:
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode not in (0, -signal.SIGTERM):  # -SIGTERM: killed while starting
                crashed.append(err.decode()[-2000:])

    state = anyio.run(final_state, url, namespace, ids)
    runs: Counter[str] = Counter()
    tokens: dict[str, set[str]] = {}
    for path in logs.glob(f"{backend}-*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "start":
                runs[parts[1]] += 1
                tokens.setdefault(parts[1], set()).add(parts[2])
    if observer is not None:
        time.sleep(0.5)  # let the last published updates arrive before counting them
        observer.close()
        completions = observer.completes
    elif backend == "postgres":
        completions = pg_completions(url, namespace)
    else:
        completions = sqlite_completions(Path(urlparse(url).path))
    if backend in ("redis", "postgres"):
        anyio.run(drop, url, namespace)  # on PostgreSQL the side table and trigger go with it

    lost = [j for j in ids if state[j][0] != JobStatus.COMPLETE.value]
    never_ran = [j for j in ids if runs[j] == 0]
    twice = [j for j in ids if runs[j] > 1]
    completed_twice = [j for j in ids if completions[j] > 1]
    not_observed = [j for j in ids if completions[j] == 0 and state[j][0] == "complete"]
    foreign = [
        j for j in ids
        if state[j][0] == "complete" and (state[j][1] or {}).get("token") not in tokens.get(j, ())
    ]  # fmt: skip
    print(f"\n== {backend}: {len(ids)} jobs, {args.workers} workers (asyncio+trio), "
          f"SIGKILL every {args.kill_every:g}s, lease {args.lease:g}s ==")  # fmt: skip
    print(f"  elapsed          {elapsed:.1f} s (plus {t0 - started_at:.1f} s enqueueing)")
    print(f"  kills            {kills}")
    print(f"  completed        {len(ids) - len(lost)}")
    print(f"  runs             {sum(runs.values())}")
    print(f"  lost             {len(lost)}" + (f"  e.g. {lost[:3]}" if lost else ""))
    print(f"  never ran        {len(never_ran)}")
    print(
        f"  run twice        {len(twice)}  (max runs of one job: {max(runs.values(), default=0)})"
    )
    print(
        f"  completed twice  {len(completed_twice)}"
        + (f"  e.g. {completed_twice[:3]}" if completed_twice else "")
    )
    print(f"  result not from a logged run  {len(foreign)}")
    if not_observed:
        print(f"  (observer missed {len(not_observed)} completions)")
    if crashed:
        print(f"  workers that did not stop cleanly on SIGTERM: {len(crashed)}")
        for err in crashed[:2]:
            print("    " + err.replace("\n", "\n    "))
    verdict = "OK" if not lost and not completed_twice and not foreign else "FAILED"
    print(f"  verdict          {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--work", type=float, default=0.1, help="seconds each handler sleeps")
    parser.add_argument("--deadline", type=float, default=300.0)
    parser.add_argument("--url", help="Redis URL (default: REDIS_URL, else a private server)")
    parser.add_argument("--pg-url", help=f"PostgreSQL URL (default: PG_URL, else {DEFAULT_PG_URL})")
    # the worker process
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        anyio.run(child, args, backend=args.loop)
        return

    tmp = Path(tempfile.mkdtemp(prefix="chaos-"))
    private: PrivateRedis | None = None
    try:
        for backend in args.backends.split(","):
            logs = tmp / "logs"
            logs.mkdir(exist_ok=True)
            if backend == "sqlite":
                url = f"sqlite:///{tmp / 'chaos.db'}"
            elif backend == "redis":
                url = args.url or os.environ.get("REDIS_URL") or ""
                if not url or not answers(url):
                    private = PrivateRedis()
                    url = private.url
            elif backend == "postgres":
                url = args.pg_url or os.environ.get("PG_URL") or DEFAULT_PG_URL
                if not pg_answers(url):
                    raise SystemExit("postgres: no server answers at --pg-url / PG_URL")
            else:
                raise SystemExit(f"unknown backend {backend!r}: sqlite, redis or postgres")
            chaos(backend, url, args, logs)
    finally:
        if private is not None:
            private.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
