"""Which PostgreSQL driver for a backend that must run under asyncio *and* trio?

    python bench/postgres_driver.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
                                    [--calls 3000] [--callers 4] [--rounds 3]

Measures one short transaction (``BEGIN; UPDATE one row ... RETURNING; COMMIT`` on a temporary
table: the shape of every backend call) and a bare ``SELECT 1``, one caller at a time and then
``--callers`` concurrent callers each on its own connection, for:

- **blocking**: psycopg 3's blocking ``Connection`` in the calling thread, no event loop (the
  floor: what libpq and the server cost);
- **async@asyncio**: psycopg 3's ``AsyncConnection`` (asyncio only: it cannot run under trio);
- **thread@asyncio**, **thread@trio**: the blocking ``Connection`` driven from
  ``anyio.to_thread.run_sync`` (one worker-thread hop per call), which is what the backend does
  for transactions;
- **loop@asyncio**, **loop@trio** (``one`` only: a single statement in autocommit, the shape of a
  plain enqueue and of a claim): the blocking ``Connection``'s libpq driven from the event loop
  by its non-blocking calls, the statement prepared once (the backend's own
  ``Pool.execute`` helper), which is what the backend does for those two.

``one`` is that single statement (``UPDATE one row ... RETURNING`` in autocommit).

Prints µs per call (median of ``--rounds``) and the ratio to the floor. The wire protocol on
anyio streams (a third option) would need a driver of our own; see docs/design-notes.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import psycopg

SETUP = "CREATE TEMP TABLE bench_jobs (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)"
FILL = "INSERT INTO bench_jobs (id) SELECT generate_series(1, 64)"
UPDATE = "UPDATE bench_jobs SET n = n + 1 WHERE id = %s RETURNING n"


def _open(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(SETUP)
    conn.execute(FILL)
    return conn


def _tx(conn: psycopg.Connection[Any], i: int) -> None:
    with conn.transaction():
        conn.execute(UPDATE, (i % 64 + 1,)).fetchone()


def _select(conn: psycopg.Connection[Any], i: int) -> None:
    conn.execute("SELECT 1").fetchone()


def _one(conn: psycopg.Connection[Any], i: int) -> None:
    conn.execute(UPDATE, (i % 64 + 1,)).fetchone()


ONE = UPDATE.replace("%s", "%(id)s")


def on_loop(url: str, calls: int, callers: int, loop: str) -> float:
    """``one`` through the backend's non-blocking path (``pool._execute``), on the loop."""
    from jdobb_async_queue.backends.postgres.pool import _execute

    async def call(conn: psycopg.Connection[Any], i: int) -> None:
        await _execute(conn, ONE, {"id": i % 64 + 1})

    return _on_loop_callers(url, calls, callers, loop, call)


def _on_loop_callers(
    url: str,
    calls: int,
    callers: int,
    loop: str,
    call: Callable[[psycopg.Connection[Any], int], Awaitable[None]],
) -> float:
    """Seconds per call of ``call(conn, i)``: ``callers`` tasks on ``loop``, each on its own
    blocking connection, ``calls`` in all."""

    async def main() -> float:
        conns = [_open(url) for _ in range(callers)]
        share = calls // callers

        async def run(conn: psycopg.Connection[Any]) -> None:
            for i in range(share):
                await call(conn, i)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for c in conns:
                tg.start_soon(run, c)
        took = time.perf_counter() - start
        for c in conns:
            c.close()
        return took / (share * callers)

    return anyio.run(main, backend=loop)


def blocking(url: str, calls: int, callers: int, work: Callable[..., None]) -> float:
    conns = [_open(url) for _ in range(callers)]
    share = calls // callers

    def run(conn: psycopg.Connection[Any]) -> None:
        for i in range(share):
            work(conn, i)

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    for c in conns:
        c.close()
    return took / (share * callers)


def threaded(url: str, calls: int, callers: int, work: Callable[..., None], loop: str) -> float:
    limiter = anyio.CapacityLimiter(callers)  # made on first use, on the loop that runs it

    async def call(conn: psycopg.Connection[Any], i: int) -> None:
        await anyio.to_thread.run_sync(work, conn, i, limiter=limiter)

    return _on_loop_callers(url, calls, callers, loop, call)


def native_async(url: str, calls: int, callers: int, kind: str) -> float:
    async def main() -> float:
        conns = []
        for _ in range(callers):
            c = await psycopg.AsyncConnection.connect(url, autocommit=True)
            await c.execute(SETUP)
            await c.execute(FILL)
            conns.append(c)
        share = calls // callers

        async def run(conn: psycopg.AsyncConnection[Any]) -> None:
            for i in range(share):
                if kind == "tx":
                    async with conn.transaction():
                        await (await conn.execute(UPDATE, (i % 64 + 1,))).fetchone()
                elif kind == "one":
                    await (await conn.execute(UPDATE, (i % 64 + 1,))).fetchone()
                else:
                    await (await conn.execute("SELECT 1")).fetchone()

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for c in conns:
                tg.start_soon(run, c)
        took = time.perf_counter() - start
        for c in conns:
            await c.close()
        return took / (share * callers)

    return anyio.run(main, backend="asyncio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url", default=os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}), {args.calls} calls")
    print(f"{'driver':<16} {'what':<8} {'callers':>7} {'us/call':>9} {'x floor':>8}")
    for kind, work in (("tx", _tx), ("one", _one), ("select", _select)):
        for callers in (1, args.callers):
            cells: dict[str, Callable[[], float]] = {
                "blocking": lambda: blocking(args.url, args.calls, callers, work),
                "async@asyncio": lambda: native_async(args.url, args.calls, callers, kind),
                "thread@asyncio": lambda: threaded(args.url, args.calls, callers, work, "asyncio"),
                "thread@trio": lambda: threaded(args.url, args.calls, callers, work, "trio"),
            }
            if kind == "one":
                cells["loop@asyncio"] = lambda: on_loop(args.url, args.calls, callers, "asyncio")
                cells["loop@trio"] = lambda: on_loop(args.url, args.calls, callers, "trio")
            floor = None
            for name, cell in cells.items():
                us = statistics.median(cell() for _ in range(args.rounds)) * 1e6
                floor = floor or us
                print(f"{name:<16} {kind:<8} {callers:>7} {us:>9.1f} {us / floor:>8.2f}")


if __name__ == "__main__":
    main()
