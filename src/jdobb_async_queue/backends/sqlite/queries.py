"""Every SQL statement of the SQLite backend, built once at import.

Status guards come from the state machine (:func:`jdobb_async_queue._states.sources`), so the
transition table stays the one place where a transition is allowed: a statement that applies
``Event.X`` only touches rows whose status the table allows ``X`` from, and sets the status the
table leads to. The schema itself is in ``schema_v*.sql`` beside this module: the migrations,
applied in order, that made each version of the file (they stay as they were written, so every
existing file still upgrades the same way). What the statements here read and write of a job is
derived from its one declaration, :class:`~jdobb_async_queue._records.JobRecord`: each field is
the column of the same name (``tests/test_schema.py`` checks that the migrations make one for
each), its JSON fields are JSON text.

Lanes (PENDING jobs only): 0 ready, 1 scheduled, 2 waiting on dependencies. Queries on a lane
name it as a literal, so SQLite can pick that lane's partial index.
"""

from __future__ import annotations

from ..._records import FIELD_NAMES, JSON_FIELDS, UPDATE_FIELDS, column_list
from ..._states import Event, sources, transition

READY, SCHEDULED, WAITING = 0, 1, 2

#: The JobRecord fields, in order: the columns carry the same names.
FIELDS: tuple[str, ...] = FIELD_NAMES
COLUMNS = column_list(FIELDS)
#: What a published update needs (``_records.UPDATE_FIELDS``), in that order.
UPDATE_COLUMNS = column_list(UPDATE_FIELDS)
_ALIVE = "(expires_at IS NULL OR expires_at > :now)"


def guard(event: Event) -> str:
    """``status = '...'`` / ``status IN (...)``: the states ``event`` is allowed from."""
    states = sorted(s.value for s in sources(event))
    if len(states) == 1:  # an equality, so partial indexes on one status apply
        return f"status = '{states[0]}'"
    return "status IN (" + ", ".join(f"'{s}'" for s in states) + ")"


def target(event: Event) -> str:
    """The one state ``event`` leads to (from any of its sources)."""
    (state,) = {transition(s, event) for s in sources(event)}
    assert state is not None
    return state.value


#: A worker's report (complete, fail, progress, renew) applies to a job in these states.
HELD = guard(Event.COMPLETE)
#: The statuses in which a job holds its unique key: the non-terminal ones. Written exactly as
#: in the schema's partial unique index, which SQLite uses only for a query with the same terms.
LIVE = "status IN ('pending', 'processing')"

# -- housekeeping --------------------------------------------------------------------------------

MAX_TOUCHED = "SELECT max(touched) FROM jobs WHERE status = ?"
PROMOTE = f"UPDATE jobs SET lane = {READY} WHERE lane = {SCHEDULED} AND execute_at <= ?"
EXPIRE = "DELETE FROM jobs WHERE expires_at <= ? RETURNING id, status"
DATA_VERSION = "PRAGMA data_version"

# -- enqueue -------------------------------------------------------------------------------------

_INSERT_FIELDS = (*FIELDS, "lane", "rank", "touched")
INSERT = (
    f"INSERT INTO jobs ({', '.join(_INSERT_FIELDS)}) "
    f"VALUES ({', '.join(':' + f for f in _INSERT_FIELDS)})"
)


def existing(count: int) -> str:
    """Which of ``count`` ids are taken already."""
    return f"SELECT id FROM jobs WHERE id IN ({', '.join('?' * count)})"


HOLDER = f"SELECT id FROM jobs WHERE unique_key = ? AND {LIVE}"
DEP_STATUS = f"SELECT status FROM jobs WHERE id = :id AND {_ALIVE}"
ADD_EDGE = "INSERT OR IGNORE INTO edges (dep_id, job_id) VALUES (?, ?)"

# -- claim ---------------------------------------------------------------------------------------

# One UPDATE claims a whole batch; every row of it gets the same `touched`, which then finds
# them again (RETURNING would cost more than the second statement). No job is skipped or taken
# twice: the transaction holds the write lock from its first statement. NOT INDEXED: the rows
# are found by rowid from the subquery, never by scanning an index of every pending job.
_CLAIM_SET = (
    f"UPDATE jobs NOT INDEXED SET status = '{target(Event.CLAIM)}', lane = NULL, "
    "attempts = attempts + 1, fence = fence + 1, worker_id = :worker_id, started_at = :now, "
    "lease_expires_at = :lease_expires_at, updated_at = :now, touched = :touched, "
    "update_seq = update_seq + 1 "
)
_CLAIMABLE = f"lane = {READY} AND {guard(Event.CLAIM)}"
CLAIM_ANY = (
    f"{_CLAIM_SET} WHERE {_CLAIMABLE} AND seq IN "
    f"(SELECT seq FROM jobs WHERE lane = {READY} ORDER BY rank, seq LIMIT :limit)"
)
CLAIM_TYPE = (
    f"{_CLAIM_SET} WHERE {_CLAIMABLE} AND seq IN (SELECT seq FROM jobs "
    f"WHERE lane = {READY} AND job_type = :job_type ORDER BY rank, seq LIMIT :limit)"
)
CANDIDATES_OF_TYPE = (
    f"SELECT rank, seq FROM jobs WHERE lane = {READY} AND job_type = ? ORDER BY rank, seq LIMIT ?"
)


def claim_seqs(count: int) -> str:
    """Claim the jobs with these ``seq`` (``:s0``, ``:s1``...), picked over several types."""
    seqs = ", ".join(f":s{i}" for i in range(count))
    return f"{_CLAIM_SET} WHERE {_CLAIMABLE} AND seq IN ({seqs})"


#: The first ``:limit`` rows of the ready lane whatever their status: a claim that took fewer
#: looks here for rows whose status was corrupted (they would block the lane for ever).
READY_HEAD = f"SELECT seq, status FROM jobs WHERE lane = {READY} ORDER BY rank, seq LIMIT ?"
CLAIMED = (
    f"SELECT {COLUMNS} FROM jobs WHERE status = '{target(Event.CLAIM)}' AND touched = ? "
    "ORDER BY rank, seq"
)

# -- reports from workers ------------------------------------------------------------------------

HELD_ROW = f"SELECT seq FROM jobs WHERE id = :id AND {HELD} AND (:fence IS NULL OR fence = :fence)"
# Every statement that changes a job visibly bumps its update_seq (in _LEAVE for those that end
# an attempt or a job).
_LEAVE = (
    "worker_id = NULL, lease_expires_at = NULL, updated_at = :now, touched = :touched, "
    "update_seq = update_seq + 1"
)
_END = (
    "lane = NULL, completed_at = :now, "
    "expires_at = CASE WHEN ttl IS NULL THEN NULL ELSE :now + ttl END, " + _LEAVE
)
#: An ended job: its update, then its ``depends_on`` (at :data:`ENDED_DEPENDS_ON`).
_ENDED = f"RETURNING {UPDATE_COLUMNS}, depends_on"
ENDED_DEPENDS_ON = len(UPDATE_FIELDS)
# The hot path: no RETURNING (the row count tells), no separate read of the held job, and
# plain positional parameters, so many go out as one ``executemany`` of tuples (binding a dict
# per row cost as much again as the update). In order (see ``complete_params``): results, now
# (three times), touched, id, fence (twice). Numbered ``?N`` placeholders count as named ones
# from Python 3.12 on, which a tuple may not fill.
COMPLETE = (
    f"UPDATE jobs SET status = '{target(Event.COMPLETE)}', results = ?, progress = 1.0, "
    f"error = NULL, {_END.replace(':now', '?').replace(':touched', '?')} "
    f"WHERE id = ? AND {guard(Event.COMPLETE)} AND (? IS NULL OR fence = ?)"
)


def complete_params(
    job_id: str, fence: int | None, results: str | None, now: float, touched: int
) -> tuple[object, ...]:
    """The parameters of :data:`COMPLETE`, in the order its placeholders appear."""
    return (results, now, now, now, touched, job_id, fence, fence)


#: The jobs a run of completions stored (they share its ``touched``).
COMPLETED = f"SELECT id FROM jobs WHERE status = '{target(Event.COMPLETE)}' AND touched = ?"
UPDATE_ROW = f"SELECT {UPDATE_COLUMNS} FROM jobs WHERE id = ?"
FAIL = (
    f"UPDATE jobs SET status = '{target(Event.FAIL)}', error = :error, {_END} "
    f"WHERE seq = :seq AND {guard(Event.FAIL)} {_ENDED}"
)
CANCEL = (
    f"UPDATE jobs SET status = '{target(Event.CANCEL)}', error = :error, {_END} "
    f"WHERE seq = :seq AND {guard(Event.CANCEL)} {_ENDED}"
)
RETRY_LATER = (
    f"UPDATE jobs SET status = '{target(Event.RETRY_LATER)}', error = :error, "
    f"execute_at = :execute_at, lane = :lane, {_LEAVE} "
    f"WHERE seq = :seq AND {guard(Event.RETRY_LATER)} RETURNING {UPDATE_COLUMNS}"
)
# A hard stop hands the attempt back: it did not count, and its progress is forgotten.
RELEASE = (
    f"UPDATE jobs SET status = '{target(Event.RELEASE)}', attempts = attempts - 1, "
    "progress = 0.0, message = NULL, started_at = NULL, "
    f"execute_at = NULL, lane = {READY}, {_LEAVE} "
    f"WHERE seq = :seq AND {guard(Event.RELEASE)} RETURNING {UPDATE_COLUMNS}"
)
#: PROCESSING jobs whose lease ran out, with their losses so far and the losses allowed.
EXPIRED_LEASES = (
    f"SELECT seq, lost, max_lost FROM jobs WHERE {HELD} AND lease_expires_at < :now ORDER BY seq"
)
# A reclaim is a release whose attempt still counts (and one more loss).
RECLAIM = (
    f"UPDATE jobs SET status = '{target(Event.RELEASE)}', lost = lost + 1, "
    f"execute_at = NULL, lane = {READY}, {_LEAVE} "
    f"WHERE seq = :seq AND {guard(Event.RELEASE)} RETURNING {UPDATE_COLUMNS}"
)
# Lost once too often (``_policy.lost_ends_job``): FAILED, a terminal transition.
LOST = (
    f"UPDATE jobs SET status = '{target(Event.FAIL)}', lost = lost + 1, error = :error, {_END} "
    f"WHERE seq = :seq AND {guard(Event.FAIL)} {_ENDED}"
)
# -- corrupt rows (set aside, see writes.set_aside) ----------------------------------------------

#: The columns a corrupt row may have unreadable (they are replaced by empty values).
REPAIRABLE: tuple[str, ...] = (*JSON_FIELDS, "priority")
#: A row as stored, to find out what is corrupt about it.
RAW_ROW = f"SELECT seq, status, lane, {column_list(REPAIRABLE)} FROM jobs WHERE id = ?"
_REPAIR = ", ".join(f"{name} = :{name}" for name in (*REPAIRABLE, "rank", "error"))
#: A corrupt job that had not ended: FAILED, a terminal transition (status left unguarded: it
#: may be one this code does not know).
SET_ASIDE = (
    f"UPDATE jobs SET status = '{target(Event.FAIL)}', {_REPAIR}, {_END} WHERE seq = :seq {_ENDED}"
)
#: A corrupt job that had ended: it keeps its status, its unreadable columns replaced.
REPAIR_ENDED = (
    f"UPDATE jobs SET {_REPAIR}, lane = NULL, updated_at = :now, touched = :touched, "
    f"update_seq = update_seq + 1 WHERE seq = :seq RETURNING {UPDATE_COLUMNS}"
)

PROGRESS = (
    "UPDATE jobs SET progress = coalesce(:progress, progress), "
    "message = coalesce(:message, message), updated_at = :now, touched = :touched, "
    "update_seq = update_seq + 1 "
    f"WHERE id = :id AND {HELD} AND (:fence IS NULL OR fence = :fence)"
)
RENEW = (
    "UPDATE jobs SET lease_expires_at = :lease_expires_at "
    f"WHERE id = :id AND {HELD} AND fence = :fence"
)

# -- dependents ----------------------------------------------------------------------------------


# CROSS JOIN keeps SQLite's planner from starting at the jobs table (all pending jobs):
# these must start from the few edges of one dependency.
def _waiting_on(deps: str) -> str:
    return (
        "SELECT j.seq FROM edges AS e CROSS JOIN jobs AS j ON j.id = e.job_id "
        f"WHERE e.dep_id {deps} AND j.lane = {WAITING}"
    )


def dependents_met(count: int) -> str:
    """Count ``count`` completed dependencies (``?`` each, twice) off the jobs waiting on them;
    return the jobs, so those waiting on nothing more can be placed."""
    ids = ", ".join("?" * count)
    return (
        "UPDATE jobs SET pending_deps = pending_deps - "
        f"(SELECT count(*) FROM edges WHERE edges.job_id = jobs.id AND edges.dep_id IN ({ids})) "
        f"WHERE seq IN ({_waiting_on(f'IN ({ids})')}) "
        "RETURNING seq, pending_deps, execute_at"
    )


def drop_edges_to(count: int) -> str:
    """Forget the edges to ``count`` jobs that have ended."""
    return f"DELETE FROM edges WHERE dep_id IN ({', '.join('?' * count)})"


def orphans(count: int) -> str:
    """The jobs still waiting on ``count`` deleted jobs, with the one each waits on."""
    ids = ", ".join("?" * count)
    return (
        "SELECT e.dep_id, j.seq FROM edges AS e CROSS JOIN jobs AS j ON j.id = e.job_id "
        f"WHERE e.dep_id IN ({ids}) AND j.lane = {WAITING} ORDER BY j.seq"
    )


PLACE = "UPDATE jobs SET lane = ? WHERE seq = ?"
#: Whether any job waits on another at all (most queues never use dependencies).
ANY_EDGE = "SELECT 1 FROM edges LIMIT 1"
DEPENDENTS_WAITING = f"{_waiting_on('= ?')} ORDER BY j.seq"
DROP_EDGES_FROM = "DELETE FROM edges WHERE job_id = ?"

# -- explicit transitions ------------------------------------------------------------------------

ALIVE_ROW = (
    f"SELECT seq, status, lane, unique_key, depends_on, fence FROM jobs WHERE id = :id AND {_ALIVE}"
)
APPLY_COUNTS = "UPDATE counts SET n = n + ? WHERE status = ? AND lane = ?"
RETRY = (
    f"UPDATE jobs SET status = '{target(Event.RETRY)}', lane = :lane, attempts = 0, lost = 0, "
    "error = NULL, message = NULL, results = NULL, progress = 0.0, completed_at = NULL, "
    "expires_at = NULL, execute_at = :execute_at, pending_deps = :pending_deps, "
    "updated_at = :now, touched = :touched, update_seq = update_seq + 1 "
    f"WHERE seq = :seq AND {guard(Event.RETRY)} "
    f"RETURNING {UPDATE_COLUMNS}"
)

# -- reads ---------------------------------------------------------------------------------------

GET = f"SELECT {COLUMNS} FROM jobs WHERE id = :id AND {_ALIVE}"
COUNTS = "SELECT status, lane, n FROM counts"
NEXT_DUE = f"SELECT min(execute_at) FROM jobs WHERE lane = {SCHEDULED}"
#: What a process reads of the jobs it watches: their update, then their ``fence``.
WATCH = f"SELECT {UPDATE_COLUMNS}, fence FROM jobs "


# -- custom updates between processes -----------------------------------------------------------

POST_MESSAGE = "INSERT INTO messages (origin, job_id, body, created_at) VALUES (?, ?, ?, ?)"
PRUNE_MESSAGES = "DELETE FROM messages WHERE created_at < ?"
MESSAGES_SINCE = "SELECT seq, job_id, body FROM messages WHERE seq > ? AND origin != ? ORDER BY seq"
LAST_MESSAGE = "SELECT coalesce(max(seq), 0) FROM messages"


def list_recent(job_type: bool) -> str:
    """``(touched, seq)`` of one status's jobs, most recently updated first (the listing over
    every status merges these)."""
    extra = " AND job_type = :job_type" if job_type else ""
    return (
        f"SELECT touched, seq FROM jobs WHERE status = :status AND {_ALIVE}{extra} "
        "ORDER BY touched DESC, seq DESC LIMIT :limit"
    )


def by_seq(count: int) -> str:
    """Whole jobs, found by ``seq``."""
    return f"SELECT seq, {COLUMNS} FROM jobs WHERE seq IN ({', '.join('?' * count)})"


#: PENDING jobs lane by lane, each in the order it is claimed (or falls due).
LANE_ORDER = {READY: "rank, seq", SCHEDULED: "execute_at, rank, seq", WAITING: "rank, seq"}


def list_lane(lane: int, job_type: bool) -> str:
    """One lane of PENDING jobs, in claim order."""
    extra = " AND job_type = :job_type" if job_type else ""
    return (
        f"SELECT {COLUMNS} FROM jobs WHERE lane = {lane}{extra} "
        f"ORDER BY {LANE_ORDER[lane]} LIMIT :limit OFFSET :offset"
    )


def count_lane(lane: int, job_type: bool) -> str:
    """How many PENDING jobs one lane holds (to skip it when listing with an offset)."""
    extra = " AND job_type = :job_type" if job_type else ""
    return f"SELECT count(*) FROM jobs WHERE lane = {lane}{extra}"


def purge(statuses: int, before: bool, job_type: bool) -> str:
    """Delete terminal jobs of ``statuses`` placeholders, touched before the purge began (one
    more placeholder), finished before, of a type."""
    where = ["status IN (" + ", ".join("?" * statuses) + ")", "touched < ?"]
    if before:
        where.append("coalesce(completed_at, 0) < ?")
    if job_type:
        where.append("job_type = ?")
    return f"DELETE FROM jobs WHERE {' AND '.join(where)} RETURNING id, status"


def watch(count: int) -> str:
    """Read the jobs a process watches (subscribed or running here) after a foreign commit."""
    return WATCH + "WHERE id IN (" + ", ".join("?" * count) + ")"


# -- the worker registry -------------------------------------------------------------------------

DROP_DEAD_WORKERS = "DELETE FROM workers WHERE heartbeat_at < :oldest"
REGISTER_WORKER = (
    "INSERT INTO workers (id, record, heartbeat_at) VALUES (:id, :record, :now) "
    "ON CONFLICT (id) DO UPDATE SET record = excluded.record, heartbeat_at = excluded.heartbeat_at"
)
REMOVE_WORKER = "DELETE FROM workers WHERE id = ?"
LIVE_WORKERS = "SELECT record, heartbeat_at FROM workers WHERE heartbeat_at >= ? ORDER BY id"
