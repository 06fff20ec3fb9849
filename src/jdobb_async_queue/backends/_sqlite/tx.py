"""What a request works with inside a transaction: :class:`Batch`, :class:`Tx`, and the
conversions between rows and records.

A :class:`Tx` collects what its request will announce once the batch has committed (job
updates, wake-ups, cancellations) and how it moved jobs between statuses and lanes; the store
drops it if the request is rolled back, and otherwise adds its moves to the ``counts`` table
once per batch. Every statement that changes a job's status or lane, inserts or deletes a job
reports it through :meth:`Tx.moved`: a trigger would do it for every row, at about a third of
the cost of a claim or a completion.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..._codec import dump_json, load_json
from ..._models import JobStatus
from ..._records import JobRecord, UpdateRecord
from . import queries as q

__all__ = [
    "CHUNK",
    "NO_LANE",
    "STATUSES",
    "Batch",
    "Place",
    "Row",
    "Tx",
    "lane_of",
    "place",
    "record_of",
    "to_json",
    "update_of",
]

Row = tuple[Any, ...]
#: Where a job is counted: its status and lane (``NO_LANE`` outside PENDING).
Place = tuple[str, int]
NO_LANE = -1
STATUSES = tuple(s.value for s in JobStatus)
#: Ids per ``IN (...)`` list (some statements hold two): well under SQLite's 999 parameters.
CHUNK = 400
_JSON_FIELDS = frozenset({"data", "metadata", "results", "depends_on"})


@dataclass
class Batch:
    """State shared by the requests of one transaction."""

    conn: sqlite3.Connection
    #: Jobs someone in this process subscribed to: only their updates are built.
    watched: frozenset[str] = frozenset()
    #: The last ``touched`` value handed out, if known (None: read it from the table).
    touched: int | None = None
    #: Jobs moved by the requests that succeeded so far, per place (see ``Tx.moved``).
    counts: Counter[Place] = field(default_factory=Counter)

    def touch(self) -> int:
        """A fresh ``touched`` value: the order of updates, for "most recently updated"."""
        if self.touched is None:
            found = (self.conn.execute(q.MAX_TOUCHED, (s,)).fetchone()[0] for s in STATUSES)
            self.touched = max((t for t in found if t is not None), default=0)
        self.touched += 1
        return self.touched


@dataclass
class Tx:
    """One request inside a batch, and what it will announce once the batch has committed."""

    batch: Batch
    updates: list[UpdateRecord] = field(default_factory=list)
    #: Jobs may have become claimable: wake idle workers.
    wake: bool = False
    #: Jobs cancelled while PROCESSING: their workers must stop them.
    cancelled: list[str] = field(default_factory=list)
    counts: Counter[Place] = field(default_factory=Counter)

    @property
    def conn(self) -> sqlite3.Connection:
        """The batch's connection, inside its transaction."""
        return self.batch.conn

    def moved(self, source: Place | None, target: Place | None, n: int = 1) -> None:
        """Count ``n`` jobs moving from ``source`` to ``target`` (None: stored or deleted)."""
        if source is not None:
            self.counts[source] -= n
        if target is not None:
            self.counts[target] += n

    def emit(self, row: Row) -> None:
        """Announce a changed job (``UPDATE_COLUMNS`` first in ``row``) if anyone watches it."""
        if row[0] in self.batch.watched:
            self.updates.append(update_of(row))


def record_of(row: Row) -> JobRecord:
    """Build a :class:`JobRecord` from a row of ``queries.COLUMNS``."""
    values = dict(zip(q.FIELDS, row, strict=True))
    for name in _JSON_FIELDS:
        if values[name] is not None:
            values[name] = load_json(values[name])
    return JobRecord(**values)


def update_of(row: Row) -> UpdateRecord:
    """Build an :class:`UpdateRecord` from a row of ``queries.UPDATE_COLUMNS``."""
    job_id, status, progress, message, results, error, updated_at = row[:7]
    return UpdateRecord(
        job_id=job_id,
        status=status,
        progress=progress,
        message=message,
        results=None if results is None else load_json(results),
        error=error,
        timestamp=updated_at,
    )


def to_json(value: Any, what: str) -> str:
    """``value`` as JSON text (checked by :func:`~jdobb_async_queue._codec.dump_json`)."""
    return dump_json(value, what).decode()


def place(status: str, lane: int | None) -> Place:
    """Where a job in ``status`` (and ``lane``, if PENDING) is counted."""
    return (status, NO_LANE if lane is None else lane)


def lane_of(execute_at: float | None, pending_deps: int, now: float) -> int:
    """The lane of a PENDING job: waiting, scheduled or ready."""
    if pending_deps > 0:
        return q.WAITING
    if execute_at is not None and execute_at > now:
        return q.SCHEDULED
    return q.READY
