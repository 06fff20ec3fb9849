"""What the commands print: rich tables and panels for people, JSON for scripts.

Rich output goes through :data:`stdout` (a rich console); ``--json`` output is written to
``sys.stdout`` as plain JSON, never wrapped or coloured, so ``| jq`` always works. Text that
comes from jobs (types, messages, payloads) is wrapped in :class:`rich.text.Text`, so square
brackets in it are never read as rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._models import Job, JobStatus, QueueStats, WorkerInfo

__all__ = [
    "STATUS_STYLES",
    "emit_json",
    "emit_json_line",
    "job_panel",
    "jobs_table",
    "rates_table",
    "stats_table",
    "workers_table",
    "stdout",
    "styled_status",
]

#: The console every command prints its human-readable output to.
stdout = Console(highlight=False)

#: One colour per status, used everywhere a status is shown.
STATUS_STYLES: dict[JobStatus, str] = {
    JobStatus.PENDING: "yellow",
    JobStatus.PROCESSING: "cyan",
    JobStatus.COMPLETE: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
}


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (for ``--json``)."""
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()


def emit_json_line(value: Any) -> None:
    """Print ``value`` as one compact line of JSON and flush (a stream of updates)."""
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def styled_status(status: JobStatus) -> Text:
    """The status name, coloured."""
    return Text(status.value, style=STATUS_STYLES[status])


def job_panel(job: Job) -> Panel:
    """Every field of ``job`` worth reading, in a panel titled with its id."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in _job_rows(job):
        grid.add_row(name, value)
    return Panel(grid, title=Text(f"job {job.id}"), title_align="left", expand=False)


def _job_rows(job: Job) -> Iterable[tuple[str, RenderableType]]:
    yield "type", Text(job.job_type)
    yield "status", styled_status(job.status)
    yield "priority", job.priority.value
    yield "progress", f"{job.progress:.0%}"
    if job.message is not None:
        yield "message", Text(job.message)
    yield "attempts", f"{job.attempts} of {job.max_retries + 1}"
    yield "data", Text(_compact(job.data))
    if job.metadata:
        yield "metadata", Text(_compact(job.metadata))
    if job.results is not None:
        yield "results", Text(_compact(job.results), style="green")
    if job.error is not None:
        yield "error", Text(job.error, style="red")
    if job.depends_on:
        yield "depends on", Text(", ".join(job.depends_on))
    for name, text in _optional_rows(job):
        yield name, Text(text)
    yield from _time_rows(job)


def _optional_rows(job: Job) -> Iterable[tuple[str, str]]:
    if job.unique_key is not None:
        yield "unique key", job.unique_key
    if job.timeout is not None:
        yield "timeout", f"{job.timeout:g} s"
    if job.ttl is not None:
        yield "ttl", f"{job.ttl} s"
    if job.worker_id is not None:
        yield "worker", job.worker_id


def _time_rows(job: Job) -> Iterable[tuple[str, str]]:
    yield "created", _when(job.created_at)
    yield "updated", _when(job.updated_at)
    if job.execute_at is not None:
        yield "not before", _when(job.execute_at)
    if job.started_at is not None:
        yield "started", _when(job.started_at)
    if job.completed_at is not None:
        yield "finished", _when(job.completed_at)
    if job.duration is not None:
        yield "duration", f"{job.duration * 1000:.1f} ms"


def jobs_table(
    jobs: list[Job],
    *,
    limit: int,
    width: int,
    waiting: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> Table:
    """One row per job; a caption says when ``--limit`` may have cut the list short.

    Ids are never cut (people copy them), so below 100 columns the priority and attempt count
    are left out (``status`` shows them) to keep every row on one line of an 80-column terminal.
    A PENDING job that cannot be claimed yet says why beside its status: ``waiting on N``
    (``waiting`` maps job ids to their unfinished dependencies) and ``due in 1h`` for a job
    whose ``execute_at`` is after ``now`` (default: the current time).
    """
    moment = datetime.now(timezone.utc) if now is None else now
    waiting = waiting or {}
    statuses = [_status_cell(job, waiting.get(job.id, 0), moment) for job in jobs]
    # A note beside a status ("pending, due in 1h") makes the column wider than the status alone.
    longest_note = max(
        (len(cell) - len(job.status.value) for cell, job in zip(statuses, jobs, strict=False)),
        default=0,
    )
    wide = width >= 100 + longest_note
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("TYPE", min_width=8)
    table.add_column("STATUS")  # wraps after the comma of a note when the terminal is narrow
    if wide:
        table.add_column("PRIORITY", no_wrap=True)
        table.add_column("TRIES", justify="right", no_wrap=True)
    table.add_column("DONE", justify="right", no_wrap=True)
    table.add_column("UPDATED", no_wrap=True)
    for job, status in zip(jobs, statuses, strict=False):
        extra = [job.priority.value, str(job.attempts)] if wide else []
        table.add_row(
            Text(job.id),
            Text(job.job_type),
            status,
            *extra,
            f"{job.progress:.0%}",
            _when(job.updated_at, short=True),
        )
    if not jobs:
        table.caption = "no jobs"
    elif len(jobs) == limit:
        table.caption = f"first {limit} shown: use --limit / --offset for more"
    return table


def _status_cell(job: Job, waiting_on: int, now: datetime) -> Text:
    """The status, and for a PENDING job not claimable yet, why: dependencies, then the time."""
    cell = styled_status(job.status)
    if job.status is not JobStatus.PENDING:
        return cell
    notes = []
    if waiting_on:
        notes.append(f"waiting on {waiting_on}")
    if job.execute_at is not None and job.execute_at > now:
        notes.append(f"due in {_span((job.execute_at - now).total_seconds())}")
    if notes:
        cell.append(", " + ", ".join(notes), style="dim")
    return cell


def _span(seconds: float) -> str:
    """A rounded, readable length of time: ``45s``, ``12m``, ``1h``, ``2h 30m``, ``3d 4h``."""
    total = max(1, round(seconds))
    if total < 60:
        return f"{total}s"
    minutes = round(total / 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def stats_table(stats: QueueStats) -> Table:
    """Jobs per status, with the scheduled and waiting parts of PENDING, and the total."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold")
    table.add_column("STATUS")
    table.add_column("JOBS", justify="right")
    for status in JobStatus:
        table.add_row(styled_status(status), str(getattr(stats, status.value)))
        if status is JobStatus.PENDING:
            table.add_row(Text("  scheduled", style="dim"), Text(str(stats.scheduled), style="dim"))
            table.add_row(Text("  waiting", style="dim"), Text(str(stats.waiting), style="dim"))
    total = sum(getattr(stats, status.value) for status in JobStatus)
    table.add_section()
    table.add_row(Text("total", style="bold"), Text(str(total), style="bold"))
    return table


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


def _when(moment: datetime, *, short: bool = False) -> str:
    """Local time, to the second: what people compare with their clock and with ``--before``."""
    return moment.astimezone().strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S")


def workers_table(workers: Sequence[WorkerInfo]) -> Table:
    """The live workers, oldest first."""
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("id", "host", "pid", "up since", "concurrency", "running", "types", "seen"):
        table.add_column(column, overflow="fold")
    for w in workers:
        table.add_row(
            w.id,
            w.host,
            str(w.pid),
            _when(w.started_at, short=True),
            str(w.concurrency),
            str(len(w.running)),
            ", ".join(w.job_types),
            _when(w.heartbeat_at, short=True),
        )
    return table


_RATE_ROWS = ("pending", "scheduled", "waiting", "processing", "complete", "failed", "cancelled")


def rates_table(stats: QueueStats, rates: dict[str, float]) -> Table:
    """Counts by status with their rates (jobs per second since the previous refresh)."""
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("status")
    table.add_column("jobs", justify="right")
    table.add_column("per s", justify="right")
    for name in (
        "pending",
        "scheduled",
        "waiting",
        "processing",
        "complete",
        "failed",
        "cancelled",
    ):
        rate = rates.get(name)
        table.add_row(name, f"{getattr(stats, name):,}", "" if rate is None else f"{rate:+,.1f}")
    return table
