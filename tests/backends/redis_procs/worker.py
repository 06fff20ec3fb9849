"""A worker process for the Redis backend's multi-process tests.

Runs one :class:`Worker` until SIGTERM (then stops gracefully) or SIGKILL. Every job a handler
starts is appended to ``--log`` as a line ``<event> <job id>`` and flushed at once, so the test
can count executions per process even after a kill. Once the worker runs, ``--ready`` is created.

Handlers (job types): ``noop`` returns at once; ``slow`` sleeps ``data["seconds"]``; ``report``
sends progress 0.25, 0.5, 0.75 (a short pause between) and returns ``{"done": True}``; ``block``
waits until cancelled, logging ``cancelled <id>`` when it is.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

import anyio

from jdobb_async_queue import JobContext, JobQueue, Worker


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=10)
    return parser.parse_args()


def build(args: argparse.Namespace, queue: JobQueue) -> Worker:
    worker = Worker(queue, max_concurrent=args.concurrency, lease=args.lease, poll_interval=1.0)
    log = args.log.open("a", buffering=1)

    def note(event: str, job_id: str) -> None:
        log.write(f"{event} {job_id}\n")
        log.flush()

    @worker.handler("noop")
    async def noop(ctx: JobContext) -> dict[str, Any]:
        note("run", ctx.id)
        return {"pid": 1}

    @worker.handler("slow")
    async def slow(ctx: JobContext) -> None:
        note("run", ctx.id)
        await anyio.sleep(ctx.data["seconds"])

    @worker.handler("report")
    async def report(ctx: JobContext) -> dict[str, Any]:
        note("run", ctx.id)
        for step in (0.25, 0.5, 0.75):
            await anyio.sleep(0.05)
            await ctx.update(progress=step, message=f"at {step}")
        return {"done": True}

    @worker.handler("block")
    async def block(ctx: JobContext) -> None:
        note("run", ctx.id)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            note("cancelled", ctx.id)
            raise

    return worker


async def main(args: argparse.Namespace) -> None:
    queue = JobQueue(backend="redis", url=args.url, namespace=args.namespace)
    worker = build(args, queue)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)

        async def stop_on_sigterm() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    await worker.stop()
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_sigterm)
        await anyio.sleep(0.2)  # let the worker subscribe and claim once
        args.ready.touch()
    await queue.close()


if __name__ == "__main__":
    options = parse()
    anyio.run(main, options, backend=options.loop)
