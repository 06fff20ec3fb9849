"""``status --follow``: watch one job until it ends.

The updates come from :meth:`Broadcaster.subscribe`, which ends by itself after the terminal
update (and yields just that one when the job has already ended), so following never polls here
and never outlives the job.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from .._broadcast import Broadcaster
from .._models import JobStatus, JobUpdate
from .._queue import JobQueue
from .render import STATUS_STYLES, emit_json_line, stdout

__all__ = ["follow_bar", "follow_lines"]


async def follow_lines(queue: JobQueue, job_id: str) -> JobStatus:
    """Print each update as one line of JSON; return the final status.

    :raises JobNotFoundError: if there is no job with this id
    """
    final = JobStatus.PENDING
    async with aclosing(_subscribe(queue, job_id)) as updates:
        async for update in updates:
            emit_json_line(update.model_dump(mode="json"))
            final = update.status
    return final


async def follow_bar(queue: JobQueue, job_id: str) -> JobStatus:
    """Show a live progress bar (status, message, elapsed time); return the final status.

    Off a terminal, rich draws the bar once, in its final state, when the job ends. A COMPLETE
    job fills the bar even if its handler never reported progress.

    :raises JobNotFoundError: if there is no job with this id (before any bar is drawn)
    """
    async with aclosing(_subscribe(queue, job_id)) as updates:
        update = await anext(updates)  # the job as it is now, or JobNotFoundError
        with _progress() as progress:
            bar = progress.add_task("", total=1.0)
            _show(progress, bar, update)
            async for update in updates:
                _show(progress, bar, update)
    return update.status


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=stdout,
    )


def _show(progress: Progress, bar: TaskID, update: JobUpdate) -> None:
    done = 1.0 if update.status is JobStatus.COMPLETE else update.progress
    progress.update(bar, completed=done, description=_describe(update))


def _subscribe(queue: JobQueue, job_id: str) -> AsyncGenerator[JobUpdate, None]:
    # subscribe() is an async generator typed as an AsyncIterator; closing it on the way out
    # (an error, Ctrl-C) releases the backend's subscription at once, under trio too.
    return Broadcaster(queue).subscribe(job_id)


def _describe(update: JobUpdate) -> str:
    """The bar's label, in rich markup: the coloured status, then the job's message."""
    style = STATUS_STYLES[update.status]
    label = f"[{style}]{update.status.value:<10}[/{style}]"
    return f"{label} {escape(update.message)}" if update.message else label
