"""Every SQL statement of the PostgreSQL backend, built once at import.

Status guards come from the state machine (:func:`~jdobb_async_queue.backends.sources`), so
the transition table stays the one place where a transition is allowed: a statement that applies
``Event.X`` touches only rows whose status the table allows ``X`` from, and sets the status the
table leads to. The schema is in ``schema_v*.sql`` beside this module (the migrations, kept as they
were applied); statements name its tables without a schema, since each connection's
``search_path`` is the namespace's schema. What they read and write of a job is derived from its
one declaration, :class:`~jdobb_async_queue.backends.JobRecord`: each field is the column of the
same name (``tests/test_schema.py`` checks that the schema makes one for each, and that its
defaults are a new job's), JSON fields are JSON text but ``depends_on``, a ``text[]``.

**Time** is the database's: :data:`NOW` is the transaction's ``now()`` as seconds since the
epoch, unless the caller passes a test clock's time as ``%(now)s``. Times a caller computed on
its own clock (``execute_at``, purge's ``before``) are moved onto the database's by adding
``NOW - %(cnow)s`` (``cnow``: the caller's now) when the two differ by more than
:data:`CLOCK_TOLERANCE`, so hosts whose clocks disagree agree on due times and leases.
"""

from __future__ import annotations

from ...backends import (
    FIELD_NAMES,
    GIVEN_FIELDS,
    JSON_FIELDS,
    UPDATE_FIELDS,
    Event,
    column_list,
    sources,
    transition,
)

READY, SCHEDULED, WAITING = 0, 1, 2

#: The JobRecord fields, in order: the columns carry the same names.
FIELDS: tuple[str, ...] = FIELD_NAMES
COLUMNS = column_list(FIELDS)
#: The columns holding JSON text (``depends_on`` is a ``text[]``).
JSON_COLUMNS: tuple[str, ...] = tuple(name for name in JSON_FIELDS if name != "depends_on")
#: What a published update needs (``UPDATE_FIELDS``), in that order.
UPDATE_COLUMNS = column_list(UPDATE_FIELDS)
#: Where a row of :data:`UPDATE_COLUMNS` holds JSON text.
UPDATE_JSON_AT: tuple[int, ...] = tuple(
    i for i, name in enumerate(UPDATE_FIELDS) if name in JSON_COLUMNS
)
#: The JSON columns :data:`INSERT` takes from a record (as JSON text).
GIVEN_JSON: tuple[str, ...] = tuple(name for name in JSON_COLUMNS if name in GIVEN_FIELDS)

NOW = "coalesce(%(now)s::float8, extract(epoch from now())::float8)"
#: Clocks this close (seconds) count as agreeing: a caller's times are not moved.
CLOCK_TOLERANCE = 1.0
#: What moves a caller's time onto the database's clock.
SHIFT = (
    f"(CASE WHEN abs({NOW} - %(cnow)s::float8) > {CLOCK_TOLERANCE} "
    f"THEN {NOW} - %(cnow)s::float8 ELSE 0 END)"
)
_ALIVE = f"(expires_at IS NULL OR expires_at > {NOW})"
_TOUCH = "touched = nextval('touch_seq')"


def guard(event: Event) -> str:
    """The check that a row is in a state ``event`` is allowed from, for rows found by key.

    Written ``(status ...) IS TRUE`` so that the planner cannot use it to *find* rows through
    ``jobs_by_status``: a queue table's statistics are always stale (a backlog turns from
    pending to processing to complete within seconds), and a status index chosen on a stale
    estimate walks every job of that status, where the key finds the few at hand.
    """
    states = sorted(s.value for s in sources(event))
    if len(states) == 1:
        return f"(status = '{states[0]}') IS TRUE"
    return "(status IN (" + ", ".join(f"'{s}'" for s in states) + ")) IS TRUE"


def target(event: Event) -> str:
    """The one state ``event`` leads to (from any of its sources)."""
    (state,) = {transition(s, event) for s in sources(event)}
    assert state is not None
    return state.value


#: Finds the jobs a worker holds (by ``jobs_by_status``; :func:`guard` only checks).
HELD = "status = 'processing'"
#: Run first in a transaction of batch statements (a batch of completions or of renewals; a
#: claim has the same settings from its function's ``SET`` clauses): they find their rows by
#: index whatever the statistics say, never by a scan of the
#: table or of a status, joined by hash, that a stale estimate makes look cheap (a fresh burst
#: of 3,000 jobs is "a few rows" to the planner). ``set_config(..., true)`` lasts to the COMMIT;
#: the plans psycopg prepares are cached by PostgreSQL without regard to these settings, so a
#: statement that also runs in other transactions (``NOTIFY``, a dependency's release) may keep
#: a plan made under them there: every one of those finds its rows by key either way.
_BY_KEY_SETTINGS = ("enable_seqscan", "enable_bitmapscan", "enable_hashjoin", "enable_mergejoin")
BY_KEY = "SELECT " + ", ".join(f"set_config('{name}', 'off', true)" for name in _BY_KEY_SETTINGS)
LIVE = "status IN ('pending', 'processing')"
_FENCED = "(%(fence)s::int IS NULL OR fence = %(fence)s::int)"

# -- housekeeping ----------------------------------------------------------------------------

#: Scheduled jobs that are due move to the ready lane (rows another transaction holds are left
#: for it: no claim ever waits on another).
PROMOTE = (
    f"UPDATE jobs SET lane = {READY} WHERE seq IN (SELECT seq FROM jobs "
    f"WHERE lane = {SCHEDULED} AND execute_at <= {NOW} ORDER BY execute_at LIMIT 1000 "
    "FOR UPDATE SKIP LOCKED)"
)
EXPIRE = (
    f"DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE expires_at <= {NOW} "
    "ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED) RETURNING id, status"
)
#: Forget the edges to deleted jobs; the jobs still waiting on them, with the one each waited on.
ORPHANS = (
    "WITH gone AS (DELETE FROM edges WHERE dep_id = ANY(%(ids)s::text[]) RETURNING dep_id, job_id) "
    f"SELECT gone.dep_id, gone.job_id FROM gone JOIN jobs ON jobs.id = gone.job_id "
    f"WHERE jobs.lane = {WAITING} ORDER BY jobs.seq"
)
SERVER_NOW = f"SELECT {NOW}"
TOUCH = "SELECT nextval('touch_seq')"

# -- enqueue ---------------------------------------------------------------------------------

EXISTING = "SELECT id FROM jobs WHERE id = ANY(%(ids)s::text[])"
HOLDER = f"SELECT id FROM jobs WHERE unique_key = %(key)s AND {LIVE}"
#: The status of live dependencies, locked against a concurrent end (FOR SHARE): a dependency
#: cannot complete between this read and the commit of the edge that waits for it.
DEP_STATUS = f"SELECT id, status FROM jobs WHERE id = ANY(%(ids)s::text[]) AND {_ALIVE} FOR SHARE"
ADD_EDGES = (
    "INSERT INTO edges (dep_id, job_id) SELECT unnest(%(deps)s::text[]), %(id)s "
    "ON CONFLICT DO NOTHING"
)
_EXECUTE_AT = (
    f"CASE WHEN %(execute_at)s::float8 IS NULL THEN NULL ELSE %(execute_at)s::float8 + {SHIFT} END"
)
#: What INSERT stores in each column it sets: each field the caller gives, from the parameter
#: of the same name (times moved onto the database's clock), then what the store works out
#: (``%(status)s``: pending, or cancelled for a job born with a broken dependency). The other
#: columns start at the schema's defaults, which are a new job's (``OWNED_INITIAL``).
_INSERTED: dict[str, str] = {
    **{name: f"%({name})s" for name in GIVEN_FIELDS},
    "created_at": f"%(created_at)s::float8 + {SHIFT}",
    "execute_at": _EXECUTE_AT,
    "depends_on": "%(depends_on)s::text[]",
    "status": "%(status)s",
    "lane": f"CASE WHEN %(status)s <> 'pending' THEN NULL WHEN %(pending_deps)s::int > 0 "
    f"THEN {WAITING} WHEN %(execute_at)s::float8 > %(cnow)s::float8 THEN {SCHEDULED} "
    f"ELSE {READY} END",
    "rank": "%(rank)s",
    "error": "%(error)s",
    "updated_at": NOW,
    "touched": "nextval('touch_seq')",
    "completed_at": f"CASE WHEN %(status)s = 'pending' THEN NULL ELSE {NOW} END",
    "pending_deps": "%(pending_deps)s",
    "expires_at": "CASE WHEN %(status)s = 'pending' OR %(ttl)s::int IS NULL THEN NULL "
    f"ELSE {NOW} + %(ttl)s::int END",
}
INSERT = f"INSERT INTO jobs ({column_list(_INSERTED)}) VALUES ({', '.join(_INSERTED.values())})"

#: One job with neither dependencies nor unique key, in one statement (its own transaction):
#: stored unless its id is taken, and idle workers woken.
INSERT_ONE = (
    f"WITH ins AS ({INSERT} ON CONFLICT (id) DO NOTHING RETURNING id) "
    "SELECT id, pg_notify(%(channel)s, 'j') FROM ins"
)

# -- claim -----------------------------------------------------------------------------------

_CLAIM = (
    f"UPDATE jobs SET status = '{target(Event.CLAIM)}', lane = NULL, attempts = attempts + 1, "
    f"fence = fence + 1, worker_id = %(worker_id)s, started_at = {NOW}, "
    f"lease_expires_at = {NOW} + %(lease)s::float8, updated_at = {NOW}, {_TOUCH}, "
    "update_seq = update_seq + 1 WHERE jobs.seq = ANY(ARRAY(SELECT seq FROM picked)) "
    f"RETURNING jobs.rank, jobs.seq AS pos, {column_list(FIELDS, 'jobs')}"
)


#: What a claim tells other processes' subscribers, in the same statement, on the updates
#: channel (``store.updates_channel``): ``u <origin> <ids>`` (a JSON list), or ``*`` (read every
#: job again) past a NOTIFY payload's size.
def _told(rows: str) -> str:
    """The CTE ``told``: what a statement tells other processes' subscribers of the jobs
    ``rows`` (a CTE with an ``id`` column) holds, in the same statement, on the updates channel
    (``store.updates_channel``): ``u <origin> <ids>`` (a JSON list), or ``*`` (read every job
    again) past a NOTIFY payload's size."""
    return (
        "told AS (SELECT pg_notify(%(uchannel)s, CASE WHEN octet_length(p) > 7900 "
        "THEN 'u ' || %(origin)s || ' *' ELSE p END) FROM (SELECT 'u ' || %(origin)s || ' ' || "
        f"json_agg(id)::text AS p FROM {rows}) AS agg WHERE p IS NOT NULL) "
    )


_TOLD = _told("claimed")
_CLAIMED = "SELECT claimed.* FROM claimed LEFT JOIN told ON true"
#: The rows a claim may take: ready, and in the state a claim starts from. ``FOR UPDATE SKIP
#: LOCKED`` checks this again on the newest row version as it locks it, and the lock holds to
#: the COMMIT, so the UPDATE needs no guard of its own: it finds its rows by primary key, a plan
#: that stays cheap whatever the table's statistics say (a queue's change by the second).
_PICKABLE = f"lane = {READY} AND {guard(Event.CLAIM)}"
#: Claim a batch of ready jobs, priority then FIFO, skipping rows other claimers hold; the
#: statement announces the claims itself, so nothing needs reading back before the COMMIT.
#: (Run under :data:`BY_KEY`'s settings: on a table filled since its last ANALYZE the planner
#: would otherwise bitmap-scan and sort every ready row rather than walk ``jobs_ready`` in order.)
CLAIM_ANY = (
    f"WITH picked AS (SELECT seq FROM jobs WHERE {_PICKABLE} ORDER BY rank, seq "
    f"LIMIT %(limit)s FOR UPDATE SKIP LOCKED), claimed AS ({_CLAIM}), {_TOLD}{_CLAIMED}"
)
#: The same for some job types: the first ``limit`` of each type, in ``jobs_ready_by_type``'s
#: order, then the first ``limit`` of those. (``job_type = ANY(...)`` in one scan would read
#: every ready row of those types and sort them, a cost growing with the backlog.) The rows
#: locked but not taken are free again at the COMMIT; as other claimers skipped them meanwhile
#: (and may have found nothing), the statement then wakes them (``j``).
CLAIM_TYPES = (
    "WITH locked AS (SELECT c.seq, c.rank FROM unnest(%(types)s::text[]) AS t(job_type) "
    "CROSS JOIN LATERAL (SELECT seq, rank FROM jobs "
    f"WHERE {_PICKABLE} AND jobs.job_type = t.job_type ORDER BY rank, seq "
    "LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS c), "
    "picked AS (SELECT seq FROM locked ORDER BY rank, seq LIMIT %(limit)s), "
    f"claimed AS ({_CLAIM}), {_TOLD}, "
    "spare AS (SELECT pg_notify(%(channel)s, 'j') "
    "WHERE (SELECT count(*) FROM locked) > (SELECT count(*) FROM picked)) "
    f"{_CLAIMED} LEFT JOIN spare ON true"
)

# -- the claims as functions of the session ----------------------------------------------------
#
# A claim is the hot path of every worker, and of its idle wake-up: as a function of the
# connection's own session (``pg_temp``, made when the pool opens the connection, from the
# statements above) it is one statement in autocommit, one round trip, its plan cached by
# PL/pgSQL and run under the BY_KEY settings, where the same work as a transaction (BEGIN,
# PROMOTE, BY_KEY, the claim, COMMIT) took 0.3 ms more for one job and 1 ms more for fifty.
# Being made per session, they always match this code: nothing is stored in the schema.
#
# Its statements use one generic plan (``plan_cache_mode``): PL/pgSQL otherwise kept choosing a
# custom plan, planning the claim (a five-part CTE) afresh on every call: 0.3-0.5 ms of a
# one-job claim's 0.4-0.6 ms in the function here. Under the BY_KEY settings the plan finds
# its rows by key whatever the parameters, so one plan serves every call.
GENERIC = "force_generic_plan"

#: The claim functions' arguments, in order.
_CLAIM_ARGS = (
    ("now", "float8"),
    ("worker_id", "text"),
    ("lease", "float8"),
    ("limit", "int"),
    ("channel", "text"),
    ("uchannel", "text"),
    ("origin", "text"),
)
_CLAIM_TYPES_ARGS = (*_CLAIM_ARGS, ("types", "text[]"))
#: The ``jobs`` columns' types, to declare what the functions return.
COLUMN_TYPES = (
    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = 'jobs'::regclass AND attnum > 0 AND NOT attisdropped"
)


def _call(name: str, args: tuple[tuple[str, str], ...]) -> str:
    given = ", ".join(f"%({arg})s::{kind}" for arg, kind in args)
    return f"SELECT * FROM pg_temp.{name}({given})"


def _function(
    name: str,
    body: str,
    args: tuple[tuple[str, str], ...],
    returns: str,
    *,
    declare: str = "",
) -> str:
    for number, (arg, _) in enumerate(args, 1):
        body = body.replace(f"%({arg})s", f"${number}")
    if "%" in body or "$fn$" in body:
        raise AssertionError(f"{name}: a placeholder left, or a quote inside: {body}")
    settings = " ".join(f"SET {setting} = off" for setting in _BY_KEY_SETTINGS)
    settings += f" SET plan_cache_mode = {GENERIC}"
    kinds = ", ".join(kind for _, kind in args)
    return (
        f"CREATE FUNCTION pg_temp.{name}({kinds}) RETURNS TABLE ({returns}) "
        f"LANGUAGE plpgsql {settings} AS $fn$ {declare}BEGIN {body} END $fn$"
    )


def session_functions(column_types: dict[str, str]) -> list[str]:
    """The statements that make a session's functions, given :data:`COLUMN_TYPES`: the claims
    (promote the due scheduled jobs, then claim: :data:`CLAIM_ANY`, :data:`CLAIM_TYPES`) and
    the completions (:data:`COMPLETE_TOLD`, then :data:`RELEASE_DEPENDENTS` for the jobs it
    completed)."""

    def table(names: list[str]) -> str:
        return ", ".join(f"c{i} {column_types[name]}" for i, name in enumerate(names))

    claimed = table(["rank", "seq", *FIELDS])  # what the claims return, in order
    stored = list(UPDATE_FIELDS)
    arrays = [f"a{i}" for i in range(len(stored))]
    declare = (
        "DECLARE "
        + " ".join(f"{a} {column_types[name]}[]; " for a, name in zip(arrays, stored, strict=True))
        + "woke int; "
    )
    # Two statements, so two snapshots: the release must see the edges of dependents that
    # enqueues (holding their dependency FOR SHARE, which the completion waited for) added.
    completion = (
        f"{_complete_told(into=arrays)}; "
        f"WITH {_release(arrays[0])}SELECT count(*) INTO woke FROM woken; "
        f"RETURN QUERY SELECT * FROM unnest({', '.join(arrays)});"
    )
    return [
        _function("jdobb_claim_any", f"{PROMOTE}; RETURN QUERY {CLAIM_ANY};", _CLAIM_ARGS, claimed),
        _function(
            "jdobb_claim_types",
            f"{PROMOTE}; RETURN QUERY {CLAIM_TYPES};",
            _CLAIM_TYPES_ARGS,
            claimed,
        ),
        _function("jdobb_complete", completion, _COMPLETE_ARGS, table(stored), declare=declare),
    ]


CALL_CLAIM_ANY = _call("jdobb_claim_any", _CLAIM_ARGS)
CALL_CLAIM_TYPES = _call("jdobb_claim_types", _CLAIM_TYPES_ARGS)
# -- reports from workers ----------------------------------------------------------------------

_LEAVE = (
    f"worker_id = NULL, lease_expires_at = NULL, updated_at = {NOW}, {_TOUCH}, "
    "update_seq = update_seq + 1"
)
_END = (
    f"lane = NULL, completed_at = {NOW}, "
    f"expires_at = CASE WHEN ttl IS NULL THEN NULL ELSE {NOW} + ttl END, " + _LEAVE
)
COMPLETE = (
    f"UPDATE jobs SET status = '{target(Event.COMPLETE)}', results = %(results)s, "
    f"progress = 1.0, error = NULL, {_END} "
    f"WHERE id = %(id)s AND {guard(Event.COMPLETE)} AND {_FENCED} RETURNING {UPDATE_COLUMNS}"
)
#: Many completions in one statement: ``%(outcomes)s`` is a JSON list of ``{"id", "fence"
#: (null: any), "results" (JSON text, or null)}``; ids must be distinct. (One JSON text rather
#: than three arrays: psycopg dumps a list element by element in Python, 3.5 µs a job.)
COMPLETE_MANY = (
    f"UPDATE jobs SET status = '{target(Event.COMPLETE)}', results = o.results, "
    f"progress = 1.0, error = NULL, {_END} "
    "FROM json_to_recordset(%(outcomes)s::json) AS o(id text, fence int, results text) "
    f"WHERE jobs.id = o.id AND {guard(Event.COMPLETE)} "
    "AND (o.fence IS NULL OR jobs.fence = o.fence) "
    f"RETURNING {column_list(UPDATE_FIELDS, 'jobs')}"
)
RETRY_LATER = (
    f"UPDATE jobs SET status = '{target(Event.RETRY_LATER)}', error = %(error)s, "
    f"execute_at = {NOW} + %(delay)s::float8, "
    f"lane = CASE WHEN %(delay)s::float8 > 0 THEN {SCHEDULED} ELSE {READY} END, {_LEAVE} "
    f"WHERE id = %(id)s AND {guard(Event.RETRY_LATER)} AND {_FENCED} RETURNING {UPDATE_COLUMNS}"
)
RELEASE = (
    f"UPDATE jobs SET status = '{target(Event.RELEASE)}', attempts = attempts - 1, "
    f"progress = 0.0, message = NULL, started_at = NULL, execute_at = NULL, lane = {READY}, "
    f"{_LEAVE} WHERE id = %(id)s AND {guard(Event.RELEASE)} AND {_FENCED} "
    f"RETURNING {UPDATE_COLUMNS}"
)


def end(event: Event, extra: str = "") -> str:
    """A terminal transition (fail, cancel) of the row ``%(seq)s``: returns its update columns
    (``None`` when the row is not in a state ``event`` applies to)."""
    return (
        f"UPDATE jobs SET status = '{target(event)}', error = %(error)s, {extra}{_END} "
        f"WHERE seq = %(seq)s AND {guard(event)} RETURNING {UPDATE_COLUMNS}"
    )


FAIL = end(Event.FAIL)
CANCEL = end(Event.CANCEL)
LOST = end(Event.FAIL, "lost = lost + 1, ")
HELD_ROW = f"SELECT seq FROM jobs WHERE id = %(id)s AND {HELD} AND {_FENCED} FOR UPDATE"
#: Its own edges (what it still waited for) no longer matter once a job ends.
DROP_OWN_EDGES = "DELETE FROM edges WHERE job_id = %(id)s"
#: The jobs waiting on one that ended FAILED or CANCELLED: they are cancelled in turn.
DEPENDENTS = (
    "WITH gone AS (DELETE FROM edges WHERE dep_id = %(id)s RETURNING job_id) "
    f"SELECT jobs.seq FROM gone JOIN jobs ON jobs.id = gone.job_id "
    f"WHERE jobs.lane = {WAITING} ORDER BY jobs.seq"
)


def _release(ids: str) -> str:
    """The CTEs ``gone``, ``met``, ``freed`` and ``woken``: the completed jobs ``ids`` (a
    ``text[]``) counted off their dependents, those now free placed, idle workers woken when one
    is ready. (The lane check is ``IS TRUE``, which no index serves: the dependents are found
    by id, whatever the table's statistics say, not by walking every waiting job.)"""
    return (
        f"gone AS (DELETE FROM edges WHERE dep_id = ANY({ids}) RETURNING job_id), "
        "met AS (SELECT job_id, count(*) AS n FROM gone GROUP BY job_id), "
        "freed AS (UPDATE jobs SET pending_deps = jobs.pending_deps - met.n, "
        f"lane = CASE WHEN jobs.pending_deps - met.n > 0 THEN {WAITING} "
        f"WHEN jobs.execute_at > {NOW} THEN {SCHEDULED} ELSE {READY} END "
        f"FROM met WHERE jobs.id = met.job_id AND (jobs.lane = {WAITING}) IS TRUE "
        "RETURNING jobs.lane), "
        "woken AS (SELECT pg_notify(%(channel)s, 'j') "
        f"FROM (SELECT 1 FROM freed WHERE lane = {READY} LIMIT 1) AS one) "
    )


#: Completed dependencies counted off their dependents; those now free are placed.
#: (Idle workers are woken in the same statement when one is ready: nothing to read back, so
#: it travels in the pipeline with the COMMIT.)
RELEASE_DEPENDENTS = "WITH " + _release("%(ids)s::text[]") + "SELECT * FROM woken"


def _complete_told(into: list[str] | None = None) -> str:
    """:data:`COMPLETE_MANY` and the NOTIFY of what it changed (``told``); the rows it stored,
    a column as an array each (``into`` those PL/pgSQL variables)."""
    columns = ", ".join(f"array_agg(done.{name})" for name in UPDATE_FIELDS)
    target = "" if into is None else " INTO " + ", ".join(into)
    return (
        f"WITH done AS ({COMPLETE_MANY}), {_told('done')}"
        f"SELECT {columns}{target} FROM done LEFT JOIN told ON true"
    )


#: A batch of completions as the session function ``jdobb_complete`` runs it: this, then
#: :data:`RELEASE_DEPENDENTS` for the ids it stored; what ``store.finish_many`` does in a
#: transaction for a batch of completions alone (a worker's every batch while its jobs
#: succeed), in one round trip in autocommit.
COMPLETE_TOLD = _complete_told()
_COMPLETE_ARGS = (
    ("now", "float8"),
    ("outcomes", "json"),
    ("channel", "text"),
    ("uchannel", "text"),
    ("origin", "text"),
)
CALL_COMPLETE = _call("jdobb_complete", _COMPLETE_ARGS)
PROGRESS = (
    "UPDATE jobs SET progress = coalesce(%(progress)s::float8, progress), "
    f"message = coalesce(%(message)s, message), updated_at = {NOW}, {_TOUCH}, "
    f"update_seq = update_seq + 1 WHERE id = %(id)s AND {HELD} AND {_FENCED} "
    f"RETURNING {UPDATE_COLUMNS}"
)
RENEW = (
    f"UPDATE jobs SET lease_expires_at = {NOW} + %(duration)s::float8 "
    "FROM json_to_recordset(%(leases)s::json) AS lease(id text, fence int) "
    f"WHERE jobs.id = lease.id AND jobs.fence = lease.fence AND {guard(Event.COMPLETE)} "
    "RETURNING jobs.id"
)
EXPIRED_LEASES = (
    f"SELECT seq, lost, max_lost FROM jobs WHERE {HELD} AND lease_expires_at < {NOW} "
    "ORDER BY seq LIMIT 1000 FOR UPDATE SKIP LOCKED"
)
RECLAIM = (
    f"UPDATE jobs SET status = '{target(Event.RELEASE)}', lost = lost + 1, execute_at = NULL, "
    f"lane = {READY}, {_LEAVE} WHERE seq = %(seq)s AND {guard(Event.RELEASE)} "
    f"RETURNING {UPDATE_COLUMNS}"
)

# -- explicit transitions --------------------------------------------------------------------

ALIVE_ROW = (
    "SELECT seq, status, unique_key, depends_on, fence FROM jobs "
    f"WHERE id = %(id)s AND {_ALIVE} FOR UPDATE"
)
RETRY = (
    f"UPDATE jobs SET status = '{target(Event.RETRY)}', attempts = 0, lost = 0, error = NULL, "
    "message = NULL, results = NULL, progress = 0.0, completed_at = NULL, expires_at = NULL, "
    "pending_deps = %(pending_deps)s, "
    f"execute_at = CASE WHEN %(delay)s::float8 > 0 THEN {NOW} + %(delay)s::float8 END, "
    f"lane = CASE WHEN %(pending_deps)s::int > 0 THEN {WAITING} "
    f"WHEN %(delay)s::float8 > 0 THEN {SCHEDULED} ELSE {READY} END, "
    f"updated_at = {NOW}, {_TOUCH}, update_seq = update_seq + 1 "
    f"WHERE seq = %(seq)s AND {guard(Event.RETRY)} RETURNING {UPDATE_COLUMNS}"
)

# -- reads -------------------------------------------------------------------------------------

GET = f"SELECT {COLUMNS} FROM jobs WHERE id = %(id)s AND {_ALIVE}"
STATS = f"SELECT status, lane, count(*) FROM jobs WHERE {_ALIVE} GROUP BY status, lane"
NEXT_DUE = f"SELECT min(execute_at) - {NOW} FROM jobs WHERE lane = {SCHEDULED}"
NEXT_DUE_TYPES = (
    f"SELECT min(execute_at) - {NOW} FROM jobs WHERE lane = {SCHEDULED} "
    "AND job_type = ANY(%(types)s::text[])"
)
#: PENDING jobs lane by lane, each in the order it is claimed (or falls due).
_LANE_ORDER = {READY: "rank, seq", SCHEDULED: "execute_at, rank, seq", WAITING: "rank, seq"}
STATUSES = ("pending", "processing", "complete", "failed", "cancelled")


def list_pending(typed: bool) -> str:
    """PENDING jobs in claim order: ready, then scheduled by due time, then waiting."""
    extra = " AND job_type = %(job_type)s" if typed else ""
    parts = [
        f"(SELECT {lane} AS l, {'execute_at' if lane == SCHEDULED else '0::float8'} AS k, "
        f"rank, seq FROM jobs WHERE lane = {lane}{extra} ORDER BY {order} LIMIT %(upto)s)"
        for lane, order in _LANE_ORDER.items()
    ]
    return (
        f"SELECT {COLUMNS} FROM jobs JOIN ({' UNION ALL '.join(parts)}) AS page "
        "ON jobs.seq = page.seq ORDER BY page.l, page.k, page.rank, page.seq "
        "LIMIT %(limit)s OFFSET %(offset)s"
    )


def list_recent(status: str | None, typed: bool) -> str:
    """Jobs of one status (None: any), most recently updated first."""
    extra = " AND job_type = %(job_type)s" if typed else ""
    statuses = STATUSES if status is None else (status,)
    parts = [
        f"(SELECT seq, touched FROM jobs WHERE status = '{s}' AND {_ALIVE}{extra} "
        "ORDER BY touched DESC LIMIT %(upto)s)"
        for s in statuses
    ]
    return (
        f"SELECT {COLUMNS} FROM jobs JOIN ({' UNION ALL '.join(parts)}) AS page "
        "ON jobs.seq = page.seq ORDER BY page.touched DESC LIMIT %(limit)s OFFSET %(offset)s"
    )


def purge(before: bool, typed: bool) -> str:
    """Delete terminal jobs of ``%(statuses)s``, finished before, of a type."""
    where = ["status = ANY(%(statuses)s::text[])", "touched < %(ceiling)s"]
    if before:
        where.append(f"coalesce(completed_at, 0) < %(before)s::float8 + {SHIFT}")
    if typed:
        where.append("job_type = %(job_type)s")
    return f"DELETE FROM jobs WHERE {' AND '.join(where)} RETURNING id, status"


# -- notifications and custom updates ------------------------------------------------------------

NOTIFY = (
    "SELECT pg_notify(channel, payload) "
    "FROM unnest(%(channels)s::text[], %(payloads)s::text[]) AS n(channel, payload)"
)
POST_MESSAGE = f"INSERT INTO messages (body, created_at) VALUES (%(body)s, {NOW}) RETURNING seq"
PRUNE_MESSAGES = f"DELETE FROM messages WHERE created_at < {NOW} - 60"
MESSAGE = "SELECT body FROM messages WHERE seq = %(seq)s"

# -- the worker registry -------------------------------------------------------------------------

DROP_DEAD_WORKERS = f"DELETE FROM workers WHERE heartbeat_at < {NOW} - %(ttl)s::float8"
REGISTER_WORKER = (
    f"INSERT INTO workers (id, record, heartbeat_at) VALUES (%(id)s, %(record)s, {NOW}) "
    "ON CONFLICT (id) DO UPDATE SET record = excluded.record, heartbeat_at = excluded.heartbeat_at"
)
REMOVE_WORKER = "DELETE FROM workers WHERE id = %(id)s"
LIVE_WORKERS = (
    f"SELECT record, heartbeat_at FROM workers WHERE heartbeat_at >= {NOW} - %(ttl)s::float8 "
    "ORDER BY id"
)
