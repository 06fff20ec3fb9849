"""One declaration of a job's fields (``_records.JobRecord``): every layout is derived from it,
and these tests fail when a field is left out of one.

* Each SQL schema (its migrations, applied in order) has a column for every field, NULL-able
  exactly when the field may be None, and what the schema leaves to its defaults starts as a
  new job does.
* The Redis layout places every field (in the spec or the hash), a claim's reply carries every
  field it does not set, and the Lua scripts name no hash field the layout lacks.
* On every backend, a job with every field set reads back the same from a claim as from
  ``get``, and becomes the public models field for field.
* A payload is checked once on its way in; a record that bypasses the queue still gets a typed
  error from SQLite, not a driver's.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from jdobb_async_queue import (
    Job,
    JobPriority,
    JobQueue,
    JobStatus,
    JobUpdate,
    SerializationError,
    _codec,
)
from jdobb_async_queue._models import WorkerInfo
from jdobb_async_queue._records import (
    FIELD_BY_NAME,
    FIELD_NAMES,
    GIVEN_FIELDS,
    JOB_FIELDS,
    JSON_FIELDS,
    OWNED_INITIAL,
    UPDATE_FIELDS,
    JobRecord,
    RecordField,
    WorkerRecord,
    record_update,
    to_job,
    to_update,
    to_worker,
)
from jdobb_async_queue.backends.postgres import queries as pg_queries
from jdobb_async_queue.backends.redis import codec
from jdobb_async_queue.backends.redis.resp import RedisClient
from jdobb_async_queue.backends.redis.scripts import constants_header
from jdobb_async_queue.backends.sqlite import queries as sqlite_queries

SQLITE_SCHEMAS = Path(sqlite_queries.__file__).parent
PG_SCHEMAS = Path(pg_queries.__file__).parent
LUA = Path(codec.__file__).parent / "lua"


def _other_than_default(f: RecordField) -> Any:
    """A value of the field's kind that is not its default (text with quotes and non-ASCII)."""
    if f.kind is str:
        return f'{f.name} "é"'
    if f.kind is bool:
        return not f.default
    if f.kind is int:
        return (f.default or 0) + 3
    if f.kind is float:
        return (f.default or 0.0) + 1.25
    if f.kind is dict:
        return {"a": [1, {"b": None}], "s": f.name}
    return [f"{f.name}-1", f"{f.name}-2"]


def _full_record() -> JobRecord:
    """A record whose every field differs from its default (status and priority: valid ones)."""
    values = {f.name: _other_than_default(f) for f in JOB_FIELDS}
    return JobRecord(**{**values, "status": "processing", "priority": "high"})


def test_the_full_record_sets_every_field() -> None:
    full = _full_record()
    assert [f.name for f in JOB_FIELDS if getattr(full, f.name) == f.default] == []


# -- the declaration itself ----------------------------------------------------------------------


def test_the_declaration_reads_what_each_field_is() -> None:
    assert JobRecord.__struct_fields__ == FIELD_NAMES
    assert dict(JSON_FIELDS) == {
        "data": dict,
        "results": dict,
        "metadata": dict,
        "depends_on": list,
    }
    times = {f.name for f in JOB_FIELDS if f.time}
    assert times == {name for name in FIELD_NAMES if name.endswith("_at")}
    assert FIELD_BY_NAME["completed_at"].optional and not FIELD_BY_NAME["created_at"].optional
    assert FIELD_BY_NAME["ttl"].kind is int and FIELD_BY_NAME["retry_delay"].kind is float
    # The owned fields are the backend's: enqueue never gives them, and a new job has them at
    # their defaults, but its first update sequence number.
    assert set(OWNED_INITIAL) == set(FIELD_NAMES) - set(GIVEN_FIELDS)
    assert {k: v for k, v in OWNED_INITIAL.items() if v != FIELD_BY_NAME[k].default} == {
        "update_seq": 1
    }
    assert next(iter(UPDATE_FIELDS.items())) == ("id", "job_id")
    assert UPDATE_FIELDS["updated_at"] == "timestamp"


def test_the_public_models_are_built_field_for_field() -> None:
    full = _full_record()
    job = to_job(full)
    assert set(Job.model_fields) <= set(FIELD_NAMES)
    for name in Job.model_fields:
        value, stored = getattr(job, name), getattr(full, name)
        if FIELD_BY_NAME[name].time:
            assert value == datetime.fromtimestamp(stored, timezone.utc), name
        else:
            assert value == stored, name
    assert job.status is JobStatus.PROCESSING and job.priority is JobPriority.HIGH
    assert job.data is full.data  # payloads are shared
    assert job.depends_on is not full.depends_on  # lists are copied
    record = record_update(full)
    announced = [getattr(record, name) for name in UPDATE_FIELDS.values()]
    assert announced == [getattr(full, name) for name in UPDATE_FIELDS]
    update = to_update(record)
    for name in JobUpdate.model_fields:
        expected = getattr(record, name)
        if name == "timestamp":
            expected = datetime.fromtimestamp(expected, timezone.utc)
        assert getattr(update, name) == expected, name
    assert update.status is JobStatus.PROCESSING
    worker = WorkerRecord(
        id="w", host="h", pid=1, started_at=1.0, concurrency=2, job_types=["t"], running=["j"]
    )
    info = to_worker(worker)
    assert isinstance(info, WorkerInfo) and info.heartbeat_at == datetime.fromtimestamp(
        0.0, timezone.utc
    )
    assert info.job_types == ["t"] and info.job_types is not worker.job_types


# -- SQL schemas ---------------------------------------------------------------------------------


def _migrations(folder: Path) -> list[Path]:
    return sorted(folder.glob("schema_v*.sql"), key=lambda p: int(p.stem.removeprefix("schema_v")))


def _sqlite_columns() -> dict[str, tuple[bool, Any]]:
    """Column -> (NOT NULL, default value) of the jobs table the SQLite migrations make."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in _migrations(SQLITE_SCHEMAS):
            conn.executescript(script.read_text(encoding="utf-8"))
        columns = {}
        for _, name, _, notnull, default, _ in conn.execute("PRAGMA table_info(jobs)"):
            value = None if default is None else conn.execute(f"SELECT {default}").fetchone()[0]
            columns[name] = (bool(notnull), value)
        return columns
    finally:
        conn.close()


_PG_COLUMN = re.compile(r"^\s+(?P<name>[a-z_]+)\s+(?P<rest>[^,]*?)\s*,?\s*$")


def _pg_columns() -> dict[str, tuple[bool, str | None]]:
    """Column -> (NOT NULL, default as written) of the jobs table the PostgreSQL migrations make."""
    columns: dict[str, tuple[bool, str | None]] = {}
    for script in _migrations(PG_SCHEMAS):
        text = re.sub(r"--[^\n]*", "", script.read_text(encoding="utf-8"))
        for body in re.findall(r"CREATE TABLE jobs \((.*?)\n\);", text, re.S):
            for line in body.splitlines():
                match = _PG_COLUMN.match(line)
                if match:
                    columns[match["name"]] = _pg_column(match["rest"])
        for name, rest in re.findall(r"ALTER TABLE jobs ADD COLUMN (\w+) ([^;]*);", text):
            columns[name] = _pg_column(rest)
    return columns


def _pg_column(rest: str) -> tuple[bool, str | None]:
    default = re.search(r"DEFAULT\s+(\S+)", rest)
    return "NOT NULL" in rest, None if default is None else default[1]


def _missing(fields: Iterable[str], columns: Iterable[str]) -> list[str]:
    return [name for name in fields if name not in set(columns)]


def test_a_field_without_a_column_is_found() -> None:
    """The checks below take the fields from the declaration: one added there without a
    migration adding its column fails them."""
    assert _missing((*FIELD_NAMES, "new_field"), _sqlite_columns()) == ["new_field"]
    assert _missing((*FIELD_NAMES, "new_field"), _pg_columns()) == ["new_field"]


def _stored(name: str, value: Any) -> Any:
    """A field's value as a SQLite column holds it (JSON as text)."""
    return (
        msgspec.json.encode(value).decode() if name in JSON_FIELDS and value is not None else value
    )


def test_the_sqlite_migrations_make_a_column_for_every_field() -> None:
    columns = _sqlite_columns()
    assert _missing(FIELD_NAMES, columns) == []
    for f in JOB_FIELDS:
        notnull, default = columns[f.name]
        assert notnull == (not f.optional), f.name
        if default is not None:  # what rows stored before the column existed read as
            start = OWNED_INITIAL[f.name] if f.owned else f.default
            assert default == _stored(f.name, start), f.name


def test_the_postgres_schema_makes_a_column_for_every_field() -> None:
    columns = _pg_columns()
    assert _missing(FIELD_NAMES, columns) == []
    for f in JOB_FIELDS:
        assert columns[f.name][0] == (not f.optional), f.name


def test_postgres_inserts_what_the_caller_gives_and_defaults_the_rest_as_a_new_job() -> None:
    inserted = re.match(r"INSERT INTO jobs \(([^)]*)\)", pg_queries.INSERT)
    assert inserted is not None
    names = [c.strip() for c in inserted[1].split(",")]
    assert _missing(GIVEN_FIELDS, names) == []
    columns = _pg_columns()
    for name in FIELD_NAMES:
        if name in names:
            continue
        notnull, default = columns[name]
        start = OWNED_INITIAL[name]
        if start is None:
            assert not notnull and default is None, name
        else:
            assert default is not None and float(default) == start, name


# -- the Redis layout ----------------------------------------------------------------------------


def test_redis_keeps_every_field_in_the_spec_or_the_hash() -> None:
    assert set(codec.SPEC_FIELDS).isdisjoint(codec.HASH_FIELDS)
    assert sorted((*codec.SPEC_FIELDS, *codec.HASH_FIELDS)) == sorted(FIELD_NAMES)
    assert set(codec.Spec.__struct_fields__) == set(codec.SPEC_FIELDS)
    header = constants_header()
    for name in codec.HASH_FIELDS:  # every hash field is in the record's JSON, by its name
        assert f"'{codec.hash_name(name)}'" in header and f"',\"{name}\":'" in header, name


def _hash_values(r: JobRecord, names: Sequence[str]) -> list[bytes | None]:
    """The values of the hash fields ``names`` as Redis holds them for ``r`` (the spec first)."""
    values: list[bytes | None] = []
    for name in names:
        if name == "spec":
            values.append(codec.spec_of(r))
            continue
        value = getattr(r, name)
        if value is None:
            values.append(None)
        elif FIELD_BY_NAME[name].json:
            values.append(codec.encode_json(value))
        elif isinstance(value, float):
            values.append(codec.num(value).encode())
        else:
            values.append(str(value).encode())
    return values


def test_a_claims_reply_carries_every_field_the_claim_does_not_set() -> None:
    full = _full_record()
    full.results = full.completed_at = full.expires_at = None  # a claimable job has none
    full.pending_deps = 0
    full.updated_at = full.started_at = 5.5  # the claim's start, in the reply's head
    full.lease_expires_at = 6.5
    reply = [b"5.5", b"6.5", full.id.encode(), *_hash_values(full, codec.CLAIMED)]
    assert len(reply) == 2 + codec.CLAIM_WIDTH
    records, corrupt = codec.claimed_records(reply, worker_id=str(full.worker_id))
    assert corrupt == [] and records == [full]


def test_a_claims_reply_that_does_not_decode_is_corrupt_alone() -> None:
    ok = _full_record()
    bad = _hash_values(ok, codec.CLAIMED)
    bad[codec.CLAIMED.index("attempts")] = b"many"
    reply = [b"5.5", b"6.5", b"bad", *bad, b"ok", *_hash_values(ok, codec.CLAIMED)]
    records, corrupt = codec.claimed_records(reply, worker_id="worker")
    assert [r.id for r in records] == [ok.id] and [c.job_id for c in corrupt] == ["bad"]


_CALL = re.compile(r"call\('(HMGET|HGET|HDEL|HINCRBY|HEXISTS)', K_JOB\([^)]*\), ([^)]*)\)")
_TABLE = re.compile(r"^local (ENDING|FIELDS) = \{([^}]*)\}", re.M)


def test_the_lua_scripts_read_only_fields_of_the_layout() -> None:
    known = {codec.hash_name(n) for n in codec.HASH_FIELDS} | set(codec.MIRRORED)
    known |= set(codec.SCRIPT_FIELDS)
    named: dict[str, set[str]] = {}
    for script in LUA.glob("*.lua"):
        text = script.read_text(encoding="utf-8")
        for _, args in _CALL.findall(text):
            named.setdefault(script.name, set()).update(re.findall(r"'(\w+)'", args))
        for _, fields in _TABLE.findall(text):
            named.setdefault(script.name, set()).update(re.findall(r"'(\w+)'", fields))
    assert named, "the pattern found no field at all"
    unknown = {name: sorted(fields - known) for name, fields in named.items() if fields - known}
    assert unknown == {}


@pytest.mark.anyio
async def test_the_lua_scripts_write_only_fields_of_the_layout(redis_url: str) -> None:
    """Every transition, then every job's hash: no field the layout does not know."""
    known = {codec.hash_name(n) for n in codec.HASH_FIELDS} | set(codec.MIRRORED)
    known |= set(codec.SCRIPT_FIELDS)
    namespace = f"test-schema-{uuid.uuid4().hex[:12]}"
    queue = JobQueue(backend="redis", url=redis_url, namespace=namespace)
    try:
        dep = await queue.enqueue("t", {"x": 1}, ttl=60, unique_key="k", max_lost=2)
        waiting = await queue.enqueue("t", depends_on=[dep], metadata={"m": 1})
        later = await queue.enqueue("t", delay=3600, max_retries=2, timeout=5.0)
        assert await queue.claim() is not None
        assert await queue.update(dep, 0.5, "half")
        assert await queue.fail(dep, "boom", retry=False)  # and `waiting` is cancelled
        assert await queue.retry(dep)
        assert await queue.retry(waiting)
        assert await queue.claim() is not None
        assert await queue.complete(dep, {"r": 1})  # and `waiting` is ready
        assert await queue.claim() is not None
        assert await queue.cancel(waiting, "no")
        assert await queue.cancel(later)
        assert await queue.retry(later, delay=1.0)
        async with RedisClient.from_url(redis_url) as client:
            fields: set[str] = set()
            for job_id in (dep, waiting, later):
                raw = await client.execute("HKEYS", f"jdobb:{{{namespace}}}:job:{job_id}")
                assert raw, job_id
                fields.update(name.decode() for name in raw)
        assert fields - known == set()
        assert {"spec", "status", "deps", "results", "max_lost", "update_seq"} <= fields
    finally:
        drop = getattr(queue.backend, "drop_namespace", None)
        if drop is not None:
            await drop()
        await queue.close()


# -- every backend -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_field_reads_back_the_same_from_a_claim_and_from_get(queue: JobQueue) -> None:
    backend = queue.backend
    dep = await queue.enqueue("dep")
    assert await queue.claim(["dep"]) is not None
    assert await queue.complete(dep, {"done": True})
    job_id = await queue.enqueue(
        "t",
        {"a": [1, {"b": None}], "s": "é"},
        priority=JobPriority.HIGH,
        ttl=60,
        metadata={"m": True},
        execute_at=datetime.now(timezone.utc) - timedelta(seconds=5),
        max_retries=3,
        retry_delay=0.5,
        timeout=9.5,
        depends_on=[dep],
        unique_key="key",
        max_lost=7,
    )
    stored = await backend.get(job_id, now=queue.clock())
    assert stored is not None
    for name in GIVEN_FIELDS:
        assert getattr(stored, name) != FIELD_BY_NAME[name].default, name
    assert stored.update_seq == 1 and stored.status == "pending"
    (claimed,) = await backend.claim_pending_job(
        ["t"], limit=1, worker_id="worker", lease=30.0, now=queue.clock()
    )
    assert claimed == await backend.get(job_id, now=queue.clock())
    assert claimed.attempts == claimed.fence == 1 and claimed.update_seq == 2
    assert {n: getattr(claimed, n) for n in GIVEN_FIELDS} == {
        n: getattr(stored, n) for n in GIVEN_FIELDS
    }
    assert await queue.update(job_id, 0.5, "half")
    assert await queue.complete(job_id, {"r": [1, "x"]})
    done = await backend.get(job_id, now=queue.clock())
    assert done is not None and done.results == {"r": [1, "x"]} and done.message == "half"
    assert done.completed_at is not None and done.expires_at == pytest.approx(
        done.completed_at + 60
    )
    assert to_job(done) == await queue.get(job_id)


# -- one check of a payload ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sqlite_checks_a_payload_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    round_trip = _codec._round_trip

    def counted(value: Any, what: str) -> tuple[bytes, Any]:
        checks.append(what)
        return round_trip(value, what)

    monkeypatch.setattr(_codec, "_round_trip", counted)
    queue = JobQueue(backend="sqlite", url=f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        job_id = await queue.enqueue("t", {"nested": [1, {"x": 2}]}, metadata={"m": [1]})
        assert checks == ["data", "metadata"]
        assert await queue.claim() is not None
        assert await queue.complete(job_id, {"nested": [3]})
        assert checks == ["data", "metadata", "results"]
        job = await queue.get(job_id)
        assert job is not None and job.data == {"nested": [1, {"x": 2}]}
        assert job.results == {"nested": [3]}
    finally:
        await queue.close()


@pytest.mark.anyio
async def test_sqlite_refuses_a_record_it_cannot_encode_with_a_typed_error(tmp_path: Path) -> None:
    queue = JobQueue(backend="sqlite", url=f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        bad = JobRecord(id="bad", job_type="t", data={"x": object()}, update_seq=1)
        with pytest.raises(SerializationError, match="data"):
            await queue.backend.enqueue_many([bad], now=queue.clock())
        assert await queue.backend.get("bad", now=queue.clock()) is None
    finally:
        await queue.close()
