"""The transitions of the PostgreSQL backend: each function is one call's work, run by the pool
in a worker thread inside one transaction (see :mod:`.pool`). Two calls are one statement each,
which the pool runs on the event loop instead (``Pool.execute``): for those this module only
builds the parameters (:func:`insert_one_params`, :func:`claim_statement`) and reads the rows
(:func:`claimed_records`).

Nothing here awaits or touches the event loop. What a transaction must tell others is gathered
in its :class:`Tx` and sent when it commits: NOTIFY payloads for other processes (in the
transaction itself, so they are delivered if and only if it commits) and the updates and notices
for this process's own subscribers and workers (delivered by the backend after the commit).

How an attempt ends was decided by the policy (``Outcome``); the one rule applied here is the
policy's own for a lost lease (:func:`~jdobb_async_queue.backends.lost_ends_job`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import psycopg

from ...backends import (
    PRIORITY_RANK,
    DuplicateJobError,
    Event,
    JobRecord,
    Lease,
    Notice,
    Outcome,
    ProgressUpdate,
    QueueStats,
    UnknownDependencyError,
    UpdateRecord,
    WorkerRecord,
    dependency_error,
    lost_ends_job,
    lost_error,
    record_update,
    sources,
    update_of_values,
)
from . import queries as q
from .pool import After

__all__ = ["Tx"]

_BROKEN = frozenset({"failed", "cancelled"})
_CANCELLABLE = frozenset(s.value for s in sources(Event.CANCEL))
_RETRYABLE = frozenset(s.value for s in sources(Event.RETRY))
#: NOTIFY payloads are limited to 8000 bytes; leave room for the prefix.
PAYLOAD_LIMIT = 7900
#: A huge ``limit``/``offset`` (the queue passes 2**62 for "no limit") fits a bigint sum.
_NO_LIMIT = 2**61

T = TypeVar("T")

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_decode_worker = msgspec.json.Decoder(WorkerRecord).decode


#: One statement for a driver to run: ``(kind, sql, params)``; kind ``"all"`` (send back the
#: rows), ``"one"`` (the first row or None), ``"run"`` (nothing) or ``"many"`` (params is a
#: list: ``executemany``).
Step = tuple[str, str, Any]
Steps = Generator[Step, Any, T]


def drive(conn: psycopg.Connection[Any], steps: Steps[T]) -> T:
    """Run ``steps`` on a blocking connection; return their result."""
    reply: Any = None
    try:
        while True:
            kind, statement, params = steps.send(reply)
            reply = None
            if kind == "many":
                with conn.cursor() as cur:
                    cur.executemany(statement, params)
            else:
                cur = conn.execute(statement, params)
                if kind == "all":
                    reply = cur.fetchall()
                elif kind == "one":
                    reply = cur.fetchone()
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(conn: psycopg.AsyncConnection[Any], steps: Steps[T]) -> T:
    """Run ``steps`` on an asyncio connection; return their result."""
    reply: Any = None
    try:
        while True:
            kind, statement, params = steps.send(reply)
            reply = None
            if kind == "many":
                async with conn.cursor() as cur:
                    await cur.executemany(statement, params)
            else:
                cur = await conn.execute(statement, params)
                if kind == "all":
                    reply = await cur.fetchall()
                elif kind == "one":
                    reply = await cur.fetchone()
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def to_json(value: Any) -> str:
    """A payload as stored (the queue has checked it encodes)."""
    return _encode(value).decode()


@functools.cache
def updates_channel(channel: str) -> str:
    """The channel of a namespace's job updates (``u``, ``p``, ``m``), beside its workers'
    ``channel`` (``j``, ``c``): a process LISTENs to it only while it has subscribers, so
    workers and producers are not sent every claim and completion of every other process."""
    name = f"{channel}.u"
    if len(name.encode()) <= 63:
        return name
    return "jdobb.u." + hashlib.sha256(channel.encode()).hexdigest()[:32]


@dataclass
class Tx:
    """One transaction's connection, its clock parameters and what it must announce."""

    #: The connection (None when the steps run on a user's async connection).
    conn: psycopg.Connection[Any] | None
    #: The test clock's now, or None: the database's ``now()`` drives everything.
    now: float | None
    #: The caller's now (times the caller computed are read against it).
    cnow: float
    origin: str
    watched: frozenset[str] = frozenset()
    #: The namespace's NOTIFY channel (statements that wake workers themselves name it).
    channel: str = ""
    #: Jobs a claim took (announced by the claim's own statement).
    claimed: list[str] = field(default_factory=list)
    wake: bool = False
    #: (job id, fence) of PROCESSING jobs cancelled: their workers must stop them.
    cancelled: list[tuple[str, int]] = field(default_factory=list)
    #: Jobs whose stored state changed (other processes' subscribers read them again).
    changed: list[str] = field(default_factory=list)
    #: Updates for this process's subscribers, in the order they were stored.
    updates: list[UpdateRecord] = field(default_factory=list)
    #: Jobs deleted (their subscribers learn they are gone).
    deleted: list[str] = field(default_factory=list)
    payloads: list[str] = field(default_factory=list)

    def step(self, kind: str, sql: str, **values: Any) -> Step:
        return (kind, sql, self.params(**values))

    def params(self, **values: Any) -> dict[str, Any]:
        return {"now": self.now, "cnow": self.cnow, **values}

    @property
    def blocking(self) -> psycopg.Connection[Any]:
        """The blocking connection (every function here but the steps needs one)."""
        assert self.conn is not None, "these steps run on an async connection"
        return self.conn

    def run(self, sql: str, **values: Any) -> psycopg.Cursor[Any]:
        return self.blocking.execute(sql, self.params(**values))

    def one(self, sql: str, **values: Any) -> Any:
        return self.run(sql, **values).fetchone()

    def all(self, sql: str, **values: Any) -> list[Any]:
        return self.run(sql, **values).fetchall()

    def emit(self, row: Sequence[Any] | None) -> None:
        """A job changed (a row of ``queries.UPDATE_COLUMNS``): announce it."""
        if row is None:
            return
        job_id = row[0]
        self.changed.append(job_id)
        if job_id in self.watched:
            self.updates.append(update_of(row))

    # -- what it announces, at commit ---------------------------------------------------------

    def notices(self) -> list[Notice]:
        """What this process's workers learn from this transaction."""
        found = [Notice("cancel", job_id, fence) for job_id, fence in self.cancelled]
        if self.wake:
            found.append(Notice("jobs"))
        return found

    def announce(self, channel: str) -> None:
        """Send, inside the transaction, what other processes must learn from it."""
        drive(self.blocking, self.announce_steps(channel))

    def announce_steps(self, channel: str) -> Steps[None]:
        """:meth:`announce` as steps (see :func:`drive`)."""
        workers: list[str] = ["j"] if self.wake else []
        # (A cancel of an id too long for a payload reaches its worker at its next renewal.)
        cancels = [f"c {fence} {job_id}" for job_id, fence in self.cancelled]
        workers += [c for c in cancels if len(c.encode()) <= PAYLOAD_LIMIT]
        ids = list(dict.fromkeys([*self.changed, *self.deleted]))
        watchers = [*self.payloads, *_chunks(f"u {self.origin} ", ids)]
        channels = [channel] * len(workers) + [updates_channel(channel)] * len(watchers)
        if channels:
            yield ("run", q.NOTIFY, {"channels": channels, "payloads": workers + watchers})


def _chunks(prefix: str, ids: list[str]) -> list[str]:
    """``prefix`` + a JSON list of ids, as many payloads as it takes (an id too long for one
    alone becomes ``*``: every subscriber reads its job again)."""
    out: list[str] = []
    batch: list[str] = []
    size = len(prefix) + 2
    for job_id in ids:
        cost = len(_encode(job_id)) + 1
        if size + cost > PAYLOAD_LIMIT and batch:
            out.append(prefix + to_json(batch))
            batch, size = [], len(prefix) + 2
        if size + cost > PAYLOAD_LIMIT:
            out.append(prefix + "*")
            continue
        batch.append(job_id)
        size += cost
    if batch:
        out.append(prefix + to_json(batch))
    return out


def update_of(row: Sequence[Any]) -> UpdateRecord:
    """An update from a ``queries.UPDATE_COLUMNS`` row."""
    values = list(row)
    for i in q.UPDATE_JSON_AT:
        if values[i] is not None:
            values[i] = _decode(values[i])
    return update_of_values(values)


def record_of(row: Sequence[Any]) -> JobRecord:
    """A record from a ``queries.COLUMNS`` row."""
    values = dict(zip(q.FIELDS, row, strict=True))
    for name in q.JSON_COLUMNS:
        if values[name] is not None:
            values[name] = _decode(values[name])
    return JobRecord(**values)


# -- housekeeping ------------------------------------------------------------------------------


def housekeep(tx: Tx) -> None:
    """Delete expired jobs and move due scheduled jobs to the ready lane (before a read that
    counts or lists them)."""
    expire(tx)
    tx.run(q.PROMOTE)


def expire(tx: Tx) -> None:
    """Delete expired jobs; cancel, transitively, any job still waiting on one of them."""
    rows = tx.all(q.EXPIRE)
    deleted(tx, rows)


def deleted(tx: Tx, rows: list[Any]) -> None:
    """Jobs (``id, status`` rows) were deleted: tell their subscribers, cancel their orphans
    (a job retried by hand while its dependency was FAILED or CANCELLED can never run now)."""
    if not rows:
        return
    ids = [row[0] for row in rows]
    tx.deleted += ids
    for dep_id, job_id in tx.all(q.ORPHANS, ids=ids):
        seq = tx.one("SELECT seq FROM jobs WHERE id = %(id)s", id=job_id)
        if seq is not None:
            end(tx, q.CANCEL, seq[0], dependency_error(dep_id, "deleted"))


# -- enqueue -----------------------------------------------------------------------------------


def plain(records: Sequence[JobRecord]) -> bool:
    """Whether ``records`` can be stored by ``queries.INSERT_ONE`` (:func:`insert_one_params`):
    one job, no dependency, no unique key."""
    return len(records) == 1 and not records[0].depends_on and records[0].unique_key is None


def insert_one_params(tx: Tx, record: JobRecord, channel: str) -> dict[str, Any]:
    """The parameters of ``queries.INSERT_ONE``, which stores one plain job (see :func:`plain`)
    in a single statement and returns its id (no row: the id is taken)."""
    return tx.params(**_row(tx, record, [], 0), channel=channel)


def enqueue_many(tx: Tx, records: Sequence[JobRecord]) -> list[str]:
    """Store new jobs (see ``QueueBackend.enqueue_many``); raising rolls it all back."""
    return drive(tx.blocking, enqueue_steps(tx, records))


def enqueue_steps(tx: Tx, records: Sequence[JobRecord]) -> Steps[list[str]]:
    """:func:`enqueue_many` as steps, so a blocking or an async connection can run them
    (:func:`drive`, :func:`drive_async`): the transactional enqueue runs them on the user's."""
    found = yield tx.step("all", q.EXISTING, ids=[r.id for r in records])
    taken = {row[0] for row in found}
    ids: list[str] = []
    alias: dict[str, str] = {}  # id of a job not stored (its unique key is held) -> holder
    keys: dict[str, str] = {}  # unique keys taken earlier in this batch
    seen: set[str] = set()
    plain: list[dict[str, Any]] = []
    for r in records:
        if r.id in seen or r.id in taken:
            raise DuplicateJobError(r.id)
        seen.add(r.id)
        holder = keys.get(r.unique_key or "")
        if holder is None and r.unique_key is not None:
            row = yield tx.step("one", q.HOLDER, key=r.unique_key)
            holder = None if row is None else str(row[0])
        if holder is not None:
            alias[r.id] = holder
            ids.append(holder)
            continue
        if r.depends_on:
            if plain:
                yield ("many", q.INSERT, plain)
                plain = []
            yield from _store_waiting(tx, r, [alias.get(d, d) for d in r.depends_on])
        else:
            plain.append(_row(tx, r, [], 0))
        if r.unique_key is not None:
            keys[r.unique_key] = r.id
        ids.append(r.id)
    if plain:
        yield ("many", q.INSERT, plain)
    tx.wake = tx.wake or len(alias) < len(ids)
    return ids


def _holder(tx: Tx, key: str | None) -> str | None:
    if key is None:
        return None
    row = tx.one(q.HOLDER, key=key)
    return None if row is None else str(row[0])


def _store_waiting(tx: Tx, r: JobRecord, depends_on: list[str]) -> Steps[None]:
    """Store a job with dependencies: waiting, or born cancelled if one already failed."""
    unique = list(dict.fromkeys(depends_on))
    statuses = dict((yield tx.step("all", q.DEP_STATUS, ids=unique)))
    unknown = [d for d in unique if d not in statuses]
    if unknown:
        raise UnknownDependencyError(unknown)
    waits = [d for d in unique if statuses[d] not in _BROKEN and statuses[d] != "complete"]
    broken = next(((d, statuses[d]) for d in unique if statuses[d] in _BROKEN), None)
    if broken is None:
        yield ("run", q.INSERT, _row(tx, r, depends_on, len(waits)))
        if waits:
            yield tx.step("run", q.ADD_EDGES, deps=waits, id=r.id)
        return
    row = _row(tx, r, depends_on, 0)
    row.update(status="cancelled", error=dependency_error(*broken))
    yield ("run", q.INSERT, row)
    tx.changed.append(r.id)


def _row(tx: Tx, r: JobRecord, depends_on: list[str], pending_deps: int) -> dict[str, Any]:
    """The parameters of ``queries.INSERT``: the record's fields by name (those INSERT takes
    are the ones the caller gives), JSON as text, and what the store decided."""
    values = tx.params()
    values.update(msgspec.structs.asdict(r))
    for name in q.GIVEN_JSON:
        values[name] = to_json(values[name])
    values.update(
        depends_on=depends_on,
        status="pending",
        rank=PRIORITY_RANK[r.priority],
        error=None,
        pending_deps=pending_deps,
    )
    return values


# -- claim -------------------------------------------------------------------------------------


def claim_statement(
    tx: Tx,
    job_types: Sequence[str] | None,
    limit: int,
    worker_id: str,
    lease: float,
    *,
    functions: bool = True,
) -> tuple[str, dict[str, Any]] | None:
    """The statement that claims up to ``limit`` ready jobs (priority, then enqueue order) and
    its parameters but the clock's (``tx.params`` adds them); None when there is nothing to ask.

    :param functions: the session has the claim functions: call one (PROMOTE, then the claim,
        under BY_KEY, see queries); else the claim statement itself, for a transaction that
        runs PROMOTE and BY_KEY first (:func:`claim`)

    Its COMMIT waits for the disk, as every write's does: a claim a crash undid would hand its
    fence again to the next claimer (see ``docs/design-notes.md``).
    """
    types = None if job_types is None else list(dict.fromkeys(job_types))
    if limit <= 0 or types == []:
        return None
    values: dict[str, Any] = {"worker_id": worker_id, "lease": lease, "limit": limit}
    values.update(channel=tx.channel, uchannel=updates_channel(tx.channel), origin=tx.origin)
    if types is not None:
        values["types"] = types
    if functions:
        return (q.CALL_CLAIM_ANY if types is None else q.CALL_CLAIM_TYPES), values
    return (q.CLAIM_ANY if types is None else q.CLAIM_TYPES), values


def claimed_records(tx: Tx, rows: list[Any]) -> list[JobRecord]:
    """The jobs a claim's rows hold, in claim order; noted in ``tx`` for what it announces."""
    rows = sorted(rows, key=lambda row: (row[0], row[1]))
    records = [record_of(row[2:]) for row in rows]
    tx.updates += [record_update(r) for r in records if r.id in tx.watched]
    tx.claimed = [r.id for r in records]
    return records


def claim(
    tx: Tx,
    job_types: Sequence[str] | None,
    limit: int,
    worker_id: str,
    lease: float,
    *,
    functions: bool = True,
) -> list[JobRecord] | After[list[JobRecord]]:
    """Claim in the caller's transaction (see :func:`claim_statement`); the jobs are read after
    the COMMIT."""
    call = claim_statement(tx, job_types, limit, worker_id, lease, functions=functions)
    if call is None:
        return []
    statement, values = call
    if not functions:  # the function's statements, in this transaction
        tx.run(q.PROMOTE)
        tx.blocking.execute(q.BY_KEY)
    cur = tx.run(statement, **values)
    return After(lambda: claimed_records(tx, cur.fetchall()))  # one round trip in all


# -- reports from workers ----------------------------------------------------------------------


def finish_many(tx: Tx, outcomes: Sequence[Outcome]) -> list[bool]:
    """Apply decided outcomes in order, then release the jobs waiting on those that completed."""
    completed: list[str] = []
    done: dict[int, bool] = {}
    completes = [(i, o) for i, o in enumerate(outcomes) if o.kind == "complete"]
    if len({o.job_id for _, o in completes}) == len(completes) > 1:  # one statement for all
        tx.blocking.execute(q.BY_KEY)
        rows = tx.all(q.COMPLETE_MANY, outcomes=_completions([o for _, o in completes]))
        for row in rows:
            tx.emit(row)
        stored = {row[0] for row in rows}
        for i, o in completes:
            done[i] = o.job_id in stored
        completed += [o.job_id for _, o in completes if o.job_id in stored]
    for i, o in enumerate(outcomes):
        if i not in done:
            done[i] = _finish(tx, o, completed)
    if completed:
        tx.run(q.RELEASE_DEPENDENTS, ids=completed, channel=tx.channel)
    return [done[i] for i in range(len(outcomes))]


def complete_statement(tx: Tx, outcomes: Sequence[Outcome]) -> tuple[str, dict[str, Any]] | None:
    """``outcomes`` as one call of the session's completion function (see
    ``queries.COMPLETE_TOLD``), when they are completions of distinct jobs (None: they
    take :func:`finish_many`'s transaction)."""
    if not outcomes or any(o.kind != "complete" for o in outcomes):
        return None
    if len({o.job_id for o in outcomes}) != len(outcomes):
        return None
    values = {"outcomes": _completions(outcomes), "channel": tx.channel, "origin": tx.origin}
    values["uchannel"] = updates_channel(tx.channel)
    return q.CALL_COMPLETE, values


def _completions(outcomes: Sequence[Outcome]) -> str:
    """Completions as ``queries.COMPLETE_MANY`` takes them: one JSON text."""
    given = [
        {
            "id": o.job_id,
            "fence": o.fence,
            "results": None if o.results is None else to_json(o.results),
        }
        for o in outcomes
    ]
    return to_json(given)


def completed(tx: Tx, outcomes: Sequence[Outcome], rows: list[Any]) -> list[bool]:
    """Which of ``outcomes`` the completion function's ``rows`` stored; noted in ``tx`` for
    this process's subscribers (the function told the others)."""
    for row in rows:
        tx.emit(row)
    stored = {row[0] for row in rows}
    return [o.job_id in stored for o in outcomes]


def _finish(tx: Tx, o: Outcome, completed: list[str]) -> bool:
    held = {"id": o.job_id, "fence": o.fence}
    if o.kind == "complete":
        results = None if o.results is None else to_json(o.results)
        row = tx.one(q.COMPLETE, results=results, **held)
        if row is None:
            return False
        tx.emit(row)
        completed.append(o.job_id)
        return True
    if o.kind == "fail":
        found = tx.one(q.HELD_ROW, **held)
        if found is None:
            return False
        end(tx, q.FAIL, found[0], o.error)
        return True
    if o.kind == "retry":
        row = tx.one(q.RETRY_LATER, error=o.error, delay=max(o.delay, 0.0), **held)
    else:
        row = tx.one(q.RELEASE, **held)
    if row is None:
        return False
    tx.emit(row)
    tx.wake = True  # claimable again (or the claimer must learn the new due time)
    return True


def end(tx: Tx, statement: str, seq: int, error: str | None) -> str | None:
    """A terminal transition (fail, cancel) of one row, then cancel the jobs waiting on it,
    transitively, in the same transaction. Return the job's id (None: the row did not move)."""
    todo: list[tuple[str, int, str | None]] = [(statement, seq, error)]
    first: str | None = None
    while todo:
        sql, row_seq, why = todo.pop(0)
        row = tx.one(sql, seq=row_seq, error=why)
        if row is None:
            continue
        tx.emit(row)
        job_id, status = row[0], row[1]
        first = first or job_id
        tx.run(q.DROP_OWN_EDGES, id=job_id)
        reason = dependency_error(job_id, status)
        todo += [(q.CANCEL, dep_seq, reason) for (dep_seq,) in tx.all(q.DEPENDENTS, id=job_id)]
    return first


def update_progress_many(tx: Tx, updates: Sequence[ProgressUpdate]) -> list[bool]:
    """Set progress and/or message of PROCESSING jobs whose fence matches."""
    done = []
    for u in updates:
        row = tx.one(q.PROGRESS, id=u.job_id, fence=u.fence, progress=u.progress, message=u.message)
        tx.emit(row)
        done.append(row is not None)
    return done


def renew_many(tx: Tx, leases: Sequence[Lease], duration: float) -> list[bool]:
    """Extend the leases still held; ``False`` for each one lost."""
    tx.blocking.execute(q.BY_KEY)
    given = [{"id": lease.job_id, "fence": lease.fence} for lease in leases]
    rows = tx.all(q.RENEW, duration=duration, leases=to_json(given))
    kept = {row[0] for row in rows}
    return [lease.job_id in kept for lease in leases]


def reclaim_expired(tx: Tx) -> list[str]:
    """Take back every PROCESSING job whose lease ran out (see ``QueueBackend``); also deletes
    expired jobs (housekeeping on every worker's lease check)."""
    expire(tx)
    taken: list[str] = []
    for seq, lost, max_lost in tx.all(q.EXPIRED_LEASES):
        if lost_ends_job(lost + 1, max_lost):
            ended = end(tx, q.LOST, seq, lost_error(lost + 1))
            if ended is not None:
                taken.append(ended)
            continue
        row = tx.one(q.RECLAIM, seq=seq)
        if row is not None:
            tx.emit(row)
            taken.append(row[0])
    tx.wake = tx.wake or bool(taken)
    return taken


# -- explicit transitions ----------------------------------------------------------------------


def cancel(tx: Tx, job_id: str, reason: str | None) -> bool:
    """Cancel a PENDING or PROCESSING job and, transitively, the jobs waiting on it."""
    row = tx.one(q.ALIVE_ROW, id=job_id)
    if row is None or row[1] not in _CANCELLABLE:
        return False
    seq, status, _, _, fence = row
    end(tx, q.CANCEL, seq, reason)
    if status == "processing":
        tx.cancelled.append((job_id, fence))
    return True


def retry(tx: Tx, job_id: str, delay: float) -> bool:
    """Send a FAILED or CANCELLED job back to PENDING, its dependencies counted again."""
    row = tx.one(q.ALIVE_ROW, id=job_id)
    if row is None or row[1] not in _RETRYABLE:
        return False
    seq, _, unique_key, depends_on, _ = row
    if _holder(tx, unique_key) is not None:  # the job is terminal: any holder is another job
        return False
    unique = list(dict.fromkeys(depends_on))
    statuses = dict(tx.all(q.DEP_STATUS, ids=unique)) if unique else {}
    waits = [d for d in unique if statuses.get(d, "complete") != "complete"]
    tx.emit(tx.one(q.RETRY, seq=seq, delay=delay, pending_deps=len(waits)))
    if waits:
        tx.run(q.ADD_EDGES, deps=waits, id=job_id)
    tx.wake = True
    return True


def purge(tx: Tx, statuses: Sequence[str], before: float | None, job_type: str | None) -> int:
    """Delete terminal jobs; return how many (expired ones are gone before counting)."""
    (ceiling,) = tx.one(q.TOUCH)  # only jobs that had ended when the purge began
    expire(tx)
    if not statuses:
        return 0
    sql = q.purge(before is not None, job_type is not None)
    rows = tx.all(sql, statuses=list(statuses), before=before, job_type=job_type, ceiling=ceiling)
    deleted(tx, rows)
    return len(rows)


# -- reads ---------------------------------------------------------------------------------------


def get(tx: Tx, job_id: str) -> JobRecord | None:
    row = tx.one(q.GET, id=job_id)
    return None if row is None else record_of(row)


def list_jobs(
    tx: Tx, status: str | None, job_type: str | None, limit: int, offset: int
) -> list[JobRecord]:
    limit, offset = min(limit, _NO_LIMIT), min(offset, _NO_LIMIT)
    if status is not None and status not in q.STATUSES:
        return []  # no job has a status this code does not know
    housekeep(tx)
    typed = job_type is not None
    sql = q.list_pending(typed) if status == "pending" else q.list_recent(status, typed)
    rows = tx.all(sql, job_type=job_type, limit=limit, offset=offset, upto=limit + offset)
    return [record_of(row) for row in rows]


def stats(tx: Tx) -> QueueStats:
    housekeep(tx)
    counts: dict[str, int] = {}
    for status, lane, n in tx.all(q.STATS):
        counts[status] = counts.get(status, 0) + n
        if lane == q.SCHEDULED:
            counts["scheduled"] = n
        elif lane == q.WAITING:
            counts["waiting"] = n
    return QueueStats(**counts)


def next_due(tx: Tx, job_types: Sequence[str] | None) -> float | None:
    """Seconds from the database's now to the earliest due time (None: nothing scheduled)."""
    if job_types is None:
        row = tx.one(q.NEXT_DUE)
    else:
        row = tx.one(q.NEXT_DUE_TYPES, types=list(job_types))
    return None if row[0] is None else float(row[0])


# -- custom updates and the registry -------------------------------------------------------------


def post_message(tx: Tx, update: UpdateRecord) -> None:
    """A custom update for other processes' subscribers: in the NOTIFY payload, or in the
    ``messages`` table when it is too large for one."""
    body = to_json(update)
    if len(body.encode()) + 40 <= PAYLOAD_LIMIT:
        tx.payloads.append(f"p {tx.origin} {body}")
        return
    (seq,) = tx.one(q.POST_MESSAGE, body=body)
    tx.run(q.PRUNE_MESSAGES)
    tx.payloads.append(f"m {tx.origin} {seq}")


def message(tx: Tx, seq: int) -> UpdateRecord | None:
    row = tx.one(q.MESSAGE, seq=seq)
    return None if row is None else msgspec.json.decode(row[0], type=UpdateRecord)


def prepare_session(conn: psycopg.Connection[Any]) -> bool:
    """Make the claim and completion functions in a new connection's session (see
    ``queries``); False when the user may not make temporary objects in the database (claims
    and completions then take a transaction of the same statements)."""
    types = dict(conn.execute(q.COLUMN_TYPES).fetchall())
    try:
        for statement in q.session_functions(types):
            conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def register_worker(tx: Tx, worker: WorkerRecord, ttl: float) -> None:
    tx.run(q.DROP_DEAD_WORKERS, ttl=ttl)
    record = msgspec.structs.replace(worker, heartbeat_at=0.0)
    tx.run(q.REGISTER_WORKER, id=worker.id, record=to_json(record))


def remove_worker(tx: Tx, worker_id: str) -> None:
    tx.run(q.REMOVE_WORKER, id=worker_id)


def list_workers(tx: Tx, ttl: float) -> list[WorkerRecord]:
    found = []
    for record, heartbeat_at in tx.all(q.LIVE_WORKERS, ttl=ttl):
        worker = _decode_worker(record)
        worker.heartbeat_at = heartbeat_at
        found.append(worker)
    return sorted(found, key=lambda w: (w.started_at, w.id))
