"""How a job is laid out in Redis, arguments for the Lua scripts, and decoding of what they return.

**The layout** is derived from the one declaration of a job's fields,
:class:`~jdobb_async_queue._records.JobRecord`. A job is one hash (``job:<id>``, see
:mod:`.keys`). The fields its caller gives at enqueue are its *spec*: one JSON document
(:data:`Spec`), written once. Every other field of the record is a hash field of the same name
(:func:`hash_name`), absent while it is None; so are three given fields the scripts must read or
change (:data:`SPEC_FIELDS` says which are the spec's). The scripts keep copies of a few spec
fields in the hash (:data:`MIRRORED`) and some fields of their own (:data:`SCRIPT_FIELDS`).
:mod:`.scripts` hands the Lua code the field lists it needs (what a claim returns, how a
record's JSON is assembled, what an update announces), generated from the same tables.

Scripts return jobs as the JSON of :class:`JobRecord` (assembled in Lua from the stored spec and
the hash), or, from a claim, the spec and the hash fields one by one (:data:`CLAIMED`). Each
job decodes on its own: a record that cannot be decoded (:class:`CorruptRecord`) is reported by
id, and the others still come through. Jobs stored before a field existed (``lost``,
``max_lost``, ``update_seq``) read as its default.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from ..._records import (
    FIELD_BY_NAME,
    FIELD_NAMES,
    GIVEN_FIELDS,
    OWNED_INITIAL,
    PRIORITY_RANK,
    JobRecord,
    Lease,
    Outcome,
    ProgressUpdate,
    RecordField,
)

__all__ = [
    "CLAIMED",
    "CLAIM_WIDTH",
    "ENQUEUE_ARGS",
    "HASH_FIELDS",
    "MIRRORED",
    "NEW_JOB",
    "SCRIPT_FIELDS",
    "SPEC_FIELDS",
    "CorruptRecord",
    "Spec",
    "claimed_records",
    "decode_record",
    "decode_records",
    "encode_json",
    "enqueue_args",
    "finish_args",
    "handed_records",
    "hash_name",
    "json_members",
    "num",
    "opt",
    "progress_args",
    "renew_args",
]

encode_json = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(JobRecord).decode
_decode_handed = msgspec.json.Decoder(list[JobRecord]).decode

# -- the layout ----------------------------------------------------------------------------------

#: Given fields kept in the hash rather than the spec: ``execute_at`` (a retry moves it),
#: ``depends_on`` (resolved at enqueue, read by the scripts) and ``max_lost`` (read by reclaims;
#: it came after the spec's form was set, and specs stored before read as they were).
_GIVEN_IN_HASH = ("execute_at", "depends_on", "max_lost")
#: The fields of a job's spec: those given at enqueue, but :data:`_GIVEN_IN_HASH`.
SPEC_FIELDS: tuple[str, ...] = tuple(n for n in GIVEN_FIELDS if n not in _GIVEN_IN_HASH)
#: The JobRecord fields kept as fields of the job's hash (named by :func:`hash_name`).
HASH_FIELDS: tuple[str, ...] = tuple(n for n in FIELD_NAMES if n not in SPEC_FIELDS)
_HASH_NAMES = {"depends_on": "deps"}
#: Spec fields the scripts read from the hash, copied there at enqueue (with ``rank``, the
#: priority's :data:`~jdobb_async_queue._records.PRIORITY_RANK`).
MIRRORED = ("job_type", "ttl", "max_retries", "retry_delay", "unique_key")
#: The scripts' own hash fields: the spec, the rank, the enqueue sequence number, which index a
#: PENDING job is in, whether jobs wait on it, and the token of the last call that changed it.
SCRIPT_FIELDS = ("spec", "rank", "seq", "where", "dependents", "op")


def hash_name(field: str) -> str:
    """The name of a JobRecord field in the job's hash."""
    return _HASH_NAMES.get(field, field)


def json_members(
    fields: Iterable[str], names: Mapping[str, str] | None = None
) -> tuple[tuple[str, bool], ...]:
    """How a record's JSON is assembled from the hash values of ``fields`` (JobRecord fields,
    named in the JSON by ``names`` or as themselves): for each, the start of its member
    (``,"name":``) and whether its stored text goes in quoted, as a JSON string (text), or as
    it is (numbers and JSON). The Lua scripts assemble records and updates the same way."""
    return tuple(
        (',"' + (names or {}).get(f, f) + '":', FIELD_BY_NAME[f].kind is str) for f in fields
    )


def _spec_struct() -> type[msgspec.Struct]:
    """The spec's struct: :data:`SPEC_FIELDS` with JobRecord's types and defaults, which it
    leaves out of the JSON."""
    info = {f.name: f for f in msgspec.structs.fields(JobRecord)}
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name in SPEC_FIELDS:
        f = info[name]
        if f.default_factory is not msgspec.NODEFAULT:
            fields.append((name, f.type, msgspec.field(default_factory=f.default_factory)))
        elif f.default is not msgspec.NODEFAULT:
            fields.append((name, f.type, f.default))
        else:
            fields.append((name, f.type))
    return msgspec.defstruct("Spec", fields, omit_defaults=True, module=__name__)


#: The fields of a job that never change, stored once as JSON (see :data:`SPEC_FIELDS`).
Spec = _spec_struct()
_spec_values = operator.attrgetter(*SPEC_FIELDS)

#: The owned fields a new job's hash starts with (``_records.OWNED_INITIAL``, but those left
#: out while None and those enqueue.lua sets itself), as Lua's field/value list.
NEW_JOB: tuple[tuple[str, str], ...] = tuple(
    (hash_name(name), str(value))
    for name, value in OWNED_INITIAL.items()
    if value is not None and name not in ("updated_at", "pending_deps")
)


class CorruptRecord(Exception):
    """A stored job that cannot be decoded (its spec JSON is broken, a field is not a number).

    :param job_id: the job's id
    :param detail: what the decoder said
    """

    def __init__(self, job_id: str, detail: str) -> None:
        super().__init__(f"job {job_id!r} has a corrupt stored record: {detail}")
        self.job_id = job_id
        self.detail = detail


def num(x: float) -> str:
    """A float as text that reads back exactly (Lua stores it verbatim)."""
    return repr(float(x))


def opt(value: str | bytes | None) -> str | bytes:
    """An optional argument: ``""`` for None, else ``"="`` and the value."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return b"=" + value
    return "=" + value


def _opt_num(x: float | None) -> str:
    return "" if x is None else "=" + repr(float(x))


def _opt_text(x: object) -> str:
    return "" if x is None else f"={x}"


def spec_of(r: JobRecord) -> bytes:
    """The stored spec of a new job."""
    return encode_json(Spec(*_spec_values(r)))


#: What ``enqueue.lua`` takes of each record after its id and spec (then its dependencies):
#: the priority's rank, the :data:`MIRRORED` fields and the given fields of the hash, each
#: optional one (None) as ``""`` or ``"="`` and its value.
ENQUEUE_ARGS: tuple[str, ...] = (
    "rank",
    *MIRRORED,
    *(n for n in _GIVEN_IN_HASH if n != "depends_on"),
)


def _argument(field: RecordField) -> Callable[[Any], str] | None:
    """How a field's value goes into ARGV (None: as it is)."""
    if field.optional:
        return _opt_num if field.kind is float else _opt_text
    return num if field.kind is float else None


_enqueue_values = operator.attrgetter(*ENQUEUE_ARGS[1:])
_ENQUEUE_ENCODERS = tuple(_argument(FIELD_BY_NAME[name]) for name in ENQUEUE_ARGS[1:])


def enqueue_args(records: Sequence[JobRecord], clock: str, token: str) -> list[Any]:
    """ARGV of ``enqueue.lua`` (``clock``: see ``lib.lua``; ``token``: the call's): per record
    its id, spec, :data:`ENQUEUE_ARGS`, and the number of its dependencies followed by them."""
    args: list[Any] = [clock, "0" + token, len(records)]
    for r in records:
        args += (r.id, spec_of(r), PRIORITY_RANK[r.priority])
        for encode, value in zip(_ENQUEUE_ENCODERS, _enqueue_values(r), strict=True):
            args.append(value if encode is None else encode(value))
        args.append(len(r.depends_on))
        args += r.depends_on
    return args


def finish_args(outcomes: Sequence[Outcome], clock: str, token: str) -> list[Any]:
    """ARGV of ``finish.lua``: each decided outcome (a retry's ``delay`` is relative to the
    store's now, so no host's clock decides when it runs)."""
    args: list[Any] = [clock, "0" + token, len(outcomes)]
    for o in outcomes:
        args += (
            o.job_id,
            o.kind,
            "" if o.fence is None else f"={o.fence}",
            "" if o.results is None else b"=" + encode_json(o.results),
            opt(o.error),
            num(max(o.delay, 0.0)),
        )
    return args


def progress_args(updates: Sequence[ProgressUpdate], clock: str) -> list[Any]:
    """ARGV of ``progress.lua``."""
    args: list[Any] = [clock, len(updates)]
    for u in updates:
        args += (
            u.job_id,
            "" if u.fence is None else f"={u.fence}",
            _opt_num(u.progress),
            opt(u.message),
        )
    return args


def renew_args(leases: Sequence[Lease], duration: float, clock: str) -> list[Any]:
    """ARGV of ``renew.lua`` (the lease is a duration from the store's now)."""
    args: list[Any] = [clock, num(duration), len(leases)]
    for lease in leases:
        args += (lease.job_id, lease.fence)
    return args


#: Hash fields a claim sets itself (``claim_one`` in lib.lua; the reply leads with the start
#: and lease expiry), and those a claimable job has at their defaults: the reply has neither.
_SET_BY_CLAIM = ("status", "worker_id", "started_at", "lease_expires_at", "updated_at")
_UNSET_WHILE_CLAIMABLE = ("results", "completed_at", "expires_at", "pending_deps")
#: What a claim returns of each job after its id (``CLAIMED_FIELDS`` in Lua): its spec, then
#: the other hash fields of the record.
CLAIMED: tuple[str, ...] = (
    "spec",
    *(n for n in HASH_FIELDS if n not in _SET_BY_CLAIM + _UNSET_WHILE_CLAIMABLE),
)
#: Values per job in a claim's reply: the id, then :data:`CLAIMED`.
CLAIM_WIDTH = 1 + len(CLAIMED)


#: How a claimed job's JSON gets each of the :data:`CLAIMED` values after its spec.
_CLAIMED_JSON = tuple((key.encode(), quoted) for key, quoted in json_members(CLAIMED[1:]))


def claimed_records(
    reply: list[Any], *, worker_id: str
) -> tuple[list[JobRecord], list[CorruptRecord]]:
    """Build the records of claimed jobs from a claim's reply (see ``claim.lua``): the claim's
    started_at and lease expiry (the store's clock), then the jobs.

    :return: the records, and the jobs whose stored record could not be decoded
    """
    started, until = float(reply[0]), float(reply[1])
    records: list[JobRecord] = []
    corrupt: list[CorruptRecord] = []
    for i in range(2, len(reply), CLAIM_WIDTH):
        job_id = reply[i]
        try:
            # The job's JSON, assembled as record_json in lib.lua does (the spec, then the values
            # that are set), then decoded: one pass, in C, that also checks every value's type.
            parts = [reply[i + 1][:-1]]
            values = reply[i + 2 : i + CLAIM_WIDTH]
            for (key, quoted), raw in zip(_CLAIMED_JSON, values, strict=True):
                if raw is not None:  # absent: None, or stored before the field existed
                    parts.append(key)
                    parts.append(encode_json(raw.decode()) if quoted else raw)
            parts.append(b"}")
            r = _decode_record(b"".join(parts))
            r.status = "processing"
            r.worker_id = worker_id
            r.started_at = r.updated_at = started
            r.lease_expires_at = until
        except (msgspec.DecodeError, ValueError, TypeError, UnicodeDecodeError) as exc:
            corrupt.append(CorruptRecord(job_id.decode(errors="replace"), str(exc)))
            continue
        records.append(r)
    return records, corrupt


def handed_records(data: bytes) -> list[JobRecord]:
    """The jobs of a hand-off message (see ``hand_off`` in ``lib.lua``): a JSON array of records.

    :raises CorruptRecord: if any of them cannot be decoded (the claimer's next claim hands
        them out again, one by one, and sets aside the corrupt one)
    """
    try:
        return _decode_handed(data)
    except (msgspec.DecodeError, ValueError) as exc:
        raise CorruptRecord("(a hand-off)", str(exc)) from None


def decode_records(raw: list[Any]) -> tuple[list[JobRecord], list[CorruptRecord]]:
    """Jobs returned by a script as id, JSON, id, JSON...

    :return: the records, and the jobs whose stored record could not be decoded
    """
    records: list[JobRecord] = []
    corrupt: list[CorruptRecord] = []
    for i in range(0, len(raw), 2):
        job_id = raw[i].decode(errors="replace")
        try:
            records.append(_decode_record(raw[i + 1]))
        except (msgspec.DecodeError, ValueError) as exc:
            corrupt.append(CorruptRecord(job_id, str(exc)))
    return records, corrupt


def decode_record(job_id: str, raw: bytes | None) -> JobRecord | None:
    """One job returned by a script (nil: None).

    :raises CorruptRecord: if it cannot be decoded
    """
    if raw is None:
        return None
    try:
        return _decode_record(raw)
    except (msgspec.DecodeError, ValueError) as exc:
        raise CorruptRecord(job_id, str(exc)) from None
