"""A worker process whose handler blocks its event loop (``time.sleep``) for 3x its lease.

    python blocking_worker.py URL NAMESPACE --loop trio --lease 1.0

Runs ``Worker.run(burst=True)`` on job type ``block``. Prints (flushed at once) ``start <id>``
when the handler begins, ``end <id>`` when the blocking sleep is over, ``outcome <label>`` from
the worker's ``on_outcome`` hook (called just before the worker reports the attempt), and
``exit`` once the burst has returned and the queue is closed. The handler returns
``{"by": "blocked"}``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio

from jdobb_async_queue import JobContext, JobOutcome, JobQueue, Worker


def say(line: str) -> None:
    print(line, flush=True)


async def main(args: argparse.Namespace) -> None:
    queue = JobQueue(backend=args.url, namespace=args.namespace)
    worker = Worker(queue, job_types=["block"], lease=args.lease, poll_interval=0.05)

    @worker.handler("block")
    async def block(ctx: JobContext) -> dict[str, Any]:
        say(f"start {ctx.id}")
        time.sleep(3 * args.lease)  # blocks the whole event loop: no lease renewal
        say(f"end {ctx.id}")
        return {"by": "blocked"}

    @worker.on_outcome
    def told(outcome: JobOutcome) -> None:
        say(f"outcome {outcome.status}")

    try:
        await worker.run(burst=True)
    finally:
        await queue.close()
    say("exit")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("namespace")
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--lease", type=float, default=1.0)
    options = parser.parse_args()
    anyio.run(main, options, backend=options.loop)
