"""The ``worker`` command: find the user's Worker, log every job's outcome, stop on signals.

Stopping, as a process manager expects it::

    SIGINT or SIGTERM   stop claiming; running jobs finish (up to the worker's drain_timeout,
                        then they are handed back); exit 0
    the second signal   cancel Worker.run() at once: the runtime hands running jobs back to the
                        queue (PENDING, due now); exit 128 + that signal's number

The queue is the one the user's module built (``worker.queue``): ``--url`` does not apply here.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import inspect
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from functools import partial
from typing import Annotated

import anyio
import typer
from anyio.abc import TaskGroup, TaskStatus

from .._models import JobOutcome
from .._worker import Worker
from ..health import Route, serve_http, worker_health

__all__ = ["Loop", "StopState", "load_target", "log_outcomes", "run_worker", "serve", "worker"]

log = logging.getLogger("jdobb_async_queue.cli")

_TARGET_HINT = "'MODULE:ATTRIBUTE'"


class Loop(str, enum.Enum):
    """The event loops ``worker --loop`` can run on."""

    ASYNCIO = "asyncio"
    TRIO = "trio"


class LogLevel(str, enum.Enum):
    """``worker --log-level``."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(str, enum.Enum):
    """``worker --log-format``."""

    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True)
class OpsPorts:
    """Where ``worker`` serves its metrics and health endpoints (None: not served)."""

    host: str = "0.0.0.0"
    metrics: int | None = None
    health: int | None = None


def worker(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:ATTRIBUTE",
            help="A Worker, or a function (sync or async) returning one; imported from the "
            "current directory.",
        ),
    ],
    loop: Annotated[Loop, typer.Option(case_sensitive=False)] = Loop.ASYNCIO,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", min=1, help="Jobs at once (default: the worker's)."),
    ] = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit once no job is due and none is running.")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="Serve Prometheus metrics at http://HOST:PORT/metrics."
        ),
    ] = None,
    health_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Serve /healthz (200 or 503) for probes."),
    ] = None,
    ops_host: Annotated[
        str, typer.Option(help="The address --metrics-port and --health-port listen on.")
    ] = "0.0.0.0",
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False)] = LogLevel.INFO,
    log_format: Annotated[
        LogFormat,
        typer.Option(case_sensitive=False, help="text, or json: one JSON object per line."),
    ] = LogFormat.TEXT,
) -> None:
    """Run a worker until SIGINT/SIGTERM (a second one stops at once), or, with --burst,
    until the queue is empty. Logs one line per job outcome on stderr."""
    if loop is Loop.TRIO and importlib.util.find_spec("trio") is None:
        raise typer.BadParameter("trio is not installed: pip install trio", param_hint="'--loop'")
    if metrics_port is not None and importlib.util.find_spec("prometheus_client") is None:
        raise typer.BadParameter(
            "prometheus-client is not installed: pip install 'jdobb-async-queue[metrics]'",
            param_hint="'--metrics-port'",
        )
    configure_logging(log_level, log_format)
    found = load_target(target)
    state = StopState()
    ops = OpsPorts(host=ops_host, metrics=metrics_port, health=health_port)
    run = partial(
        run_worker,
        found,
        target,
        concurrency=concurrency,
        burst=burst,
        loop=loop.value,
        state=state,
        ops=ops,
    )
    anyio.run(run, backend=loop.value)
    if state.exit_code:
        raise typer.Exit(state.exit_code)


def load_target(spec: str) -> object:
    """Import ``module:attribute`` (the attribute may be dotted) from the current directory.

    :raises typer.BadParameter: for a malformed spec, a module that does not exist, or a
        missing attribute (an error raised *inside* the user's module propagates as is: its
        traceback is what the user needs)
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(
            f"expected module:attribute such as myapp.jobs:worker, not {spec!r}",
            param_hint=_TARGET_HINT,
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # `jdobb-queue worker app:w` finds ./app.py, as python -m does
    try:
        found: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not _is_prefix(exc.name, module_name):
            raise  # the user's module imports something missing: show where
        raise typer.BadParameter(f"no module named {exc.name!r}", param_hint=_TARGET_HINT) from None
    for name in attribute.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise typer.BadParameter(
                f"{module_name!r} has no attribute {attribute!r}", param_hint=_TARGET_HINT
            ) from None
    return found


def _is_prefix(missing: str, module_name: str) -> bool:
    return module_name == missing or module_name.startswith(missing + ".")


async def build_worker(target: object, spec: str) -> Worker:
    """``target`` itself if it is a Worker, else what calling it (and awaiting that) returns.

    :raises typer.BadParameter: if that is not a :class:`Worker`
    """
    if isinstance(target, Worker):
        return target
    if not callable(target):
        raise typer.BadParameter(
            f"{spec} is a {type(target).__name__}: expected a Worker or a callable returning one",
            param_hint=_TARGET_HINT,
        )
    made = target()
    if inspect.isawaitable(made):
        made = await made
    if not isinstance(made, Worker):
        raise typer.BadParameter(
            f"{spec}() returned a {type(made).__name__}, not a Worker", param_hint=_TARGET_HINT
        )
    return made


@dataclass
class StopState:
    """What the signal watcher has seen, read for the exit status."""

    first: signal.Signals | None = None
    hard: signal.Signals | None = None

    @property
    def exit_code(self) -> int:
        """0 after a graceful stop (or none), 128 + the signal's number after a hard stop."""
        return 0 if self.hard is None else 128 + int(self.hard)


def log_outcomes(worker: Worker) -> None:
    """Log one line per attempt that ends in ``worker`` (its ``on_outcome`` hook)."""
    worker.on_outcome(_log_outcome)


def _log_outcome(outcome: JobOutcome) -> None:
    # The outcome's own job_id, job_type and attempt: reading outcome.job would build a pydantic
    # Job for every attempt; only a retry's message needs it (for max_retries).
    job_id, job_type, attempt = outcome.job_id, outcome.job_type, outcome.attempt
    took = f"{outcome.duration * 1000:.1f} ms"
    # The fields of the JSON log format (one object per line); the text format ignores them.
    fields = {
        "job_id": job_id,
        "job_type": job_type,
        "attempt": attempt,
        "outcome": outcome.status,
        "duration": round(outcome.duration, 6),
    }
    if outcome.error is not None:
        fields["error"] = outcome.error
    extra = {"job": fields}
    if outcome.status == "complete":
        log.info("job %s %s complete in %s", job_id, job_type, took, extra=extra)
    elif outcome.status == "released":
        log.warning(
            "job %s %s handed back to the queue (worker stopping)", job_id, job_type, extra=extra
        )
    elif outcome.status == "lost":
        log.warning(
            "job %s %s taken away after %s (cancelled, or its lease lost)",
            job_id,
            job_type,
            took,
            extra=extra,
        )
    else:
        retry = ""
        if outcome.status == "retrying":
            retry = f" (attempt {attempt} of {outcome.job.max_retries + 1}, will retry)"
        log.warning("job %s %s failed: %s%s", job_id, job_type, outcome.error, retry, extra=extra)


async def run_worker(
    target: object,
    spec: str,
    *,
    concurrency: int | None,
    burst: bool,
    loop: str,
    state: StopState,
    ops: OpsPorts | None = None,
) -> None:
    """Build the Worker from ``target``, apply ``--concurrency``, log, and serve until stopped.

    The worker's queue is closed at the end, whatever happened.

    :raises typer.BadParameter: if ``target`` gives no Worker
    :raises ConfigurationError: from ``Worker.run()``, e.g. when it has no handler
    """
    worker = await build_worker(target, spec)
    try:
        if concurrency is not None:
            worker.max_concurrent = concurrency  # a plain attribute, read when run() starts
        log_outcomes(worker)
        types = worker.check()  # ConfigurationError now (no handler) rather than mid-start
        log.info(
            "worker %s started on %s: %s; concurrency %d%s",
            worker.worker_id,
            loop,
            ", ".join(types),
            worker.max_concurrent,
            "; burst" if burst else "",
        )
        async with anyio.create_task_group() as tg:
            await _start_ops(tg, worker, ops or OpsPorts())
            await serve(worker, burst=burst, state=state)
            tg.cancel_scope.cancel()
    finally:
        # Shielded: the backend's connections must be released even after a hard stop.
        with anyio.CancelScope(shield=True):
            await worker.queue.close()
    log.info("worker %s stopped", worker.worker_id)


async def serve(worker: Worker, *, burst: bool, state: StopState) -> None:
    """Run ``worker`` until it stops: by itself (``burst``), or on SIGINT / SIGTERM.

    The first signal calls ``worker.stop()``; the second cancels ``worker.run()``.
    """
    async with anyio.create_task_group() as tg:
        await tg.start(_watch_signals, worker, tg, state)
        await worker.run(burst=burst)
        tg.cancel_scope.cancel()  # ended by itself or by stop(): the watcher is done too


async def _watch_signals(
    worker: Worker,
    tg: TaskGroup,
    state: StopState,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            if state.first is None:
                state.first = signum
                log.info(
                    "%s: finishing running jobs (up to %gs); send it again to stop at once",
                    signum.name,
                    worker.drain_timeout,
                )
                tg.start_soon(worker.stop)
            else:
                state.hard = signum
                log.warning(
                    "%s again: stopping now, running jobs go back to the queue", signum.name
                )
                tg.cancel_scope.cancel()
                return


async def _start_ops(tg: TaskGroup, worker: Worker, ops: OpsPorts) -> None:
    """Serve ``/metrics`` and ``/healthz`` as asked (one listener if both ports are the same)."""
    routes: dict[int, dict[str, Route]] = {}
    if ops.metrics is not None:
        from ..metrics import CONTENT_TYPE, QueueMetrics

        metrics = QueueMetrics(worker.queue)
        metrics.instrument(worker)
        await tg.start(metrics.run)

        async def serve_metrics() -> tuple[int, str, bytes]:
            return 200, CONTENT_TYPE, metrics.exposition()

        routes.setdefault(ops.metrics, {})["/metrics"] = serve_metrics
    if ops.health is not None:
        routes.setdefault(ops.health, {})["/healthz"] = worker_health(worker)
    for port, table in routes.items():
        bound = await tg.start(serve_http, table, ops.host, port)
        log.info("serving %s on http://%s:%d", " and ".join(table), ops.host, bound)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a job outcome's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = getattr(record, "job", None)
        if isinstance(job, dict):
            entry.update(job)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: LogLevel = LogLevel.INFO, fmt: LogFormat = LogFormat.TEXT) -> None:
    """One line per event on stderr: time, level, message (or a JSON object, ``fmt=json``), for
    the CLI's own logger and the library's (``jdobb_async_queue.*``)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    library = logging.getLogger("jdobb_async_queue")
    for target in (log, library):
        target.handlers = [h for h in target.handlers if not getattr(h, "_jdobb_cli", False)]
    handler._jdobb_cli = True  # type: ignore[attr-defined]
    library.addHandler(handler)
    library.setLevel(level.value.upper())
    log.propagate = True
