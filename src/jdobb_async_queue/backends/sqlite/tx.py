"""What a request works with inside a transaction: :class:`Batch`, :class:`Tx`, and the
conversions between rows and records.

A :class:`Tx` collects what its request will announce once the batch has committed (job
updates, wake-ups, cancellations) and how it moved jobs between statuses and lanes; the store
drops it if the request is rolled back, and otherwise adds its moves to the ``counts`` table
once per batch. Every statement that changes a job's status or lane, inserts or deletes a job
reports it through :meth:`Tx.moved`: a trigger would do it for every row, at about a third of
the cost of a claim or a completion.

Rows and records convert by the one declaration of a job's fields
(:class:`~jdobb_async_queue._records.JobRecord`): a row of ``queries.COLUMNS`` holds its fields in
order, the JSON ones as JSON text. Payloads are encoded here, never checked again: the queue
checked them once, on their way in.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..._codec import load_json
from ..._errors import SerializationError
from ..._models import JobStatus
from ..._records import (
    JOB_FIELDS,
    JSON_FIELDS,
    PRIORITY_RANK,
    UPDATE_FIELDS,
    JobRecord,
    UpdateRecord,
    update_of_values,
)
from . import queries as q

__all__ = [
    "CHUNK",
    "CorruptRow",
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
#: What each JSON column must decode to (those in ``_NULLABLE`` may also be NULL).
_JSON_TYPES: dict[str, type] = dict(JSON_FIELDS)
_NULLABLE = frozenset(f.name for f in JOB_FIELDS if f.optional)


class CorruptRow(Exception):
    """A stored job row this code cannot read (undecodable JSON, an unknown status...).

    :param job_id: the job
    :param reason: what is wrong with it, for its error and the log
    """

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"the stored record of job {job_id!r} is corrupt: {reason}")


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
    #: A request that ran without a SAVEPOINT of its own failed: roll the batch back.
    undo: bool = False

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
    #: Jobs cancelled while PROCESSING, with the fence of the attempt that was running: its
    #: worker must stop that attempt (and only that one).
    cancelled: list[tuple[str, int]] = field(default_factory=list)
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


#: Positions of the JSON columns in ``queries.COLUMNS``, each with a decoder that checks the type.
_DECODERS: tuple[tuple[int, msgspec.json.Decoder[Any]], ...] = tuple(
    (q.FIELDS.index(name), msgspec.json.Decoder(kind)) for name, kind in _JSON_TYPES.items()
)
_STATUS = q.FIELDS.index("status")
_PRIORITY = q.FIELDS.index("priority")
_PRIORITIES = frozenset(PRIORITY_RANK)
_STATUS_SET = frozenset(STATUSES)


def record_of(row: Row) -> JobRecord:
    """Build a :class:`JobRecord` from a row of ``queries.COLUMNS``.

    :raises CorruptRow: if the row cannot be read (see :func:`corruption`)
    """
    # The common case in one pass: typed decoders check the JSON columns in C. Anything they
    # refuse takes the slow path below, which says what is wrong.
    values = list(row)
    try:
        for index, decoder in _DECODERS:
            raw = values[index]
            if raw is not None:
                values[index] = decoder.decode(raw)
    except (msgspec.DecodeError, TypeError):
        return _checked_record_of(row)
    if values[_STATUS] not in _STATUS_SET or values[_PRIORITY] not in _PRIORITIES:
        return _checked_record_of(row)
    return JobRecord(**dict(zip(q.FIELDS, values, strict=True)))


def _checked_record_of(row: Row) -> JobRecord:
    values = dict(zip(q.FIELDS, row, strict=True))
    try:
        for name in _JSON_TYPES:
            if values[name] is not None:
                values[name] = load_json(values[name])
    except (ValueError, TypeError):
        pass  # described below
    if (
        values["status"] not in STATUSES
        or values["priority"] not in PRIORITY_RANK
        or any(
            not isinstance(values[name], kind)
            for name, kind in _JSON_TYPES.items()
            if not (name in _NULLABLE and values[name] is None)
        )
    ):
        problems = corruption(dict(zip(q.FIELDS, row, strict=True)))
        raise CorruptRow(str(row[0]), "; ".join(problems.values()) or "unreadable")
    return JobRecord(**values)


def corruption(values: dict[str, Any]) -> dict[str, str]:
    """What is wrong with a row (column -> why), given as a mapping of column names to stored
    values; empty for a sound row. Checks the status, the priority and the JSON columns."""
    problems: dict[str, str] = {}
    if "status" in values and values["status"] not in STATUSES:
        problems["status"] = f"unknown status {_show(values['status'])}"
    if "priority" in values and values["priority"] not in PRIORITY_RANK:
        problems["priority"] = f"unknown priority {_show(values['priority'])}"
    for name, kind in _JSON_TYPES.items():
        raw: Any = values.get(name)
        if name not in values or (raw is None and name in _NULLABLE):
            continue
        try:
            value = load_json(raw)
        except (ValueError, TypeError) as exc:
            problems[name] = f"{name} is not JSON ({exc}): {_show(raw)}"
            continue
        if not isinstance(value, kind):
            problems[name] = f"{name} is not a JSON {kind.__name__}: {_show(raw)}"
    return problems


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


#: Where ``queries.UPDATE_COLUMNS`` holds id and status, and its JSON columns with their types.
_UPDATE_WIDTH = len(UPDATE_FIELDS)
_UPDATE_STATUS = list(UPDATE_FIELDS).index("status")
_UPDATE_JSON = [(i, JSON_FIELDS[n]) for i, n in enumerate(UPDATE_FIELDS) if n in JSON_FIELDS]


def update_of(row: Row) -> UpdateRecord:
    """Build an :class:`UpdateRecord` from a row starting with ``queries.UPDATE_COLUMNS``.

    JSON (results) that cannot be decoded (a corrupt row) is left out rather than failing the
    update.

    :raises CorruptRow: if its status is unknown (a row corrupted by hand)
    """
    values = list(row[:_UPDATE_WIDTH])
    if values[_UPDATE_STATUS] not in STATUSES:
        raise CorruptRow(str(values[0]), f"unknown status {_show(values[_UPDATE_STATUS])}")
    for index, kind in _UPDATE_JSON:
        values[index] = _lenient_json(values[index], kind)
    return update_of_values(values)


def _lenient_json(raw: Any, kind: type) -> Any:
    if raw is None:
        return None
    try:
        value = load_json(raw)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, kind) else None


_encode = msgspec.json.Encoder().encode


def to_json(value: Any, what: str) -> str:
    """``value`` as JSON text, for a JSON column.

    Not checked again: the queue checked every payload and result once, on its way in
    (:func:`~jdobb_async_queue._codec.checked_copy_within` and ``check_results``), so encoding
    is all there is left to do.

    :param what: the argument's name, for the error message
    :raises SerializationError: if ``value`` cannot be encoded at all (a record that did not
        come through the queue)
    """
    try:
        return _encode(value).decode()
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(what, str(exc)) from None


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
