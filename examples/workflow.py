"""A workflow: fetch two pages, then combine them, stored in one atomic call.

    python examples/workflow.py           # memory backend
    python examples/workflow.py sqlite:///workflow.db
"""

import sys

import anyio

from jdobb_async_queue import Broadcaster, JobContext, JobQueue, Worker, Workflow


async def main(url: str) -> None:
    queue = JobQueue(backend=url)
    worker = Worker(queue, max_concurrent=4)

    @worker.handler("fetch")
    async def fetch(ctx: JobContext) -> dict:
        await anyio.sleep(0.05)
        return {"words": len(ctx.data["url"])}

    @worker.handler("combine")
    async def combine(ctx: JobContext) -> dict:
        # Each dependency's results, by job id.
        total = sum(r["words"] for r in ctx.dependency_results.values() if r)
        return {"total": total}

    wf = Workflow("nightly-report")
    a = wf.add("fetch", {"url": "https://example.com/a"})
    b = wf.add("fetch", {"url": "https://example.com/bb"}, max_retries=2)
    report = wf.add("combine", depends_on=[a, b])
    print(f"combine will run as {report.job_id} once {a.job_id[:8]}, {b.job_id[:8]} are done")

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        ids = await wf.submit(queue)
        async for update in Broadcaster(queue).subscribe(ids[-1]):
            print(f"combine: {update.status.value}")
        await worker.stop()

    job = await queue.get(report.job_id)
    print(f"results: {job.results}, workflow: {job.metadata['workflow']}")
    await queue.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "memory://")
