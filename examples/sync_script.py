"""The blocking API in a plain script: no async, no event loop of our own.

    python examples/sync_script.py                          # a SQLite file in a temp dir
    python examples/sync_script.py sqlite:///jobs.db        # any backend URL
    python examples/sync_script.py memory://

The queue runs its event loop in a thread of its own. Threads enqueue at once, a worker runs the
jobs (in a real app: a separate process with the async API; here, through ``queue.call``), and
the script waits for the results, blocking.
"""

import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jdobb_async_queue import JobContext, JobFailed, JobStatus, Worker
from jdobb_async_queue.sync import JobQueue


def main(url: str) -> None:
    with JobQueue(backend=url) as queue:  # leaving the block closes it and stops its thread
        # Tasks work as on the async queue; enqueue_sync / wait_sync are their blocking twins.
        @queue.task("reports.word_count", timeout=30)
        def word_count(text: str) -> int:  # a plain def: run in a worker thread of the loop
            if not text:
                raise ValueError("empty text")
            return len(text.split())

        # Plain jobs and every JobQueue method, blocking.
        ping_id = queue.enqueue("ping", data={"from": threading.current_thread().name})

        # Many threads may share the queue (request threads of Django or Flask, a pool, ...).
        texts = ["one two three", "four five", "six", ""]
        with ThreadPoolExecutor(max_workers=4) as pool:
            job_ids = list(pool.map(word_count.enqueue_sync, texts))
        print("stats before:", queue.stats())

        # A worker over the async queue underneath, run in the queue's loop thread until no job
        # is due. In a web app, run workers in their own process instead.
        worker = Worker(queue.aio, max_concurrent=4)

        @worker.handler("ping")
        async def ping(ctx: JobContext) -> dict:
            return {"pong": ctx.data["from"]}

        queue.call(worker.run, burst=True)

        for text, job_id in zip(texts, job_ids, strict=True):
            try:
                print(f"{text!r}: {word_count.wait_sync(job_id, timeout=10)} word(s)")
            except JobFailed as exc:
                print(f"{text!r}: failed: {exc.error}")
        print("ping:", queue.get(ping_id).results)
        print("failed jobs:", [job.id[:8] for job in queue.list_jobs(JobStatus.FAILED)])
        print("stats after:", queue.stats())


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(f"sqlite:///{Path(tmp) / 'jobs.db'}")
