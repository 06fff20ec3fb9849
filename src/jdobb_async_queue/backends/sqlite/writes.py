"""The writes of the SQLite backend: every job transition, run inside an open transaction.

Each public function is one request's work: it takes a :class:`~.tx.Tx` and returns what the
backend method returns. The store runs several in one ``BEGIN IMMEDIATE`` transaction, each
inside its own SAVEPOINT, so a request that raises leaves nothing behind while the others
commit (a lone writing request needs none: its batch is rolled back instead). Nothing here
awaits, touches the event loop or reads the clock.

How an attempt ends was decided by :mod:`jdobb_async_queue._policy`; :func:`finish_many` only
applies the decided kind. The one rule applied here is the policy's own for a lost lease
(:func:`~jdobb_async_queue._policy.lost_ends_job`). Every stored change of a job bumps its
``update_seq`` in the statement that makes it.

**Corrupt rows** (F8: undecodable JSON in ``data``, ``metadata``, ``results`` or
``depends_on``, an unknown status or priority, written by hand or by a damaged disk) are *set
aside* by :func:`set_aside` whenever a request meets one, in that request's transaction: a job
that had not ended becomes FAILED (a terminal transition: its unique key is freed and its
dependents cancelled) with the error ``"set aside: its stored record was corrupt (...)"``; one
that had ended keeps its status and gets that error. The unreadable columns are replaced by
empty values (``{}``, ``[]``, NULL; priority ``normal``) and the raw text is logged on the
``jdobb_async_queue.backend`` logger at ERROR level, so nothing that reads the job afterwards
(a worker, ``get``, ``list_jobs``, a subscriber) fails on it. A claim skips it and claims the
next job; a listing leaves it out of the page that met it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import msgspec

from ..._codec import load_json
from ..._errors import DuplicateJobError, UnknownDependencyError
from ..._policy import dependency_error, lost_ends_job, lost_error
from ..._records import (
    FIELD_BY_NAME,
    JSON_FIELDS,
    OWNED_INITIAL,
    PRIORITY_RANK,
    UPDATE_FIELDS,
    JobRecord,
    Lease,
    Outcome,
    ProgressUpdate,
    UpdateRecord,
    gone_update,
    record_update,
)
from ..._states import Event, sources
from . import queries as q
from .tx import (
    CHUNK,
    STATUSES,
    CorruptRow,
    Place,
    Row,
    Tx,
    corruption,
    lane_of,
    place,
    record_of,
    to_json,
)

__all__ = [
    "MESSAGE_TTL",
    "cancel",
    "claim",
    "enqueue_many",
    "finish_many",
    "housekeep",
    "post_message",
    "purge",
    "reclaim_expired",
    "renew_many",
    "records_of",
    "retry",
    "set_aside",
    "set_aside_and_get",
    "update_progress_many",
]

logger = logging.getLogger("jdobb_async_queue.backend")
_TERMINAL = frozenset({"complete", "failed", "cancelled"})

_BROKEN = frozenset({"failed", "cancelled"})
_CANCELLABLE = frozenset(s.value for s in sources(Event.CANCEL))
_RETRYABLE = frozenset(s.value for s in sources(Event.RETRY))
_PENDING = "pending"
_READY, _SCHEDULED, _WAITING = (place(_PENDING, lane) for lane in (q.READY, q.SCHEDULED, q.WAITING))
_PROCESSING = place("processing", None)
#: Seconds a custom update waits in the database for other processes' subscribers.
MESSAGE_TTL = 60.0


# -- housekeeping --------------------------------------------------------------------------------


def housekeep(tx: Tx, now: float) -> None:
    """Delete expired jobs and move due scheduled jobs to the ready lane."""
    _expire(tx, now)
    _promote(tx, now)


def _expire(tx: Tx, now: float) -> None:
    _deleted(tx, tx.conn.execute(q.EXPIRE, (now,)).fetchall(), now)


def _deleted(tx: Tx, rows: list[Row], now: float) -> None:
    """Count deleted terminal jobs (``id, status`` rows) out. A job still waiting on one of them
    (retried by hand while it was FAILED or CANCELLED) can never run now: it is cancelled,
    transitively."""
    for job_id, status in rows:
        tx.moved(place(status, None), None)
        if job_id in tx.batch.watched:  # its subscribers learn it is gone, and stop
            tx.updates.append(gone_update(job_id, now))
    for start in range(0, len(rows), CHUNK):
        ids = [row[0] for row in rows[start : start + CHUNK]]
        orphans = tx.conn.execute(q.orphans(len(ids)), ids).fetchall()
        tx.conn.execute(q.drop_edges_to(len(ids)), ids)
        for dep_id, seq in orphans:
            error = dependency_error(dep_id, "deleted")
            params = {"seq": seq, "now": now, "touched": tx.batch.touch(), "error": error}
            _end(tx, q.CANCEL, params, now, _WAITING)


def _promote(tx: Tx, now: float) -> None:
    promoted = tx.conn.execute(q.PROMOTE, (now,)).rowcount
    tx.moved(_SCHEDULED, _READY, promoted)


# -- enqueue -------------------------------------------------------------------------------------


def enqueue_many(tx: Tx, records: Sequence[JobRecord], now: float) -> list[str]:
    """Store new jobs (see ``QueueBackend.enqueue_many``); raising rolls the request back.

    Checks run record by record, in order, as the contract's errors require; the inserts of
    jobs without dependencies are gathered into one ``executemany``, flushed before a record
    whose dependencies may name them.
    """
    ids: list[str] = []
    alias: dict[str, str] = {}  # id of a job not stored (its unique key is held) -> holder
    keys: dict[str, str] = {}  # unique keys taken earlier in this batch (even if born cancelled)
    seen: set[str] = set()
    taken = _existing(tx, [r.id for r in records])
    if taken:  # an expired job not deleted yet may hold the id: delete the expired, look again
        _expire(tx, now)
        taken = _existing(tx, [r.id for r in records])
    inserts: list[dict[str, Any]] = []
    for r in records:
        if r.id in seen or r.id in taken:
            raise DuplicateJobError(r.id)
        seen.add(r.id)
        holder = keys.get(r.unique_key or "") or _holder(tx, r.unique_key)
        if holder is not None:
            alias[r.id] = holder
            ids.append(holder)
            continue
        if r.depends_on:
            _flush(tx, inserts)
            _store(tx, r, [alias.get(d, d) for d in r.depends_on], now)
        else:
            inserts.append(_pending_row(tx, r, [], 0, now))
        if r.unique_key is not None:
            keys[r.unique_key] = r.id
        ids.append(r.id)
    _flush(tx, inserts)
    tx.wake = tx.wake or len(alias) < len(ids)  # something was stored
    return ids


def _existing(tx: Tx, job_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(job_ids), CHUNK):
        chunk = job_ids[start : start + CHUNK]
        found.update(row[0] for row in tx.conn.execute(q.existing(len(chunk)), chunk))
    return found


def _flush(tx: Tx, inserts: list[dict[str, Any]]) -> None:
    tx.conn.executemany(q.INSERT, inserts)
    inserts.clear()


def _holder(tx: Tx, key: str | None) -> str | None:
    if key is None:
        return None
    row = tx.conn.execute(q.HOLDER, (key,)).fetchone()
    return None if row is None else str(row[0])


def _store(tx: Tx, r: JobRecord, depends_on: list[str], now: float) -> None:
    """Store a job with dependencies: waiting, or born cancelled if one already failed."""
    statuses = _dependency_statuses(tx, depends_on, now)
    waits = [d for d, s in statuses.items() if s not in _BROKEN and s != "complete"]
    broken = next(((d, s) for d, s in statuses.items() if s in _BROKEN), None)
    if broken is None:
        tx.conn.execute(q.INSERT, _pending_row(tx, r, depends_on, len(waits), now))
        tx.conn.executemany(q.ADD_EDGE, [(d, r.id) for d in waits])
        return
    # A dependency already FAILED or CANCELLED: the job is born cancelled.
    row = _row(tx, r, depends_on, now)
    row.update(status="cancelled", error=dependency_error(*broken), completed_at=now)
    row["expires_at"] = None if r.ttl is None else now + r.ttl
    tx.conn.execute(q.INSERT, row)
    tx.moved(None, place("cancelled", None))
    tx.emit(_ended_row(row))


def _pending_row(
    tx: Tx, r: JobRecord, depends_on: list[str], pending_deps: int, now: float
) -> dict[str, Any]:
    row = _row(tx, r, depends_on, now)
    row["pending_deps"] = pending_deps
    row["lane"] = lane = lane_of(r.execute_at, pending_deps, now)
    tx.moved(None, place(_PENDING, lane))
    return row


def _dependency_statuses(tx: Tx, depends_on: list[str], now: float) -> dict[str, str]:
    found = _statuses(tx, depends_on, now)
    unknown = [dep_id for dep_id, status in found.items() if status is None]
    if unknown:
        raise UnknownDependencyError(unknown)
    return {dep_id: status for dep_id, status in found.items() if status is not None}


def _statuses(tx: Tx, job_ids: list[str], now: float) -> dict[str, str | None]:
    """The status of each live job (None for an unknown or expired one), duplicates read once."""
    statuses: dict[str, str | None] = {}
    for job_id in dict.fromkeys(job_ids):
        found = tx.conn.execute(q.DEP_STATUS, {"id": job_id, "now": now}).fetchone()
        statuses[job_id] = None if found is None else found[0]
    return statuses


#: An empty JSON value as text (most payloads are empty: no need to encode them).
_EMPTY_JSON: dict[type, str] = {dict: "{}", list: "[]"}


def _row(tx: Tx, r: JobRecord, depends_on: list[str], now: float) -> dict[str, Any]:
    """The ``queries.INSERT`` parameters of a new PENDING job: the fields the caller gave as it
    gave them (``depends_on`` as resolved), the owned ones as a stored job starts
    (``OWNED_INITIAL``), JSON fields as JSON text."""
    row = msgspec.structs.asdict(r)
    row.update(OWNED_INITIAL)
    row["depends_on"] = depends_on
    for name, kind in JSON_FIELDS.items():
        value = row[name]
        if value is not None:
            row[name] = to_json(value, name) if value else _EMPTY_JSON[kind]
    row.update(rank=PRIORITY_RANK[r.priority], lane=None, updated_at=now, touched=tx.batch.touch())
    return row


def _ended_row(row: dict[str, Any]) -> Row:
    return tuple(row[name] for name in UPDATE_FIELDS)


# -- claim ---------------------------------------------------------------------------------------


def claim(
    tx: Tx, job_types: Sequence[str] | None, limit: int, worker_id: str, lease: float, now: float
) -> list[JobRecord]:
    """Claim up to ``limit`` ready jobs: priority, then enqueue order, over every type asked."""
    types = None if job_types is None else list(dict.fromkeys(job_types))
    if limit <= 0 or types == []:
        return []
    _promote(tx, now)
    touched = tx.batch.touch()
    params: dict[str, Any] = {
        "worker_id": worker_id,
        "now": now,
        "lease_expires_at": now + lease,
        "touched": touched,
        "limit": limit,
    }
    if types is None:
        tx.conn.execute(q.CLAIM_ANY, params)
    elif len(types) == 1:
        tx.conn.execute(q.CLAIM_TYPE, {**params, "job_type": types[0]})
    else:
        seqs = _candidates(tx, types, limit)
        params.update((f"s{i}", seq) for i, seq in enumerate(seqs))
        if seqs:
            tx.conn.execute(q.claim_seqs(len(seqs)), params)
    rows = tx.conn.execute(q.CLAIMED, (touched,)).fetchall()
    tx.moved(_READY, _PROCESSING, len(rows))
    claimed = records_of(tx, rows, now)
    for record in claimed:
        if record.id in tx.batch.watched:
            tx.updates.append(record_update(record))
    # Rows with a corrupt status may hold places at the head of the ready lane, and corrupt
    # claimed ones were set aside: claim past them (each round removes them for good).
    cleared = len(rows) < limit and _clear_ready_lane(tx, limit, now)
    if cleared or len(claimed) < len(rows):
        claimed += claim(tx, job_types, limit - len(claimed), worker_id, lease, now)
    return claimed


def _clear_ready_lane(tx: Tx, limit: int, now: float) -> bool:
    """Set aside the rows at the head of the ready lane whose status is not PENDING (only a
    corrupted row can be there); whether there were any."""
    stuck = [seq for seq, status in tx.conn.execute(q.READY_HEAD, (limit,)) if status != _PENDING]
    for seq in stuck:
        (job_id,) = tx.conn.execute("SELECT id FROM jobs WHERE seq = ?", (seq,)).fetchone()
        set_aside(tx, str(job_id), now, why="in the ready lane but not pending")
    return bool(stuck)


def records_of(tx: Tx, rows: Sequence[Row], now: float) -> list[JobRecord]:
    """Records of ``queries.COLUMNS`` rows; corrupt ones are set aside and left out."""
    records: list[JobRecord] = []
    for row in rows:
        try:
            records.append(record_of(row))
        except CorruptRow as exc:
            set_aside(tx, exc.job_id, now)
    return records


def _candidates(tx: Tx, job_types: Sequence[str], limit: int) -> list[int]:
    # One index range per type, merged: the first `limit` of each suffice.
    per_type = [tx.conn.execute(q.CANDIDATES_OF_TYPE, (t, limit)).fetchall() for t in job_types]
    return [seq for _, seq in itertools.islice(heapq.merge(*per_type), limit)]


# -- reports from workers ------------------------------------------------------------------------


def finish_many(tx: Tx, outcomes: Sequence[Outcome], now: float) -> list[bool]:
    """Apply outcomes in order (see ``QueueBackend.finish``), then release the jobs waiting on
    those that completed, all at once. Each run of completions goes out as one statement run."""
    completed: list[str] = []
    done: list[bool] = []
    run: list[Outcome] = []
    for outcome in outcomes:
        if outcome.kind == "complete":
            run.append(outcome)
            continue
        done += _complete(tx, run, now, completed)
        run = []
        done.append(_finish(tx, outcome, now))
    done += _complete(tx, run, now, completed)
    if completed and tx.conn.execute(q.ANY_EDGE).fetchone() is not None:
        for start in range(0, len(completed), CHUNK):
            _release_dependents(tx, completed[start : start + CHUNK], now)
    return done


def _complete(tx: Tx, outcomes: list[Outcome], now: float, completed: list[str]) -> list[bool]:
    """Complete the jobs of ``outcomes`` whose fence matches (every row gets one ``touched``);
    whether each was stored."""
    ids = [o.job_id for o in outcomes]
    if len(set(ids)) < len(ids):  # one job twice: in order, so the second sees the first
        return [stored for o in outcomes for stored in _complete(tx, [o], now, completed)]
    if not ids:
        return []
    touched = tx.batch.touch()
    rows = [
        (o.job_id, o.fence, None if o.results is None else to_json(o.results, "results"))
        for o in outcomes
    ]
    params = [q.complete_params(*row, now, touched) for row in rows]
    applied = tx.conn.executemany(q.COMPLETE, params).rowcount
    if applied == len(ids):
        done = [True] * len(ids)
    else:  # some were not held (any more): find those that were
        found = {row[0] for row in tx.conn.execute(q.COMPLETED, (touched,))}
        done = [job_id in found for job_id in ids]
    tx.moved(_PROCESSING, place("complete", None), applied)
    for job_id, stored in zip(ids, done, strict=True):
        if stored:
            _emit_row(tx, job_id)
            completed.append(job_id)
    return done


def _finish(tx: Tx, outcome: Outcome, now: float) -> bool:
    """Apply a failure, a retry or a release."""
    held = tx.conn.execute(q.HELD_ROW, {"id": outcome.job_id, "fence": outcome.fence}).fetchone()
    if held is None:
        return False
    (seq,) = held
    params = {"seq": seq, "now": now, "touched": tx.batch.touch()}
    if outcome.kind == "release":
        tx.emit(tx.conn.execute(q.RELEASE, params).fetchone())
        tx.moved(_PROCESSING, _READY)
        tx.wake = True
    elif outcome.kind == "retry":
        at = now + max(outcome.delay, 0.0)
        lane = lane_of(at, 0, now)
        params.update(error=outcome.error, execute_at=at, lane=lane)
        tx.emit(tx.conn.execute(q.RETRY_LATER, params).fetchone())
        tx.moved(_PROCESSING, place(_PENDING, lane))
        tx.wake = True  # the claimer must learn the new due time
    else:
        _end(tx, q.FAIL, {**params, "error": outcome.error}, now, _PROCESSING)
    return True


def _emit_row(tx: Tx, job_id: str) -> None:
    if job_id in tx.batch.watched:
        tx.emit(tx.conn.execute(q.UPDATE_ROW, (job_id,)).fetchone())


def _end(
    tx: Tx, statement: str, params: dict[str, Any], now: float, source: Place | None
) -> str | None:
    """Apply a terminal transition (fail, cancel) to one row, counted as leaving ``source``;
    cancel its dependents, transitively. Return the job's id (None: the row did not move)."""
    ended = tx.conn.execute(statement, params).fetchone()
    if ended is None:
        return None
    tx.emit(ended)
    job_id, status, depends_on = ended[0], ended[1], ended[q.ENDED_DEPENDS_ON]
    tx.moved(source, place(status, None))
    if depends_on != "[]":  # it may still wait on something: those edges are moot now
        tx.conn.execute(q.DROP_EDGES_FROM, (job_id,))
    waiting = tx.conn.execute(q.DEPENDENTS_WAITING, (job_id,)).fetchall()
    if not waiting:
        return str(job_id)
    tx.conn.execute(q.drop_edges_to(1), (job_id,))
    error = dependency_error(job_id, status)
    for (seq,) in waiting:
        params = {"seq": seq, "now": now, "touched": tx.batch.touch(), "error": error}
        _end(tx, q.CANCEL, params, now, _WAITING)
    return str(job_id)


def _release_dependents(tx: Tx, job_ids: list[str], now: float) -> None:
    """Count completed dependencies off their dependents; place those now free to run."""
    met = tx.conn.execute(q.dependents_met(len(job_ids)), job_ids * 2).fetchall()
    if not met:
        return
    for seq, pending_deps, execute_at in met:
        if pending_deps == 0:
            lane = lane_of(execute_at, 0, now)
            tx.conn.execute(q.PLACE, (lane, seq))
            tx.moved(_WAITING, place(_PENDING, lane))
            tx.wake = True
    tx.conn.execute(q.drop_edges_to(len(job_ids)), job_ids)


def update_progress_many(tx: Tx, updates: Sequence[ProgressUpdate], now: float) -> list[bool]:
    """Set progress and/or message of PROCESSING jobs whose fence matches."""
    return [update_progress(tx, u, now) for u in updates]


def update_progress(tx: Tx, update: ProgressUpdate, now: float) -> bool:
    """Set progress and/or message of a PROCESSING job whose fence matches."""
    params = {
        "id": update.job_id,
        "fence": update.fence,
        "progress": update.progress,
        "message": update.message,
        "now": now,
        "touched": tx.batch.touch(),
    }
    if tx.conn.execute(q.PROGRESS, params).rowcount == 0:
        return False
    _emit_row(tx, update.job_id)
    return True


def renew_many(tx: Tx, leases: Sequence[Lease], duration: float, now: float) -> list[bool]:
    """Extend the leases still held; ``False`` for each one lost."""
    expires = now + duration
    return [
        tx.conn.execute(
            q.RENEW, {"id": lease.job_id, "fence": lease.fence, "lease_expires_at": expires}
        ).rowcount
        == 1
        for lease in leases
    ]


def reclaim_expired(tx: Tx, now: float) -> list[str]:
    """Take back every PROCESSING job whose lease ran out, one more loss each: FAILED with
    :func:`~jdobb_async_queue._policy.lost_error` once :func:`lost_ends_job` says so (a
    terminal transition), else back to PENDING, due at once. Also deletes expired jobs
    (housekeeping on every worker's lease check)."""
    _expire(tx, now)
    taken: list[str] = []
    for seq, lost, max_lost in tx.conn.execute(q.EXPIRED_LEASES, {"now": now}).fetchall():
        params: dict[str, Any] = {"seq": seq, "now": now, "touched": tx.batch.touch()}
        if lost_ends_job(lost + 1, max_lost):
            params["error"] = lost_error(lost + 1)
            ended = _end(tx, q.LOST, params, now, _PROCESSING)
            if ended is not None:
                taken.append(ended)
            continue
        row = tx.conn.execute(q.RECLAIM, params).fetchone()
        if row is None:
            continue
        tx.emit(row)
        tx.moved(_PROCESSING, _READY)
        taken.append(str(row[0]))
    tx.wake = tx.wake or bool(taken)
    return taken


# -- explicit transitions ------------------------------------------------------------------------


def cancel(tx: Tx, job_id: str, reason: str | None, now: float) -> bool:
    """Cancel a PENDING or PROCESSING job and, transitively, the jobs waiting on it."""
    row = tx.conn.execute(q.ALIVE_ROW, {"id": job_id, "now": now}).fetchone()
    if row is None or row[1] not in _CANCELLABLE:
        return False
    seq, status, lane, fence = row[0], row[1], row[2], row[5]
    params = {"seq": seq, "now": now, "touched": tx.batch.touch(), "error": reason}
    _end(tx, q.CANCEL, params, now, place(status, lane))
    if status == "processing":
        tx.cancelled.append((job_id, fence))
    return True


def retry(tx: Tx, job_id: str, delay: float, now: float) -> bool:
    """Send a FAILED or CANCELLED job back to PENDING, its dependencies counted again."""
    row = tx.conn.execute(q.ALIVE_ROW, {"id": job_id, "now": now}).fetchone()
    if row is None or row[1] not in _RETRYABLE:
        return False
    seq, status, _, unique_key, depends_on, _ = row
    if _holder(tx, unique_key) is not None:  # the job is terminal: any holder is another job
        return False
    waits = _waits_on_retry(tx, load_json(depends_on), now)
    execute_at = now + delay if delay > 0 else None
    lane = lane_of(execute_at, len(waits), now)
    params = {
        "seq": seq,
        "lane": lane,
        "execute_at": execute_at,
        "pending_deps": len(waits),
        "now": now,
        "touched": tx.batch.touch(),
    }
    tx.emit(tx.conn.execute(q.RETRY, params).fetchone())
    tx.moved(place(status, None), place(_PENDING, lane))
    tx.conn.executemany(q.ADD_EDGE, [(d, job_id) for d in waits])
    tx.wake = True
    return True


def _waits_on_retry(tx: Tx, depends_on: list[str], now: float) -> list[str]:
    """Dependencies a retried job waits on: all but the COMPLETE and the missing ones (a FAILED
    or CANCELLED one must be retried and complete first)."""
    found = _statuses(tx, depends_on, now)
    return [dep_id for dep_id, status in found.items() if status not in (None, "complete")]


def purge(
    tx: Tx, statuses: Sequence[str], before: float | None, job_type: str | None, now: float
) -> int:
    """Delete terminal jobs; return how many (expired ones are gone before counting).

    Only the jobs that had ended when it began: those its expiry step cancels are touched later.
    """
    ceiling = tx.batch.touch()
    _expire(tx, now)
    if not statuses:
        return 0
    args: list[Any] = [*statuses, ceiling]
    if before is not None:
        args.append(before)
    if job_type is not None:
        args.append(job_type)
    sql = q.purge(len(statuses), before is not None, job_type is not None)
    deleted = tx.conn.execute(sql, args).fetchall()
    _deleted(tx, deleted, now)
    return len(deleted)


def post_message(tx: Tx, update: UpdateRecord, origin: str) -> None:
    """Leave a custom update for the subscribers of other processes (and drop stale ones)."""
    body = msgspec.json.encode(update).decode()
    tx.conn.execute(q.POST_MESSAGE, (origin, update.job_id, body, update.timestamp))
    tx.conn.execute(q.PRUNE_MESSAGES, (update.timestamp - MESSAGE_TTL,))


# -- corrupt rows ----------------------------------------------------------------------------------

#: What replaces each unreadable column of a corrupt row (in ``queries.REPAIRABLE`` order, as
#: ``queries.RAW_ROW`` reads them): the field's default, as stored.
_EMPTY = {
    f.name: to_json(f.default, f.name) if f.json and f.default is not None else f.default
    for f in (FIELD_BY_NAME[name] for name in q.REPAIRABLE)
}


def set_aside(tx: Tx, job_id: str, now: float, why: str | None = None) -> bool:
    """Set aside the corrupt row of ``job_id`` (see the module docs); whether it was corrupt.

    :param why: a problem the row's columns do not show by themselves (its place)
    """
    row = tx.conn.execute(q.RAW_ROW, (job_id,)).fetchone()
    if row is None:
        return False
    seq, status, lane, *stored = row
    values = dict(zip(_EMPTY, stored, strict=True))
    problems = corruption({"status": status, **values})
    reasons = [*problems.values(), *([why] if why else [])]
    if not reasons:
        return False
    logger.error(
        "job %s: its stored record is corrupt (%s); set aside%s",
        job_id,
        "; ".join(reasons),
        "" if status in _TERMINAL else " as FAILED",
    )
    for name in problems.keys() & _EMPTY.keys():
        values[name] = _EMPTY[name]
    params: dict[str, Any] = {
        **values,
        "rank": PRIORITY_RANK[values["priority"]],
        "seq": seq,
        "now": now,
        "touched": tx.batch.touch(),
        "error": f"set aside: its stored record was corrupt ({'; '.join(reasons)})",
    }
    if status in _TERMINAL:
        tx.emit(tx.conn.execute(q.REPAIR_ENDED, params).fetchone())
        return True
    source = place(status, lane) if status in STATUSES else None
    _end(tx, q.SET_ASIDE, params, now, source)
    return True


def set_aside_and_get(tx: Tx, job_id: str, now: float) -> JobRecord | None:
    """Set aside the corrupt row of ``job_id`` (a ``get`` met it), then read it again."""
    set_aside(tx, job_id, now)
    row = tx.conn.execute(q.GET, {"id": job_id, "now": now}).fetchone()
    return None if row is None else record_of(row)
