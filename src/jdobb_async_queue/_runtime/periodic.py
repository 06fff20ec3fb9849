"""Periodic jobs (``Worker.every``): one actor per schedule enqueues each occurrence when due.

Occurrences fall on whole multiples of the interval since the Unix epoch (plus an offset), so
every worker that
has the schedule agrees on them, and each occurrence is stored under a job id made from the
schedule's name and its time: the first worker to enqueue it wins, the others get
``DuplicateJobError`` and leave it be. No lock, no leader, no backend support beyond ``enqueue``.

An occurrence is enqueued when it falls due (not ahead), so a ``unique_key`` skips one that
falls while the previous one is still pending or running. Occurrences that fall while no worker
keeps the schedule are skipped, not caught up; the waits are real time, whatever the queue's
clock.
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

    def step_after(self, moment: float) -> int:
        """The number of the first occurrence after ``moment`` (seconds since the epoch).

        Occurrences are counted in whole steps, so the next one is always a step further
        (float division alone may land back on the same occurrence)."""
        return math.floor((moment - self.offset) / self.interval) + 1

    def due(self, step: int) -> float:
        """When occurrence ``step`` falls due: the same float on every worker."""
        return step * self.interval + self.offset

    def job_id(self, step: int) -> str:
        """The id of occurrence ``step``: the same on every worker."""
        return f"every:{self.name}:{round(self.due(step) * 1000)}"


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
    step = schedule.step_after(queue.clock())
    while True:
        await anyio.sleep(max(schedule.due(step) - queue.clock(), 0.0))
        try:
            await _enqueue(queue, schedule, step)
        except BackendUnavailable as exc:
            # Retried until the next occurrence falls due; then that one is tried instead.
            logger.warning("could not enqueue %s, retrying: %s", schedule.job_id(step), exc)
            retry = min(schedule.interval / 4, 1.0)
            if queue.clock() + retry < schedule.due(step + 1):
                await anyio.sleep(retry)
                continue
        except Exception:
            # A schedule must not take job processing down with it: say so, go on.
            logger.exception("could not enqueue %s, skipped", schedule.job_id(step))
        # A step further at least: the clock may read a hair before the due time on waking.
        step = max(step + 1, schedule.step_after(queue.clock()))


async def _enqueue(queue: JobQueue, schedule: Schedule, step: int) -> None:
    execute_at = datetime.fromtimestamp(schedule.due(step), tz=timezone.utc)
    try:
        await queue.enqueue(
            schedule.job_type,
            schedule.data,
            job_id=schedule.job_id(step),
            execute_at=execute_at,
            **schedule.options,
        )
    except DuplicateJobError:
        pass  # another worker with this schedule (or an earlier run of this one) stored it
