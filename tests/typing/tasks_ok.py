"""Typed, correct use of function tasks: ``mypy --strict`` must accept this file.

Checked by ``tests/test_tasks.py::test_mypy_accepts_correct_task_use`` (not collected by pytest,
never run).
"""

from __future__ import annotations

from jdobb_async_queue import JobPriority, JobQueue, Task, TaskResult
from jdobb_async_queue.sync import JobQueue as SyncJobQueue

queue = JobQueue()


@queue.task
async def add(x: int, y: int = 0) -> int:
    return x + y


@queue.task("reports.build", priority=JobPriority.HIGH, max_retries=2, timeout=30.0)
def build_report(name: str, *, pages: int) -> dict[str, int]:
    return {name: pages}


async def produce() -> None:
    task: Task[[int, int], int] = add
    job_id: str = await add.enqueue(1, y=2)
    positional: str = await task.enqueue(1, 2)
    total: int = await add.wait(job_id, timeout=5.0)
    direct: int = await add(3)
    later = add.with_options(delay=10.0, priority=JobPriority.LOW)
    other: str = await later.enqueue(4)
    outcome: TaskResult[int] | None = await add.get_result(other)
    if outcome is not None and outcome.result is not None:
        doubled: int = outcome.result * 2
        print(doubled, outcome.duration, outcome.is_done, outcome.status.value)
    report_id = await build_report.enqueue("q3", pages=12)
    report: dict[str, int] = await build_report.wait(report_id)
    cancelled: bool = await build_report.cancel(report_id)
    print(total, direct, report, cancelled, positional)


def produce_blocking() -> None:
    with SyncJobQueue() as blocking:

        @blocking.task
        def resize(path: str, width: int) -> str:
            return f"{path}@{width}"

        job_id: str = resize.enqueue_sync("a.png", 640)
        resized: str = resize.wait_sync(job_id, timeout=1.0)
        print(resized, blocking.stats().pending)
