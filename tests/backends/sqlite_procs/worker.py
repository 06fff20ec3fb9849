"""A worker process for the SQLite multi-process tests.

Runs jobs of type ``work`` from the queue at URL, appending the id of every job it starts to
OUT (one line each, flushed at once, so a SIGKILL loses nothing already started). With
``--until-empty`` it stops once the queue has nothing PENDING or PROCESSING; otherwise it runs
until killed.

    python worker.py URL OUT --loop trio --lease 1.0 --sleep 0.2 --concurrency 4 --until-empty
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio

from jdobb_async_queue import JobContext, JobQueue, Worker


async def main(args: argparse.Namespace) -> None:
    queue = JobQueue(backend="sqlite", url=args.url)
    worker = Worker(queue, max_concurrent=args.concurrency, lease=args.lease, poll_interval=0.2)
    with open(args.out, "a", encoding="utf-8") as out:

        @worker.handler("work")
        async def work(ctx: JobContext) -> dict[str, Any]:
            out.write(ctx.id + "\n")
            out.flush()
            if args.sleep:
                await anyio.sleep(args.sleep)
            return {"pid": os.getpid()}

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            if args.until_empty:
                await until_empty(queue)
                await worker.stop()
    await queue.close()


async def until_empty(queue: JobQueue) -> None:
    while True:
        stats = await queue.stats()
        if stats.pending == 0 and stats.processing == 0:
            return
        await anyio.sleep(0.1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--until-empty", action="store_true")
    arguments = parser.parse_args()
    anyio.run(main, arguments, backend=arguments.loop)
