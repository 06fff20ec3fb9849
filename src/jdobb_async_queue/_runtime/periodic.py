"""Periodic jobs (``Worker.every``, ``Worker.cron``): one actor per schedule enqueues each
occurrence when it falls due.

Every worker that carries a schedule computes the same occurrences (whole multiples of an
interval since the Unix epoch, or the times a cron expression matches), and each occurrence is
stored under a job id made from the schedule's name and its time: the first worker to enqueue it
wins, the others get ``DuplicateJobError`` and leave it be. No lock, no leader, no backend
support beyond ``enqueue``.

An occurrence is enqueued when it falls due (not ahead), so a ``unique_key`` skips one that
falls while the previous one is still pending or running. Occurrences that fall while no worker
keeps the schedule are skipped, not caught up; the waits are real time, whatever the queue's
clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._errors import BackendUnavailable, DuplicateJobError
from .._queue import JobQueue
from .backoff import logger

__all__ = ["Occurrence", "Schedule", "keep_schedules"]


@dataclass(frozen=True)
class Occurrence:
    """One time a schedule falls due: the same on every worker."""

    due: float  # seconds since the epoch
    job_id: str
    #: The interval step it is (interval schedules), so the next one is always a step further.
    step: int = 0


@dataclass(frozen=True)
class Schedule:
    """One ``Worker.every`` or ``Worker.cron`` registration: ``interval`` (plus ``offset``), or
    a cron ``expression`` evaluated in ``tz``."""

    name: str
    job_type: str
    interval: float = 0.0
    data: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: Seconds after each multiple of ``interval`` (0 <= offset < interval).
    offset: float = 0.0
    expression: str | None = None
    tz: tzinfo = timezone.utc

    def next(self, moment: float, previous: Occurrence | None = None) -> Occurrence:
        """The first occurrence after ``moment`` and after ``previous``."""
        if self.expression is not None:
            start = moment if previous is None else max(moment, previous.due)
            due = _cron_after(self.expression, self.tz, start)
            return Occurrence(due, self._job_id("cron", due))
        step = self.step_after(moment)
        if previous is not None:
            step = max(step, previous.step + 1)
        return self.occurrence(step)

    def step_after(self, moment: float) -> int:
        """The number of the first interval step after ``moment`` (seconds since the epoch).

        Occurrences are counted in whole steps, so the next one is always a step further
        (float division alone may land back on the same occurrence)."""
        return math.floor((moment - self.offset) / self.interval) + 1

    def occurrence(self, step: int) -> Occurrence:
        """Interval step ``step``: when it falls due, and its id."""
        due = step * self.interval + self.offset
        return Occurrence(due, self._job_id("every", due), step)

    def _job_id(self, kind: str, due: float) -> str:
        return f"{kind}:{self.name}:{round(due * 1000)}"


def load_croniter() -> Any:
    """The ``croniter`` class (imported on first use: the ``cron`` extra is optional).

    :raises ImportError: when it is not installed
    """
    from croniter import croniter

    return croniter


def _cron_after(expression: str, tz: tzinfo, moment: float) -> float:
    start = datetime.fromtimestamp(moment, tz=tz)
    found: datetime = load_croniter()(expression, start).get_next(datetime)
    return found.timestamp()


async def keep_schedules(
    queue: JobQueue,
    schedules: tuple[Schedule, ...],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Enqueue every schedule's occurrences as they fall due, until cancelled."""
    async with anyio.create_task_group() as tg:
        for schedule in schedules:
            tg.start_soon(_keep, queue, schedule)
        task_status.started()


async def _keep(queue: JobQueue, schedule: Schedule) -> None:
    occurrence = _next(schedule, queue.clock(), None)
    while occurrence is not None:
        await anyio.sleep(max(occurrence.due - queue.clock(), 0.0))
        try:
            await _enqueue(queue, schedule, occurrence)
        except BackendUnavailable as exc:
            # Retried until the next occurrence falls due; then that one is tried instead.
            logger.warning("could not enqueue %s, retrying: %s", occurrence.job_id, exc)
            retry = min((schedule.interval or 60.0) / 4, 1.0)
            if queue.clock() + retry < schedule.next(occurrence.due, occurrence).due:
                await anyio.sleep(retry)
                continue
        except Exception:
            # A schedule must not take job processing down with it: say so, go on.
            logger.exception("could not enqueue %s, skipped", occurrence.job_id)
        # Later than this one, whatever the clock reads on waking (a hair early, or late).
        occurrence = _next(schedule, queue.clock(), occurrence)


def _next(schedule: Schedule, moment: float, previous: Occurrence | None) -> Occurrence | None:
    """The next occurrence, or None once there is none (a cron expression limited to years
    that have passed): the schedule ends, the worker goes on."""
    try:
        return schedule.next(moment, previous)
    except Exception:
        logger.exception("schedule %s has no next occurrence: it ends", schedule.name)
        return None


async def _enqueue(queue: JobQueue, schedule: Schedule, occurrence: Occurrence) -> None:
    try:
        await queue.enqueue(
            schedule.job_type,
            schedule.data,
            job_id=occurrence.job_id,
            execute_at=datetime.fromtimestamp(occurrence.due, tz=timezone.utc),
            **schedule.options,
        )
    except DuplicateJobError:
        pass  # another worker with this schedule (or an earlier run of this one) stored it
