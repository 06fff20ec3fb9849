"""What the dashboard reads from a queue: JSON views of jobs, counts per type, live workers,
and the throughput sampler. Only the public async API of :class:`JobQueue` is used."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any

import anyio

from .._models import Job, JobStatus, QueueStats
from .._queue import JobQueue

__all__ = [
    "STATUSES",
    "Sampler",
    "TypeCounts",
    "job_json",
    "stats_json",
    "to_plain",
    "workers_of",
]

log = logging.getLogger("jdobb_async_queue.dashboard")

#: Every status, in the order the pages show them.
STATUSES: tuple[str, ...] = tuple(s.value for s in JobStatus)


def job_json(job: Job) -> dict[str, Any]:
    """A job as the JSON API returns it (``duration`` included)."""
    out: dict[str, Any] = job.model_dump(mode="json")
    out["duration"] = job.duration
    return out


def stats_json(stats: QueueStats) -> dict[str, int]:
    """Counts by status, plus ``scheduled``, ``waiting`` and ``total``."""
    out = {name: int(value) for name, value in stats.model_dump().items()}
    out["total"] = sum(out[s] for s in STATUSES)
    return out


def to_plain(value: object) -> Any:
    """Turn a worker (a pydantic model, dataclass, msgspec struct, mapping or object) or any
    value inside one into JSON-compatible data."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Enum):
        return to_plain(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return to_plain(dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value))
    fields = getattr(value, "__struct_fields__", None)  # msgspec.Struct
    if isinstance(fields, tuple):
        return {name: to_plain(getattr(value, name)) for name in fields}
    if hasattr(value, "__dict__"):
        return {k: to_plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


async def workers_of(queue: JobQueue) -> list[dict[str, Any]] | None:
    """The queue's live workers as plain dicts, or ``None`` when the queue cannot list them
    (no ``workers()`` method yet)."""
    method = getattr(queue, "workers", None)
    if method is None or not callable(method):
        return None
    found = await method()
    rows: list[dict[str, Any]] = []
    for worker in found:
        plain = to_plain(worker)
        rows.append(plain if isinstance(plain, dict) else {"worker": plain})
    return rows


class TypeCounts:
    """Jobs per type and status, read with ``list_jobs`` (at most ``cap`` jobs per status) and
    kept for ``max_age`` seconds, so pages that refresh often do not scan the store each time.

    :ivar truncated: the statuses where more than ``cap`` jobs exist (their counts are of the
        ``cap`` most recent ones)
    """

    def __init__(self, queue: JobQueue, *, cap: int = 5000, max_age: float = 5.0) -> None:
        self.queue = queue
        self.cap = cap
        self.max_age = max_age
        self.counts: dict[str, dict[str, int]] = {}
        self.truncated: list[str] = []
        self._read_at: float | None = None

    async def read(self, *, fresh: bool = False) -> dict[str, dict[str, int]]:
        """Counts by type, then status (every status present, zero included)."""
        now = time.monotonic()
        if not fresh and self._read_at is not None and now - self._read_at < self.max_age:
            return self.counts
        counts: dict[str, dict[str, int]] = {}
        truncated: list[str] = []
        for status in STATUSES:
            jobs = await self.queue.list_jobs(status, limit=self.cap)
            if len(jobs) >= self.cap:
                truncated.append(status)
            for job in jobs:
                row = counts.setdefault(job.job_type, dict.fromkeys(STATUSES, 0))
                row[status] += 1
        self.counts = dict(sorted(counts.items()))
        self.truncated = truncated
        self._read_at = now
        return self.counts

    def forget(self) -> None:
        """Read afresh next time (after an action changed the counts)."""
        self._read_at = None


class Sampler:
    """Samples ``queue.stats()`` every ``interval`` seconds and keeps the last ``history``
    samples; the throughput is the change of the finished counts between two samples.

    ``run()`` samples in the background (the app's lifespan starts it); when the app is
    mounted somewhere that does not run sub-application lifespans, ``maybe_sample()`` (called
    by the pages and ``/api/throughput``) takes the samples instead.
    """

    def __init__(self, queue: JobQueue, *, interval: float = 5.0, history: int = 180) -> None:
        if not interval > 0:
            raise ValueError(f"sample interval must be > 0, not {interval!r}")
        if history < 2:
            raise ValueError(f"history must be >= 2 samples, not {history!r}")
        self.queue = queue
        self.interval = float(interval)
        self.samples: deque[tuple[float, QueueStats]] = deque(maxlen=history)
        self._busy = False

    async def sample(self) -> None:
        """Take one sample now (skipped while another one is being taken)."""
        if self._busy:
            return
        self._busy = True
        try:
            stats = await self.queue.stats()
            self.samples.append((time.time(), stats))
        finally:
            self._busy = False

    async def maybe_sample(self) -> None:
        """Take a sample if the last one is ``interval`` seconds old (or there is none)."""
        if not self.samples or time.time() - self.samples[-1][0] >= self.interval:
            await self.sample()

    async def run(self) -> None:
        """Sample forever, every ``interval`` seconds; a failing ``stats()`` is logged and the
        next one tried."""
        while True:
            try:
                await self.sample()
            except Exception:  # the store is down: keep the dashboard up
                log.warning("dashboard: could not sample the queue's stats", exc_info=True)
            await anyio.sleep(self.interval)

    def series(self) -> dict[str, Any]:
        """The throughput as JSON: one point per interval between two samples."""
        points: list[dict[str, float]] = []
        previous: tuple[float, QueueStats] | None = None
        for at, stats in self.samples:
            if previous is not None:
                then, before = previous
                points.append(
                    {
                        "at": at,
                        "seconds": max(at - then, 1e-9),
                        # Purges and retries lower the counts: never a negative throughput.
                        "complete": max(0, stats.complete - before.complete),
                        "failed": max(0, stats.failed - before.failed),
                        "cancelled": max(0, stats.cancelled - before.cancelled),
                    }
                )
            previous = (at, stats)
        return {"interval": self.interval, "points": points}
