"""The reads of the SQLite backend, run inside an open transaction.

``list_jobs`` and ``stats`` first tidy up (delete expired jobs, promote due ones), as claims
do, so they run in write transactions; ``get``, ``next_due`` and the cross-process look-ups
read only.
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgspec

from ..._models import QueueStats
from ..._records import JobRecord, UpdateRecord
from . import queries as q
from .tx import CHUNK, STATUSES, Row, Tx, record_of
from .writes import housekeep, records_of

__all__ = ["get", "list_jobs", "messages_since", "next_due", "stats", "watch"]

#: More rows than any file holds; twice it still fits a signed 64-bit integer.
_NO_LIMIT = 2**61


def get(tx: Tx, job_id: str, now: float) -> JobRecord | None:
    """The job, unless unknown or expired.

    :raises CorruptRow: if its row cannot be read (a read-only request cannot set it aside:
        the backend then runs ``writes.set_aside_and_get``)
    """
    row = tx.conn.execute(q.GET, {"id": job_id, "now": now}).fetchone()
    return None if row is None else record_of(row)


def list_jobs(
    tx: Tx, status: str | None, job_type: str | None, limit: int, offset: int, now: float
) -> list[JobRecord]:
    """Jobs in listing order (see ``QueueBackend.list_jobs``). A huge ``limit`` (the queue
    passes 2**62 for "no limit") is capped so ``offset + limit`` fits SQLite's 64-bit LIMIT."""
    limit, offset = min(limit, _NO_LIMIT), min(offset, _NO_LIMIT)
    housekeep(tx, now)
    params = {"status": status, "job_type": job_type, "now": now}
    if status == "pending":
        return _list_pending(tx, job_type, limit, offset, params)
    # Most recently updated first: one index range per status, merged.
    sql = q.list_recent(job_type is not None)
    ranges = [
        tx.conn.execute(sql, {**params, "status": s, "limit": offset + limit}).fetchall()
        for s in ([status] if status is not None else STATUSES)
    ]
    picked = itertools.islice(heapq.merge(*ranges, reverse=True), offset, offset + limit)
    return _by_seq(tx, [seq for _, seq in picked], now)


def _by_seq(tx: Tx, seqs: list[int], now: float) -> list[JobRecord]:
    found: dict[int, JobRecord] = {}
    for start in range(0, len(seqs), CHUNK):
        chunk = seqs[start : start + CHUNK]
        rows = tx.conn.execute(q.by_seq(len(chunk)), chunk).fetchall()
        order = {row[1]: row[0] for row in rows}  # id -> seq
        for record in records_of(tx, [tuple(row[1:]) for row in rows], now):
            found[order[record.id]] = record
    return [found[seq] for seq in seqs if seq in found]  # corrupt ones were set aside


def _list_pending(
    tx: Tx, job_type: str | None, limit: int, offset: int, params: dict[str, Any]
) -> list[JobRecord]:
    found: list[JobRecord] = []
    typed = job_type is not None
    for lane in (q.READY, q.SCHEDULED, q.WAITING):
        if len(found) >= limit:
            break
        page = {**params, "limit": limit - len(found), "offset": offset}
        rows = tx.conn.execute(q.list_lane(lane, typed), page).fetchall()
        found += records_of(tx, rows, params["now"])
        if offset and not rows:  # the whole lane lies before the offset: skip past it
            offset -= tx.conn.execute(q.count_lane(lane, typed), params).fetchone()[0]
            offset = max(offset, 0)
        else:
            offset = 0
    return found


def stats(tx: Tx, now: float) -> QueueStats:
    """Counts by status and lane: the ``counts`` table, plus what this batch has moved so far
    (it is written once, before the commit)."""
    housekeep(tx, now)
    moved = Counter(tx.batch.counts)
    moved.update(tx.counts)
    counts: dict[str, int] = {}
    for status, lane, stored in tx.conn.execute(q.COUNTS):
        n = stored + moved[(status, lane)]
        counts[status] = counts.get(status, 0) + n
        if lane == q.SCHEDULED:
            counts["scheduled"] = n
        elif lane == q.WAITING:
            counts["waiting"] = n
    return QueueStats(**counts)


def next_due(tx: Tx) -> float | None:
    """The earliest due time of a scheduled job (possibly past: then claim at once)."""
    due = tx.conn.execute(q.NEXT_DUE).fetchone()[0]
    return None if due is None else float(due)


def messages_since(
    conn: sqlite3.Connection, last: int, origin: str, job_ids: frozenset[str]
) -> tuple[int, list[UpdateRecord]]:
    """Other backends' custom updates after ``last`` for these jobs, and the new ``last``."""
    found: list[UpdateRecord] = []
    for seq, job_id, body in conn.execute(q.MESSAGES_SINCE, (last, origin)):
        last = seq
        if job_id in job_ids:
            found.append(msgspec.json.decode(body, type=UpdateRecord))
    return max(last, conn.execute(q.LAST_MESSAGE).fetchone()[0]), found


def watch(conn: sqlite3.Connection, job_ids: Sequence[str]) -> list[Row]:
    """Rows (``queries.WATCH``) of jobs this process watches, read after a foreign commit."""
    rows: list[Row] = []
    for start in range(0, len(job_ids), CHUNK):
        chunk = job_ids[start : start + CHUNK]
        rows += conn.execute(q.watch(len(chunk)), chunk).fetchall()
    return rows
