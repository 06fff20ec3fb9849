"""The Quick Example of the API reference, on a SQLite file.

    python examples/quickstart.py                      # sqlite:///quickstart.db
    python examples/quickstart.py memory://            # any backend URL

A worker runs in the background, one job is enqueued, and a Broadcaster follows it to the end.
"""

import sys

import anyio

from jdobb_async_queue import Broadcaster, JobContext, JobQueue, Worker


async def main(url: str) -> None:
    # Create queue
    queue = JobQueue(backend=url)

    # Create worker
    worker = Worker(queue, job_types=["task"])

    @worker.handler("task")
    async def handle_task(ctx: JobContext) -> dict:
        print(f"Processing: {ctx.data}")
        await ctx.update(progress=0.5, message="Working...")
        return {"result": "done"}

    async with anyio.create_task_group() as tg:
        # Run worker (in a real app: a separate process, or a background task like this one)
        tg.start_soon(worker.run)

        # Enqueue a job
        job_id = await queue.enqueue("task", data={"input": "test"})
        print(f"Enqueued: {job_id}")

        # Follow it until it ends
        async for update in Broadcaster(queue).subscribe(job_id):
            status, progress = update.status.value, update.progress
            print(f"  {status:<10} progress={progress:.0%} {update.message or ''}")

        await worker.stop()

    job = await queue.get(job_id)
    print(f"Results: {job.results}")
    await queue.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "sqlite:///quickstart.db")
