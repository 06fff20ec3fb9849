"""The typer app: global options and the queue commands (``worker`` is in :mod:`.serve`).

Each queue command parses its text arguments first (usage errors before any I/O), then runs one
coroutine on asyncio with a freshly opened :class:`JobQueue` that is always closed.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
import typer
from rich.live import Live

from .. import __version__
from .._errors import JobNotFoundError
from .._jobspec import ENQUEUE_DEFAULTS
from .._models import Job, JobPriority, JobStatus, QueueStats
from .._queue import JobQueue
from ..health import check_store
from .boundary import CommandError
from .follow import follow_bar, follow_lines
from .inputs import NAMESPACE_ENV, URL_ENV, QueueAddress, parse_json_object, parse_time
from .render import (
    emit_json,
    job_panel,
    jobs_table,
    rates_table,
    stats_table,
    stdout,
    workers_table,
)
from .serve import worker

__all__ = ["app"]

app = typer.Typer(
    name="jdobb-queue",
    help="Enqueue, inspect and run the jobs of a jdobb-async-queue queue.",
    add_completion=False,
    pretty_exceptions_enable=False,  # a bug's traceback stays plain (and shows no locals)
    context_settings={"help_option_names": ["-h", "--help"]},
)

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print JSON for scripts instead of a rich display.")
]
JobId = Annotated[str, typer.Argument(metavar="ID", help="The job's id.")]
QueueOp = Callable[[JobQueue], Awaitable[int]]


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"jdobb-queue {__version__}")
        raise typer.Exit()


@app.callback()
def configure(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar=URL_ENV,
            show_envvar=True,
            help="The queue: sqlite:///jobs.db, redis://host:6379/0 (required; not used by "
            "'worker', which runs on the queue its module built).",
        ),
    ] = None,
    namespace: Annotated[
        str,
        typer.Option(envvar=NAMESPACE_ENV, show_envvar=True, help="Key prefix on Redis."),
    ] = "default",
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Enqueue, inspect and run the jobs of a jdobb-async-queue queue."""
    ctx.obj = QueueAddress(url, namespace)


def _run(ctx: typer.Context, op: QueueOp, *, create: bool = False) -> None:
    """Run ``op`` on asyncio with the queue of the global options; exit with what it returns.

    :param create: whether a SQLite file that does not exist yet may be created (only for
        commands that add jobs: the others refuse a missing file rather than read an empty one)
    """
    address = ctx.find_object(QueueAddress)
    assert address is not None  # the app callback always sets it
    queue = address.open(create=create)
    code = anyio.run(_with_queue, queue, op)
    if code:
        raise typer.Exit(code)


async def _with_queue(queue: JobQueue, op: QueueOp) -> int:
    async with queue:
        return await op(queue)


async def _existing(queue: JobQueue, job_id: str) -> Job:
    job = await queue.get(job_id)
    if job is None:
        raise JobNotFoundError(job_id)
    return job


def _show(job: Job, as_json: bool) -> None:
    if as_json:
        emit_json(job.model_dump(mode="json"))
    else:
        stdout.print(job_panel(job))


@app.command()
def enqueue(
    ctx: typer.Context,
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="Which handler runs it.")],
    data: Annotated[
        str | None, typer.Option("--data", "-d", metavar="JSON", help="The payload object.")
    ] = None,
    # The defaults are enqueue's own (declared once, by JobQueue.enqueue).
    priority: Annotated[JobPriority, typer.Option(case_sensitive=False)] = ENQUEUE_DEFAULTS[
        "priority"
    ],
    delay: Annotated[
        float | None, typer.Option(min=0, metavar="SECONDS", help="Not run before then.")
    ] = None,
    metadata: Annotated[
        str | None, typer.Option(metavar="JSON", help="An object stored beside the payload.")
    ] = None,
    max_retries: Annotated[
        int, typer.Option(min=0, help="Failed attempts retried.")
    ] = ENQUEUE_DEFAULTS["max_retries"],
    retry_delay: Annotated[float, typer.Option(min=0, metavar="SECONDS")] = ENQUEUE_DEFAULTS[
        "retry_delay"
    ],
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="Longest time one attempt may run.")
    ] = None,
    ttl: Annotated[
        int | None, typer.Option(metavar="SECONDS", help="Kept that long once finished.")
    ] = None,
    job_id: Annotated[str | None, typer.Option("--id", help="Your own id.")] = None,
    unique_key: Annotated[
        str | None, typer.Option(help="Not enqueued while a live job holds this key.")
    ] = None,
    depends_on: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Run after this job (repeatable).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue a job and print its id (with --json, the whole job)."""
    options: dict[str, Any] = {
        "data": parse_json_object(data, "--data"),
        "metadata": parse_json_object(metadata, "--metadata"),
        "priority": priority,
        "delay": delay,
        "max_retries": max_retries,
        "retry_delay": retry_delay,
        "timeout": timeout,
        "ttl": ttl,
        "job_id": job_id,
        "unique_key": unique_key,
        "depends_on": depends_on or None,
    }

    async def op(queue: JobQueue) -> int:
        new_id = await queue.enqueue(job_type, **options)
        if as_json:
            _show(await _existing(queue, new_id), as_json=True)
        else:
            typer.echo(new_id)
        return 0

    _run(ctx, op, create=True)


@app.command()
def status(
    ctx: typer.Context,
    job_id: JobId,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Show live progress until the job ends; exit 0 if it ends COMPLETE, 1 if "
            "FAILED or CANCELLED (with --json: one JSON update per line).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show a job. Exit 1 if there is no job with this id."""

    async def op(queue: JobQueue) -> int:
        if not follow:
            _show(await _existing(queue, job_id), as_json)
            return 0
        if as_json:
            final = await follow_lines(queue, job_id)
        else:
            final = await follow_bar(queue, job_id)
            job = await queue.get(job_id)
            if job is not None:  # None if its ttl ran out in the meantime
                stdout.print(job_panel(job))
        return 0 if final is JobStatus.COMPLETE else 1

    _run(ctx, op)


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[
        JobStatus | None, typer.Option("--status", "-s", case_sensitive=False)
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", "-t", metavar="TYPE")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, most recently updated first (with --status pending: in claim order)."""

    async def op(queue: JobQueue) -> int:
        jobs = await queue.list_jobs(status, job_type=job_type, limit=limit, offset=offset)
        if as_json:
            emit_json([job.model_dump(mode="json") for job in jobs])
        else:
            waiting = await _unfinished_dependencies(queue, jobs)
            stdout.print(jobs_table(jobs, limit=limit, width=stdout.width, waiting=waiting))
        return 0

    _run(ctx, op)


async def _unfinished_dependencies(queue: JobQueue, jobs: list[Job]) -> dict[str, int]:
    """For each PENDING job with dependencies, how many of them are not COMPLETE yet.

    A dependency that is gone (its ttl ran out after it completed) counts as finished.
    """
    statuses: dict[str, JobStatus | None] = {}
    counts: dict[str, int] = {}
    for job in jobs:
        if job.status is not JobStatus.PENDING or not job.depends_on:
            continue
        for dep in job.depends_on:
            if dep not in statuses:
                found = await queue.get(dep)
                statuses[dep] = None if found is None else found.status
        unfinished = sum(
            1 for dep in job.depends_on if statuses[dep] not in (None, JobStatus.COMPLETE)
        )
        if unfinished:
            counts[job.id] = unfinished
    return counts


@app.command()
def stats(
    ctx: typer.Context,
    as_json: JsonFlag = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh a live table of counts and rates.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, metavar="SECONDS", help="Between refreshes (--watch).")
    ] = 2.0,
    count: Annotated[
        int | None,
        typer.Option(min=1, hidden=True, help="Stop --watch after this many refreshes."),
    ] = None,
) -> None:
    """Count jobs by status (with --watch: live, with rates, until Ctrl-C)."""

    async def op(queue: JobQueue) -> int:
        if watch:
            await watch_stats(queue, interval=interval, count=count)
            return 0
        counts = await queue.stats()
        if as_json:
            emit_json(counts.model_dump(mode="json"))
        else:
            stdout.print(stats_table(counts))
        return 0

    _run(ctx, op)


async def watch_stats(queue: JobQueue, *, interval: float, count: int | None) -> None:
    """Redraw the counts and their rates every ``interval`` seconds (``count`` times)."""
    previous: tuple[float, QueueStats] | None = None
    with Live(console=stdout, auto_refresh=False) as live:
        shown = 0
        while count is None or shown < count:
            counts = await queue.stats()
            now = anyio.current_time()
            rates: dict[str, float] = {}
            if previous is not None:
                took = max(now - previous[0], 1e-9)
                for name in type(counts).model_fields:
                    rates[name] = (getattr(counts, name) - getattr(previous[1], name)) / took
            previous = (now, counts)
            live.update(rates_table(counts, rates), refresh=True)
            shown += 1
            if count is None or shown < count:
                await anyio.sleep(interval)


@app.command()
def workers(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the live workers (every running Worker registers itself)."""

    async def op(queue: JobQueue) -> int:
        found = await queue.workers()
        if as_json:
            emit_json([w.model_dump(mode="json") for w in found])
        elif not found:
            stdout.print("no live workers")
        else:
            stdout.print(workers_table(found))
        return 0

    _run(ctx, op)


@app.command()
def check(
    ctx: typer.Context,
    min_workers: Annotated[
        int, typer.Option(min=0, help="Also require at least this many live workers.")
    ] = 0,
) -> None:
    """Exit 0 if the store answers (and enough workers are live), else 1, saying why."""

    async def op(queue: JobQueue) -> int:
        problem = await check_store(queue)
        if problem is None and min_workers:
            live = len(await queue.workers())
            if live < min_workers:
                problem = f"{live} live worker(s), fewer than --min-workers {min_workers}"
        if problem is not None:
            raise CommandError(f"unhealthy: {problem}")
        stdout.print("ok")
        return 0

    _run(ctx, op)


@app.command()
def dashboard(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="JDOBB_DASHBOARD_TOKEN",
            show_envvar=True,
            help="Required by the actions (cancel, retry, purge).",
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="No actions at all: look, don't touch.")
    ] = False,
) -> None:
    """Serve the web dashboard of the queue until Ctrl-C."""
    try:
        from ..dashboard import serve as serve_dashboard
    except ImportError as exc:
        raise CommandError(str(exc)) from None

    async def op(queue: JobQueue) -> int:
        stdout.print(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def first_signal() -> None:  # then hypercorn stops gracefully
                async for _ in signals:
                    return

            await serve_dashboard(
                queue, host, port, token=token, read_only=read_only, shutdown_trigger=first_signal
            )
        return 0

    _run(ctx, op)


@app.command()
def cancel(
    ctx: typer.Context,
    job_id: JobId,
    reason: Annotated[str | None, typer.Option(help="Stored as the job's error.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a PENDING or PROCESSING job (and the jobs that depend on it)."""

    async def op(queue: JobQueue) -> int:
        if not await queue.cancel(job_id, reason):
            await _refused(queue, job_id, "cancelled", "PENDING or PROCESSING")
        await _done(queue, job_id, "cancelled", JobStatus.CANCELLED, as_json)
        return 0

    _run(ctx, op)


@app.command()
def retry(
    ctx: typer.Context,
    job_id: JobId,
    delay: Annotated[float, typer.Option(min=0, metavar="SECONDS")] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Send a FAILED or CANCELLED job back to PENDING, its attempts cleared."""

    async def op(queue: JobQueue) -> int:
        if not await queue.retry(job_id, delay=delay):
            await _refused(queue, job_id, "retried", "FAILED or CANCELLED")
        await _done(queue, job_id, "retrying", JobStatus.PENDING, as_json)
        return 0

    _run(ctx, op)


async def _refused(queue: JobQueue, job_id: str, action: str, allowed: str) -> None:
    job = await _existing(queue, job_id)
    raise CommandError(f"job {job_id} is {job.status.value}: only {allowed} jobs can be {action}")


async def _done(queue: JobQueue, job_id: str, what: str, status: JobStatus, as_json: bool) -> None:
    """Say it is done: the job as it now is for ``--json`` (read only then)."""
    if not as_json:
        typer.echo(f"{what} {job_id}")
        return
    job = await queue.get(job_id)  # None if it ended with ttl=0: already gone, as it should be
    shown = {"id": job_id, "status": status.value} if job is None else job.model_dump(mode="json")
    emit_json(shown)


@app.command()
def purge(
    ctx: typer.Context,
    status: Annotated[
        list[JobStatus] | None,
        typer.Option(
            "--status", "-s", case_sensitive=False, help="Repeatable (default: every final one)."
        ),
    ] = None,
    before: Annotated[
        str | None,
        typer.Option(metavar="ISO-8601", help="Only jobs finished before then (default: local)."),
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", "-t", metavar="TYPE")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete finished jobs (COMPLETE, FAILED, CANCELLED) and print how many."""
    cutoff = parse_time(before, "--before")

    async def op(queue: JobQueue) -> int:
        count = await queue.purge(status or None, before=cutoff, job_type=job_type)
        if as_json:
            emit_json({"purged": count})
        else:
            typer.echo(f"purged {count} job{'' if count == 1 else 's'}")
        return 0

    _run(ctx, op)


app.command("worker")(worker)
