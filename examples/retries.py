"""Retries with exponential backoff, a per-attempt timeout, and a manual retry.

    python examples/retries.py            # memory backend
    python examples/retries.py sqlite:///retries.db
"""

import sys

import anyio

from jdobb_async_queue import Broadcaster, JobContext, JobQueue, Worker


async def main(url: str) -> None:
    queue = JobQueue(backend=url)
    worker = Worker(queue, max_concurrent=4)

    @worker.handler("flaky")
    async def flaky(ctx: JobContext) -> dict:
        # Fails on the first two attempts, succeeds on the third.
        if ctx.attempt < 3:
            raise ConnectionError(f"upstream down (attempt {ctx.attempt})")
        return {"attempts_needed": ctx.attempt}

    @worker.handler("slow")
    async def slow(ctx: JobContext) -> None:
        await anyio.sleep(10)  # longer than its timeout: cancelled, then failed

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)

        # Attempt k is retried after retry_delay * 2**(k-1) seconds (+ up to 10% jitter).
        flaky_id = await queue.enqueue("flaky", max_retries=3, retry_delay=0.1)
        slow_id = await queue.enqueue("slow", timeout=0.2)

        for job_id in (flaky_id, slow_id):
            async for update in Broadcaster(queue).subscribe(job_id):
                if update.status.is_terminal or update.error:
                    print(f"{job_id[:8]} {update.status.value:<10} {update.error or ''}")

        job = await queue.get(flaky_id)
        print(f"flaky: {job.status.value} after {job.attempts} attempts, results={job.results}")
        job = await queue.get(slow_id)
        print(f"slow: {job.status.value}: {job.error}")

        # A FAILED job can be sent back by hand; here it times out again.
        await queue.retry(slow_id)
        final = [u async for u in Broadcaster(queue).subscribe(slow_id)][-1]
        print(f"slow, retried by hand: {final.status.value}: {final.error}")

        await worker.stop()
    await queue.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "memory://")
