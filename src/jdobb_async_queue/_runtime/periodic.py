"""Periodic jobs (``Worker.every``): one actor per schedule enqueues each occurrence when due.

Occurrences fall on whole multiples of the interval since the Unix epoch (plus an offset), so
every worker that
has the schedule agrees on them, and each occurrence is stored under a job id made from the
schedule's name and its time: the first worker to enqueue it wins, the others get
``DuplicateJobError`` and leave it be. No lock, no leader, no backend support beyond ``enqueue``.

An occurrence is enqueued when it falls due (not ahead), so a ``unique_key`` skips one that
falls while the previous one is still pending or running. Occurrences that fall while no worker
keeps the schedule are skipped, not caught up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._errors import BackendUnavailable, DuplicateJobError
from .._queue import JobQueue
from .backoff import logger

__all__ = ["Schedule", "keep_schedules"]


@dataclass(frozen=True)
class Schedule:
    """One ``Worker.every`` registration."""

    name: str
    job_type: str
    interval: float
    data: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: Seconds after each multiple of ``interval`` (0 <= offset < interval).
    offset: float = 0.0

    def next_after(self, moment: float) -> float:
        """The first occurrence strictly after ``moment`` (seconds since the epoch)."""
        steps = math.floor((moment - self.offset) / self.interval) + 1
        return steps * self.interval + self.offset

    def job_id(self, due: float) -> str:
        """The id of the occurrence due at ``due``: the same on every worker."""
        return f"every:{self.name}:{round(due * 1000)}"


async def keep_schedules(
    queue: JobQueue,
    schedules: Sequence[Schedule],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Enqueue every schedule's occurrences as they fall due, until cancelled."""
    async with anyio.create_task_group() as tg:
        for schedule in schedules:
            tg.start_soon(_keep, queue, schedule)
        task_status.started()


async def _keep(queue: JobQueue, schedule: Schedule) -> None:
    due = schedule.next_after(queue.clock())
    while True:
        await anyio.sleep(max(due - queue.clock(), 0.0))
        try:
            await _enqueue(queue, schedule, due)
        except BackendUnavailable as exc:
            # Retried until the next occurrence falls due; then that one is tried instead.
            logger.warning("could not enqueue %s, retrying: %s", schedule.job_id(due), exc)
            retry = min(schedule.interval / 4, 1.0)
            if queue.clock() + retry < schedule.next_after(due):
                await anyio.sleep(retry)
                continue
        # Strictly after both: the clock may read a hair before ``due`` on waking.
        due = schedule.next_after(max(queue.clock(), due))


async def _enqueue(queue: JobQueue, schedule: Schedule, due: float) -> None:
    execute_at = datetime.fromtimestamp(due, tz=timezone.utc)
    try:
        await queue.enqueue(
            schedule.job_type,
            schedule.data,
            job_id=schedule.job_id(due),
            execute_at=execute_at,
            **schedule.options,
        )
    except DuplicateJobError:
        pass  # another worker with this schedule (or an earlier run of this one) stored it
