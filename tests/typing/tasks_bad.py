"""Wrong use of tasks: ``mypy --strict`` must refuse each argument type (``arg-type``).

Checked by ``tests/test_tasks.py::test_mypy_refuses_wrong_argument_types`` (never run). Each
wrong line ends with ``# wrong``; the test expects one ``arg-type`` error on each.
"""

from __future__ import annotations

from jdobb_async_queue import JobQueue
from jdobb_async_queue.sync import JobQueue as SyncJobQueue

queue = JobQueue()


@queue.task
async def add(x: int, y: int = 0) -> int:
    return x + y


async def produce() -> None:
    await add.enqueue("one", y=2)  # wrong


def produce_blocking(blocking: SyncJobQueue) -> None:
    @blocking.task(max_retries=1)
    def resize(path: str, width: int) -> str:
        return f"{path}@{width}"

    resize.enqueue_sync("a.png", width="wide")  # wrong
