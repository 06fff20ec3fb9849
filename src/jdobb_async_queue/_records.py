"""What backends store and hand to the runtime: lean msgspec structs, no validation on the hot path.

:class:`JobRecord` is a job as a backend sees it (times are float seconds since the epoch, the
status and priority plain strings). :func:`to_job` turns one into the public pydantic
:class:`~jdobb_async_queue.Job` at the boundary.

**One declaration of a job's fields.** :class:`JobRecord` is the one place that names a job's
fields. What a store must know of each is in its type: the kind of value (text, an integer, a
float, or a dict or list, which SQL stores hold as JSON text), whether it may be None, and two
markers: :data:`Owned` (the backend sets it: a record handed to ``enqueue_many`` leaves it at its
default) and :data:`Time` (seconds since the epoch; a datetime in the public models).
:data:`JOB_FIELDS` reads them once, at import, and every layout is derived from it: the SQL
backends' column lists and row conversions, the Redis hash layout and the field lists of the Lua
scripts, the memory backend's snapshots, and the conversions below to the public
:class:`~jdobb_async_queue.Job`, :class:`~jdobb_async_queue.JobUpdate` and
:class:`~jdobb_async_queue.WorkerInfo`. A new field is stored and read back by every backend once
it is declared here (a SQL backend also needs the migration adding its column; ``tests/
test_schema.py`` fails until it exists).
"""

from __future__ import annotations

import operator
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar, Union

import msgspec
from pydantic import BaseModel

from ._models import Job, JobUpdate, WorkerInfo

__all__ = [
    "JobRecord",
    "Outcome",
    "ProgressUpdate",
    "Lease",
    "UpdateRecord",
    "PRIORITY_RANK",
    "DEFAULT_MAX_LOST",
    "Owned",
    "Time",
    "RecordField",
    "JOB_FIELDS",
    "FIELD_NAMES",
    "FIELD_BY_NAME",
    "GIVEN_FIELDS",
    "JSON_FIELDS",
    "OWNED_INITIAL",
    "UPDATE_FIELDS",
    "column_list",
    "update_of_values",
    "to_job",
    "to_update",
    "record_update",
    "gone_update",
    "WorkerRecord",
    "to_worker",
    "utc",
]

T = TypeVar("T")
R = TypeVar("R", bound=msgspec.Struct)
M = TypeVar("M", bound=BaseModel)

#: How many times a job's lease may run out before it is FAILED (``enqueue(max_lost=)``).
DEFAULT_MAX_LOST = 5

#: Claim order of the priorities: lower is claimed first.
PRIORITY_RANK: dict[str, int] = {"high": 0, "normal": 1, "low": 2}


class _Marker:
    """A fact about a record's field that its type cannot say, attached with ``Annotated``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_OWNED = _Marker("Owned")
_TIME = _Marker("Time")

#: A field the backend sets (on enqueue, claim and every transition); every other field of a
#: :class:`JobRecord` is given by the caller at enqueue and stored as given.
Owned = Annotated[T, _OWNED]
#: Seconds since the epoch (an aware UTC datetime in the public models).
Time = Annotated[float, _TIME]


class JobRecord(msgspec.Struct, kw_only=True):
    """One job as a backend stores it: the one declaration of a job's fields (see the module
    docs). Fields marked :data:`Owned` are the backend's to set."""

    id: str
    job_type: str
    data: dict[str, Any] = {}
    status: Owned[str] = "pending"
    priority: str = "normal"
    progress: Owned[float] = 0.0
    message: Owned[str | None] = None
    results: Owned[dict[str, Any] | None] = None
    error: Owned[str | None] = None
    metadata: dict[str, Any] = {}
    created_at: Time = 0.0
    updated_at: Owned[Time] = 0.0
    completed_at: Owned[Time | None] = None
    ttl: int | None = None
    #: Not claimable before this time (None: at once).
    execute_at: Time | None = None
    attempts: Owned[int] = 0
    max_retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    started_at: Owned[Time | None] = None
    depends_on: list[str] = []
    unique_key: str | None = None
    worker_id: Owned[str | None] = None
    lease_expires_at: Owned[Time | None] = None
    #: Bumped by every claim: a worker's late report about an older claim is ignored.
    fence: Owned[int] = 0
    #: Dependencies not yet COMPLETE; claimable only at 0.
    pending_deps: Owned[int] = 0
    #: When a terminal job is deleted (completed_at + ttl), None: kept.
    expires_at: Owned[Time | None] = None
    #: How many times its lease ran out (its worker died or stalled); past ``max_lost`` it fails.
    lost: Owned[int] = 0
    #: Lease run-outs allowed before the job is FAILED (see ``_policy.lost_ends_job``).
    max_lost: int = DEFAULT_MAX_LOST
    #: The job's update sequence number: 1 when stored, +1 on every change of its state,
    #: progress or message. Subscribers order and de-duplicate updates by it, never by time.
    update_seq: Owned[int] = 0


class Outcome(msgspec.Struct, kw_only=True, frozen=True):
    """How an attempt ended, as decided by :mod:`jdobb_async_queue._policy`: the transition a
    backend applies to a PROCESSING job whose fence matches.

    ``fence`` is the claim's fence; ``None`` applies to whoever holds the job. ``kind``:

    - ``"complete"``: COMPLETE with ``results``;
    - ``"retry"``: PENDING again with ``error``, due ``delay`` seconds after the store's now;
    - ``"fail"``: FAILED with ``error``;
    - ``"release"``: PENDING, due at once, the attempt not counted (a hard stop handed it back).
    """

    job_id: str
    kind: Literal["complete", "retry", "fail", "release"]
    fence: int | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    #: For ``"retry"``: seconds from the store's now until the job is due again.
    delay: float = 0.0


class ProgressUpdate(msgspec.Struct, kw_only=True, frozen=True):
    """A progress report for a PROCESSING job."""

    job_id: str
    progress: float | None = None
    message: str | None = None
    fence: int | None = None


class Lease(msgspec.Struct, kw_only=True, frozen=True):
    """A lease a worker holds on a PROCESSING job, identified by the claim's fence."""

    job_id: str
    fence: int


class UpdateRecord(msgspec.Struct, kw_only=True, frozen=True):
    """A job update as backends publish it (see :class:`~jdobb_async_queue.JobUpdate`).

    Its fields but ``data`` and ``gone`` are the job's (:data:`UPDATE_FIELDS`).
    """

    job_id: str
    status: str
    progress: float = 0.0
    message: str | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    #: The job's ``updated_at``.
    timestamp: Time = 0.0
    #: A custom update's payload (:meth:`Broadcaster.send`); None for the job's own updates.
    data: dict[str, Any] | None = None
    #: The job's ``update_seq`` when this state was stored. A custom update (``data`` set,
    #: nothing stored) carries the sequence number of the state it was sent in.
    update_seq: int = 0
    #: The job is gone (purged, expired, deleted): the last update a subscriber gets.
    gone: bool = False


class WorkerRecord(msgspec.Struct, kw_only=True):
    """A running worker as the store's registry keeps it (times: seconds since the epoch)."""

    id: str
    host: str
    pid: int
    started_at: Time
    concurrency: int
    job_types: list[str] = []
    #: Ids of the jobs it is running.
    running: list[str] = []
    #: When it last said it was alive; it drops out ``WORKER_TTL`` seconds later.
    heartbeat_at: Time = 0.0


# -- what the declarations say, read once ------------------------------------------------------


@dataclass(frozen=True)
class RecordField:
    """What a store needs to know of one field of a record, read from its declaration."""

    name: str
    #: The type of its values as declared, None and markers left out (``list[str]``, ``int``).
    value_type: Any
    #: What kind of value that is: ``str``, ``int``, ``float``, ``bool``, ``dict`` or ``list``
    #: (the last two are JSON values: SQL stores keep them as JSON text).
    kind: type
    #: Whether it may be None (NULL in a SQL store; left out of a Redis hash).
    optional: bool
    #: Set by the backend, not by the caller (:data:`Owned`).
    owned: bool
    #: Seconds since the epoch (:data:`Time`).
    time: bool
    #: Its default (an empty dict or list for those kinds); ``msgspec.NODEFAULT``: none.
    default: Any

    @property
    def json(self) -> bool:
        """Whether its values are JSON objects or arrays (stored as JSON text by SQL stores)."""
        return self.kind in (dict, list)


def _unwrap(annotation: Any) -> tuple[Any, bool, frozenset[_Marker]]:
    """The type of values, whether None is allowed, and the markers, of a field's annotation."""
    markers: set[_Marker] = set()
    optional = False
    while True:
        if typing.get_origin(annotation) is Annotated:
            markers.update(m for m in annotation.__metadata__ if isinstance(m, _Marker))
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) in (Union, types.UnionType):
            args = typing.get_args(annotation)
            (annotation,) = [a for a in args if a is not type(None)]  # X or X | None only
            optional = optional or type(None) in args
        else:
            return annotation, optional, frozenset(markers)


def _fields_of(struct: type[msgspec.Struct]) -> tuple[RecordField, ...]:
    hints = typing.get_type_hints(struct, include_extras=True)
    found = []
    for info in msgspec.structs.fields(struct):
        value_type, optional, markers = _unwrap(hints[info.name])
        default = info.default
        if info.default_factory is not msgspec.NODEFAULT:
            default = info.default_factory()
        found.append(
            RecordField(
                name=info.name,
                value_type=value_type,
                kind=typing.get_origin(value_type) or value_type,
                optional=optional,
                owned=_OWNED in markers,
                time=_TIME in markers,
                default=default,
            )
        )
    return tuple(found)


#: Every field of :class:`JobRecord`, in declaration order, with what stores need to know of it.
JOB_FIELDS: tuple[RecordField, ...] = _fields_of(JobRecord)
#: The names of :data:`JOB_FIELDS`: the SQL backends' columns carry the same names.
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in JOB_FIELDS)
#: :data:`JOB_FIELDS` by name.
FIELD_BY_NAME: Mapping[str, RecordField] = MappingProxyType({f.name: f for f in JOB_FIELDS})
#: The fields a caller gives at enqueue (the others are :data:`Owned`), in declaration order.
GIVEN_FIELDS: tuple[str, ...] = tuple(f.name for f in JOB_FIELDS if not f.owned)
#: The fields holding JSON values (a SQL store's JSON text columns), with the type each holds.
JSON_FIELDS: Mapping[str, type] = MappingProxyType({f.name: f.kind for f in JOB_FIELDS if f.json})
#: The owned fields of a job as it is stored: their defaults, but ``update_seq`` starts at 1
#: (a backend sets ``updated_at``, and ``pending_deps`` when it counts the dependencies).
OWNED_INITIAL: Mapping[str, Any] = MappingProxyType(
    {**{f.name: f.default for f in JOB_FIELDS if f.owned}, "update_seq": 1}
)

#: The two fields of :class:`UpdateRecord` named otherwise than the job's they hold.
_RENAMED = {"job_id": "id", "timestamp": "updated_at"}
#: The fields of :class:`UpdateRecord` that are not the job's.
_NOT_THE_JOBS = ("data", "gone")
#: The job's fields an update announces, in the order stores read them (``id`` first), each
#: with its name in :class:`UpdateRecord`.
UPDATE_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        _RENAMED.get(name, name): name
        for name in UpdateRecord.__struct_fields__
        if name not in _NOT_THE_JOBS
    }
)
if not UPDATE_FIELDS.keys() <= set(FIELD_NAMES):
    raise TypeError(f"UpdateRecord fields no JobRecord field holds: {list(UPDATE_FIELDS)}")


def column_list(names: Iterable[str] = FIELD_NAMES, table: str | None = None) -> str:
    """Names as a SQL column list: ``a, b, c``, or ``t.a, t.b, t.c`` with ``table``; every
    field of :class:`JobRecord` by default."""
    prefix = "" if table is None else table + "."
    return ", ".join(prefix + name for name in names)


# -- conversions -------------------------------------------------------------------------------


def utc(ts: float | None) -> datetime | None:
    """Seconds since the epoch as an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


def _conversion(field: RecordField, model: type[BaseModel]) -> Callable[[Any], Any] | None:
    """How a record's value becomes the public model's (None: as it is). Times become aware
    datetimes, plain strings the model's enums; lists are copied (payloads are shared)."""
    if field.time:
        return utc
    annotation = model.model_fields[field.name].annotation
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return annotation
    if field.kind is list:
        return list
    return None


def _to_public(record: type[R], model: type[M]) -> Callable[[R], M]:
    """The conversion of ``record`` instances to ``model`` (whose every field the record has,
    by the same name), built once."""
    fields = {f.name: f for f in _fields_of(record)}
    names = tuple(model.model_fields)
    missing = [name for name in names if name not in fields]
    if missing:
        raise TypeError(f"{model.__name__} fields {record.__name__} lacks: {missing}")
    read = operator.attrgetter(*names)
    conversions = [(name, c) for name in names if (c := _conversion(fields[name], model))]
    construct = model.model_construct

    def public(r: R) -> M:
        values = dict(zip(names, read(r), strict=True))
        for name, conversion in conversions:
            values[name] = conversion(values[name])
        return construct(**values)

    return public


_job_of = _to_public(JobRecord, Job)
_public_update_of = _to_public(UpdateRecord, JobUpdate)
_worker_of = _to_public(WorkerRecord, WorkerInfo)


def to_job(r: JobRecord) -> Job:
    """Build the public :class:`~jdobb_async_queue.Job` from a record (no copying of payloads)."""
    return _job_of(r)


def to_update(u: UpdateRecord) -> JobUpdate:
    """Build the public :class:`~jdobb_async_queue.JobUpdate` from a published record."""
    return _public_update_of(u)


def to_worker(r: WorkerRecord) -> WorkerInfo:
    """Build the public :class:`~jdobb_async_queue.WorkerInfo` from a registry record."""
    return _worker_of(r)


_update_values = operator.attrgetter(*UPDATE_FIELDS)
_UPDATE_KEYS = tuple(UPDATE_FIELDS.values())


def update_of_values(values: Iterable[Any]) -> UpdateRecord:
    """The update announcing a job whose :data:`UPDATE_FIELDS` hold ``values``, in that order
    (a store's row of them, JSON decoded)."""
    return UpdateRecord(**dict(zip(_UPDATE_KEYS, values, strict=True)))


def record_update(r: JobRecord) -> UpdateRecord:
    """The update that announces ``r``'s current state."""
    return update_of_values(_update_values(r))


def gone_update(job_id: str, timestamp: float) -> UpdateRecord:
    """The update that tells subscribers ``job_id`` no longer exists."""
    return UpdateRecord(job_id=job_id, status="cancelled", timestamp=timestamp, gone=True)
