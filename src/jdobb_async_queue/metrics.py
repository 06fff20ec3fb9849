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

The counter and the histograms are recorded in plain lists, one set per job type, folded into
counts in batches and made into metric families only when the registry is scraped (a custom
collector): an attempt costs three list appends, with no lock, instead of three labelled
``prometheus_client`` observations, each with its own lock (the Overhead section of
``docs/operations.md`` has the figures). The exposition is the same, without the optional
``*_created`` series.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ._errors import BackendUnavailable, MissingDependencyError
from ._models import JobOutcome
from ._queue import JobQueue
from ._worker import Worker

try:
    from prometheus_client import CollectorRegistry, Gauge, generate_latest, make_asgi_app
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
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
    :raises ValueError: (from ``prometheus_client``) if ``registry`` already holds metrics of
        these names
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
        self._attempts = _AttemptTallies(prefix)
        reg.register(self._attempts)
        #: ``jdobb_jobs``, by ``status``.
        self.jobs = Gauge(
            f"{prefix}_jobs", "Jobs in the store, by status.", ("status",), registry=reg
        )
        #: ``jdobb_workers``.
        self.workers = Gauge(f"{prefix}_workers", "Live workers in the registry.", registry=reg)

    def instrument(self, worker: Worker) -> None:
        """Count and time every attempt ``worker`` runs (through ``Worker.on_outcome``)."""
        worker.on_outcome(self._attempts.observe)

    def observe(self, outcome: JobOutcome) -> None:
        """Record one ended attempt (a ``Worker.on_outcome`` callback)."""
        self._attempts.observe(outcome)

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


#: Attempts of one job type recorded before :meth:`_AttemptTallies.observe` folds them into
#: its tally (a scrape folds whatever is there): what bounds the memory they hold, under
#: 100 kB per job type.
FOLD_AT = 1024


class _AttemptTallies:
    """The attempts counter and the run-time and queue-wait histograms, as a collector.

    :meth:`observe`, once per attempt, only appends the attempt's status, run time and wait to
    three lists of its job type. Every :data:`FOLD_AT` attempts of a type, and at each scrape,
    :meth:`_fold` moves what the lists hold into the tallies a batch at a time, mostly in C (a
    ``Counter`` of the statuses; the run times, and the waits, sorted once, then one
    ``bisect`` per bucket bound), which costs less than bucketising each attempt as it ends.

    Thread safety: the worker calls :meth:`observe` on its event loop's thread, and a scrape
    may come from another (prometheus-client's HTTP server thread), as may a worker of another
    thread sharing this instance. ``list.append`` is atomic (under the GIL, and in a
    free-threaded build, where each list locks itself), so :meth:`observe` takes no lock; a
    fold takes one, as does reading the tallies, and removes from each list only the items it
    copied (``del values[:n]``), so what is appended meanwhile waits for the next fold. Each
    list is folded on its own, so a fold that runs between the appends of one attempt counts
    its status now and its run time at the next fold: a scrape in between may see the count
    one ahead of the histogram, never a lost attempt.
    """

    def __init__(self, prefix: str) -> None:
        self._names = (
            f"{prefix}_job_attempts",
            f"{prefix}_job_run_seconds",
            f"{prefix}_job_queue_wait_seconds",
        )
        self._lock = threading.Lock()
        self._fresh: dict[str, _Fresh] = {}  # appended by observe, not folded yet
        self._by_type: dict[str, _Tally] = {}  # folded: read by collect, under the lock

    def observe(self, outcome: JobOutcome) -> None:
        """Record one ended attempt (a ``Worker.on_outcome`` callback)."""
        fresh = self._fresh.get(outcome.job_type)
        if fresh is None:  # setdefault: two threads seeing a new type at once keep one
            fresh = self._fresh.setdefault(outcome.job_type, _Fresh())
        fresh.statuses.append(outcome.status)
        runs = fresh.runs
        runs.append(outcome.duration)
        wait = outcome.queue_wait
        if wait is not None:
            fresh.waits.append(wait)
        if len(runs) >= FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        """Move every job type's fresh attempts into its tally."""
        with self._lock:
            for job_type, fresh in list(self._fresh.items()):
                tally = self._by_type.get(job_type)
                if tally is None:
                    tally = self._by_type[job_type] = _Tally()
                tally.add(_taken(fresh.statuses), _taken(fresh.runs), _taken(fresh.waits))

    def describe(self) -> Iterator[Metric]:
        """The families, empty: how the registry learns their names (and refuses duplicates)."""
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        """The families, filled from a copy of the tallies taken under the lock, after a fold."""
        self._fold()
        with self._lock:
            copies = [(job_type, tally.copy()) for job_type, tally in self._by_type.items()]
        attempts, run, wait = families = self._families()
        for job_type, tally in copies:
            for status, count in tally.outcomes.items():
                attempts.add_metric((job_type, status), count)
            run.add_metric((job_type,), _cumulative(tally.run), tally.run_sum)
            wait.add_metric((job_type,), _cumulative(tally.wait), tally.wait_sum)
        return iter(families)

    def _families(self) -> tuple[CounterMetricFamily, HistogramMetricFamily, HistogramMetricFamily]:
        attempts, run, wait = self._names
        return (
            CounterMetricFamily(
                attempts,
                "Attempts that ended, by job type and outcome.",
                labels=("job_type", "outcome"),
            ),
            HistogramMetricFamily(run, "How long attempts ran, by job type.", labels=("job_type",)),
            HistogramMetricFamily(
                wait,
                "From enqueue (or the due time) to the start of the attempt, by job type.",
                labels=("job_type",),
            ),
        )


class _Fresh:
    """One job type's attempts recorded since the last fold, in the order they ended (the
    waits: of the attempts that have one)."""

    __slots__ = ("runs", "statuses", "waits")

    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.runs: list[float] = []
        self.waits: list[float] = []


def _taken(values: list[Any]) -> list[Any]:
    """The items ``values`` holds now, removed from it (not those appended meanwhile)."""
    n = len(values)
    taken = values[:n]
    del values[:n]
    return taken


class _Tally:
    """One job type's counts: attempts by outcome; for each histogram, observations per bucket
    (``run[i]``: at most ``BUCKETS[i]`` and above the one before; the last: above them all) and
    their sum."""

    __slots__ = ("outcomes", "run", "run_sum", "wait", "wait_sum")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.run = [0] * (len(BUCKETS) + 1)
        self.run_sum = 0.0
        self.wait = [0] * (len(BUCKETS) + 1)
        self.wait_sum = 0.0

    def add(self, statuses: list[str], runs: list[float], waits: list[float]) -> None:
        """Count a batch of attempts (their statuses, run times and waits)."""
        outcomes = self.outcomes
        for status, count in Counter(statuses).items():
            outcomes[status] = outcomes.get(status, 0) + count
        self.run_sum += _bucketise(self.run, runs)
        self.wait_sum += _bucketise(self.wait, waits)

    def copy(self) -> _Tally:
        copy = _Tally()
        copy.outcomes = dict(self.outcomes)
        copy.run, copy.run_sum = list(self.run), self.run_sum
        copy.wait, copy.wait_sum = list(self.wait), self.wait_sum
        return copy


def _bucketise(counts: list[int], values: list[float]) -> float:
    """Add ``values`` to the per-bucket ``counts`` (sorting ``values``); return their sum."""
    values.sort()
    below = 0  # values in the buckets so far: at most the bound before
    for i, bound in enumerate(BUCKETS):
        upto = bisect_right(values, bound)
        counts[i] += upto - below
        below = upto
    counts[-1] += len(values) - below
    return sum(values)


# The ``le`` labels as prometheus_client writes them ("0.001", "1.0", "600.0"; its
# floatToGoString, which is untyped, gives the same for these bounds).
_LE = (*(repr(float(bound)) for bound in BUCKETS), "+Inf")


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts as Prometheus' ``le`` buckets: each holds all observations up to it."""
    total, buckets = 0, []
    for le, count in zip(_LE, counts, strict=True):
        total += count
        buckets.append((le, float(total)))
    return buckets
