"""Arguments for the Lua scripts, and decoding of what they return.

Scripts return jobs as the JSON of :class:`JobRecord` (assembled in Lua from the stored spec and
the fields transitions change). Each job decodes on its own: a record that cannot be decoded
(:class:`CorruptRecord`) is reported by id, and the others still come through. Jobs stored
before a field existed (``lost``, ``max_lost``, ``update_seq``) read as its default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ..._records import PRIORITY_RANK, JobRecord, Lease, Outcome, ProgressUpdate

__all__ = [
    "CorruptRecord",
    "claimed_records",
    "decode_record",
    "decode_records",
    "encode_json",
    "enqueue_args",
    "finish_args",
    "handed_records",
    "num",
    "opt",
    "progress_args",
    "renew_args",
]

encode_json = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(JobRecord).decode
_decode_ids = msgspec.json.Decoder(list[str]).decode
_decode_handed = msgspec.json.Decoder(list[JobRecord]).decode


class CorruptRecord(Exception):
    """A stored job that cannot be decoded (its spec JSON is broken, a field is not a number).

    :param job_id: the job's id
    :param detail: what the decoder said
    """

    def __init__(self, job_id: str, detail: str) -> None:
        super().__init__(f"job {job_id!r} has a corrupt stored record: {detail}")
        self.job_id = job_id
        self.detail = detail


class Spec(msgspec.Struct, omit_defaults=True):
    """The fields of a job that never change, stored once as JSON (defaults as JobRecord's)."""

    id: str
    job_type: str
    data: dict[str, Any] = {}
    priority: str = "normal"
    metadata: dict[str, Any] = {}
    created_at: float = 0.0
    ttl: int | None = None
    max_retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    unique_key: str | None = None


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
    return "" if x is None else "=" + num(x)


def spec_of(r: JobRecord) -> bytes:
    """The stored spec of a new job."""
    return encode_json(
        Spec(
            id=r.id,
            job_type=r.job_type,
            data=r.data,
            priority=r.priority,
            metadata=r.metadata,
            created_at=r.created_at,
            ttl=r.ttl,
            max_retries=r.max_retries,
            retry_delay=r.retry_delay,
            timeout=r.timeout,
            unique_key=r.unique_key,
        )
    )


def enqueue_args(records: Sequence[JobRecord], clock: str, token: str) -> list[Any]:
    """ARGV of ``enqueue.lua`` (``clock``: see ``lib.lua``; ``token``: the call's)."""
    args: list[Any] = [clock, "0" + token, len(records)]
    for r in records:
        args += (
            r.id,
            spec_of(r),
            r.job_type,
            PRIORITY_RANK[r.priority],
            "" if r.ttl is None else f"={r.ttl}",
            r.max_retries,
            num(r.retry_delay),
            opt(r.unique_key),
            _opt_num(r.execute_at),
            r.max_lost,
            len(r.depends_on),
            *r.depends_on,
        )
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


#: Values per job in a claim's reply: the id, then ``CLAIMED_FIELDS`` of ``lib.lua``.
CLAIM_WIDTH = 12


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
        job_id, spec, attempts, fence, progress, message, error, execute_at, deps = reply[i : i + 9]
        lost, max_lost, update_seq = reply[i + 9 : i + CLAIM_WIDTH]
        try:
            r = _decode_record(spec)
            r.status = "processing"
            r.attempts = int(attempts)
            r.fence = int(fence)
            r.worker_id = worker_id
            r.started_at = r.updated_at = started
            r.lease_expires_at = until
            if progress is not None:
                r.progress = float(progress)
            r.message = None if message is None else message.decode()
            r.error = None if error is None else error.decode()
            r.execute_at = None if execute_at is None else float(execute_at)
            if deps is not None:
                r.depends_on = _decode_ids(deps)
            if lost is not None:
                r.lost = int(lost)
            if max_lost is not None:
                r.max_lost = int(max_lost)
            r.update_seq = int(update_seq)
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
