"""Prometheus metrics of a queue and its workers (the ``metrics`` extra: ``prometheus-client``).

::

    from jdobb_async_queue.metrics import QueueMetrics

    metrics = QueueMetrics(queue)
    metrics.instrument(worker)          # counts and times every attempt of this worker
    app.mount("/metrics", metrics.asgi_app())   # or: jdobb-queue worker ... --metrics-port 9100

=============================================== ========= =====================================
name                                            type      labels
=============================================== ========= =====================================
``jdobb_job_attempts_total``                    counter   ``job_type``, ``outcome`` (complete,
                                                          failed, retrying, lost, released)
``jdobb_job_run_seconds``                       histogram ``job_type``: how long attempts ran
``jdobb_job_queue_wait_seconds``                histogram ``job_type``: enqueue (or due time)
                                                          to start of the attempt
``jdobb_jobs``                                  gauge     ``status`` (and ``scheduled``,
                                                          ``waiting``): jobs in the store
``jdobb_workers``                               gauge     live workers in the registry
=============================================== ========= =====================================

Counters and histograms are this process's (each worker exports its own, as Prometheus
expects); the gauges describe the whole store, refreshed by :meth:`QueueMetrics.refresh` (run
:meth:`QueueMetrics.run` beside the worker, which the CLI does). Each :class:`QueueMetrics` has
a registry of its own unless you pass one (``prometheus_client.REGISTRY`` to share the global).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ._errors import BackendUnavailable, MissingDependencyError
from ._models import JobOutcome
from ._queue import JobQueue
from ._worker import Worker

try:
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
        make_asgi_app,
    )
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError:  # pragma: no cover - the extra is not installed
    raise MissingDependencyError("metrics", "metrics", "prometheus_client", feature=True) from None

__all__ = ["CONTENT_TYPE", "QueueMetrics"]

#: The ``Content-Type`` of :meth:`QueueMetrics.exposition`.
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Buckets (seconds) of the run-time and queue-wait histograms: 1 ms to 10 min.
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

_GAUGED = ("pending", "processing", "complete", "failed", "cancelled", "scheduled", "waiting")


class QueueMetrics:
    """The Prometheus metrics of ``queue`` (see the module docs for the list).

    :param queue: whose store the gauges describe
    :param registry: where the metrics are registered (default: a new one of its own)
    :param prefix: the first word of every name
    """

    def __init__(
        self,
        queue: JobQueue,
        *,
        registry: CollectorRegistry | None = None,
        prefix: str = "jdobb",
    ) -> None:
        self.queue = queue
        self.registry = CollectorRegistry() if registry is None else registry
        reg = self.registry
        self.attempts = Counter(
            f"{prefix}_job_attempts",
            "Attempts that ended, by job type and outcome.",
            ("job_type", "outcome"),
            registry=reg,
        )
        self.run_seconds = Histogram(
            f"{prefix}_job_run_seconds",
            "How long attempts ran, by job type.",
            ("job_type",),
            buckets=BUCKETS,
            registry=reg,
        )
        self.queue_wait_seconds = Histogram(
            f"{prefix}_job_queue_wait_seconds",
            "From enqueue (or the due time) to the start of the attempt, by job type.",
            ("job_type",),
            buckets=BUCKETS,
            registry=reg,
        )
        self.jobs = Gauge(
            f"{prefix}_jobs", "Jobs in the store, by status.", ("status",), registry=reg
        )
        self.workers = Gauge(f"{prefix}_workers", "Live workers in the registry.", registry=reg)

    def instrument(self, worker: Worker) -> None:
        """Count and time every attempt ``worker`` runs (through ``Worker.on_outcome``)."""
        worker.on_outcome(self.observe)

    def observe(self, outcome: JobOutcome) -> None:
        """Record one ended attempt (a ``Worker.on_outcome`` callback)."""
        job = outcome.job
        self.attempts.labels(job.job_type, outcome.status).inc()
        self.run_seconds.labels(job.job_type).observe(outcome.duration)
        if job.started_at is not None:
            since = _latest(job.created_at, job.execute_at)
            wait = (job.started_at - since).total_seconds()
            self.queue_wait_seconds.labels(job.job_type).observe(max(wait, 0.0))

    async def refresh(self) -> None:
        """Read the store's counts (and live workers) into the gauges.

        :raises BackendUnavailable: when the store does not answer (the gauges keep their values)
        """
        stats = await self.queue.stats()
        for status in _GAUGED:
            self.jobs.labels(status).set(getattr(stats, status))
        workers = getattr(self.queue, "workers", None)
        if workers is not None:
            self.workers.set(len(await workers()))

    async def run(
        self, interval: float = 5.0, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Refresh the gauges every ``interval`` seconds until cancelled (an outage skips a
        refresh)."""
        task_status.started()
        while True:
            try:
                await self.refresh()
            except BackendUnavailable:
                pass  # keep the last values; the next refresh tries again
            await anyio.sleep(interval)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format (serve it with :data:`CONTENT_TYPE`)."""
        return bytes(generate_latest(self.registry))

    def asgi_app(self) -> Any:
        """An ASGI application that serves the metrics (mount it in your own app)."""
        return make_asgi_app(registry=self.registry)


def _latest(created: datetime, due: datetime | None) -> datetime:
    return created if due is None or due < created else due
