"""Function tasks: typed calls of plain functions, run by a worker, results awaited.

    python examples/tasks.py                       # memory backend
    python examples/tasks.py sqlite:///tasks.db    # any backend URL

An ``async def`` task and a plain ``def`` task (run in a worker thread), one with options, a
failure, and a call enqueued by name by a producer that never imports the function.
"""

import sys
import time

import anyio
import anyio.from_thread

from jdobb_async_queue import JobFailed, JobPriority, JobQueue, Worker, current_job


async def main(url: str) -> None:
    queue = JobQueue(backend=url)

    # An async task; its name (the job type it stores) defaults to "<module>.<qualname>".
    @queue.task
    async def price(cents: int, currency: str = "EUR") -> str:
        return f"{cents / 100:.2f} {currency}"

    # Another, named: its jobs have job_type "billing.charge", whatever module defines it.
    @queue.task("billing.charge", max_retries=2, retry_delay=0.1)
    async def charge(customer: str, cents: int, *, currency: str = "EUR") -> dict:
        await current_job().update(progress=0.5, message="card authorised")
        # Calling a task runs its function here and now (no job): tasks compose like functions.
        return {"customer": customer, "charged": await price(cents, currency)}

    # A plain def task: it runs in a worker thread, so blocking here never stalls the event loop.
    @queue.task("images.resize", timeout=5)
    def resize(path: str, width: int) -> str:
        time.sleep(0.1)  # stands for blocking work (PIL, a subprocess, a sync HTTP client)
        ctx = current_job()  # the job's context follows the call into its thread
        anyio.from_thread.run(ctx.update, 1.0, f"resized to {width}px")
        if width <= 0:
            raise ValueError(f"width must be positive, not {width}")
        return f"{path.removesuffix('.png')}-{width}.png"

    worker = Worker(queue, max_concurrent=4)  # job_types=None: it runs the queue's tasks
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)

        # enqueue() takes the function's own arguments; mypy checks them against its signature.
        charge_id = await charge.enqueue("cus_42", 1999, currency="USD")
        # with_options: a task whose enqueue uses other options (the original is unchanged).
        urgent_id = await resize.with_options(priority=JobPriority.HIGH).enqueue("cat.png", 640)
        broken_id = await resize.enqueue("dog.png", 0)

        # A producer that cannot import `charge` enqueues it by name, in the documented format.
        by_name_id = await queue.enqueue(
            "billing.charge", data={"args": ["cus_7", 500], "kwargs": {}}
        )

        # wait() returns the function's return value (it follows pushed updates, no polling).
        print("charge:", await charge.wait(charge_id, timeout=10))
        print("resize:", await resize.wait(urgent_id, timeout=10))
        print("by name:", await charge.wait(by_name_id, timeout=10))
        try:
            await resize.wait(broken_id, timeout=10)
        except JobFailed as exc:
            print("failed:", exc.error)

        # get_result() tells what became of a call, without waiting.
        result = await charge.get_result(charge_id)
        print(
            f"result of {result.job_id[:8]}: {result.status.value}, {result.result}, "
            f"{result.attempts} attempt(s), {result.duration:.3f}s"
        )

        # A default name depends on where the function lives (here "__main__.main.<locals>.price"):
        # name the tasks that other programs enqueue, as "billing.charge" is.
        print("default name:", price.name)
        await worker.stop()
    await queue.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "memory://")
