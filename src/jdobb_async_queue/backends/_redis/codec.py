"""Arguments for the Lua scripts, and decoding of what they return.

Scripts return jobs as the JSON of :class:`JobRecord` (assembled in Lua from the stored spec and
the fields transitions change), so a batch of jobs decodes with one msgspec call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ..._records import PRIORITY_RANK, JobRecord, Lease, Outcome, ProgressUpdate

__all__ = [
    "claimed_records",
    "decode_record",
    "decode_records",
    "encode_json",
    "enqueue_args",
    "finish_args",
    "num",
    "opt",
    "progress_args",
    "renew_args",
]

encode_json = msgspec.json.Encoder().encode
_decode_records = msgspec.json.Decoder(list[JobRecord]).decode
_decode_record = msgspec.json.Decoder(JobRecord).decode
_decode_ids = msgspec.json.Decoder(list[str]).decode


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


def enqueue_args(records: Sequence[JobRecord], now: float) -> list[Any]:
    """ARGV of ``enqueue.lua``."""
    args: list[Any] = [num(now), "0", len(records)]
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
            len(r.depends_on),
            *r.depends_on,
        )
    return args


def finish_args(outcomes: Sequence[Outcome], now: float) -> list[Any]:
    """ARGV of ``finish.lua``."""
    args: list[Any] = [num(now), "0", len(outcomes)]
    for o in outcomes:
        args += (
            o.job_id,
            o.kind,
            "" if o.fence is None else f"={o.fence}",
            "" if o.results is None else b"=" + encode_json(o.results),
            opt(o.error),
            1 if o.retry else 0,
            num(o.jitter),
        )
    return args


def progress_args(updates: Sequence[ProgressUpdate], now: float) -> list[Any]:
    """ARGV of ``progress.lua``."""
    args: list[Any] = [num(now), len(updates)]
    for u in updates:
        args += (
            u.job_id,
            "" if u.fence is None else f"={u.fence}",
            _opt_num(u.progress),
            opt(u.message),
        )
    return args


def renew_args(leases: Sequence[Lease], until: float, now: float) -> list[Any]:
    """ARGV of ``renew.lua``."""
    args: list[Any] = [num(now), num(until), len(leases)]
    for lease in leases:
        args += (lease.job_id, lease.fence)
    return args


#: Values per job in a claim's reply: the id, then ``CLAIMED_FIELDS`` of ``lib.lua``.
CLAIM_WIDTH = 9


def claimed_records(
    reply: list[Any], *, worker_id: str, now: str, lease_until: str
) -> list[JobRecord]:
    """Build the records of claimed jobs from a claim's reply (see ``claim.lua``).

    :param now: the claim's ``now`` as sent (so the floats are the very ones stored)
    :param lease_until: the lease expiry as sent
    """
    started, until = float(now), float(lease_until)
    records = []
    for i in range(0, len(reply), CLAIM_WIDTH):
        _, spec, attempts, fence, progress, message, error, execute_at, deps = reply[
            i : i + CLAIM_WIDTH
        ]
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
        records.append(r)
    return records


def decode_records(raw: bytes) -> list[JobRecord]:
    """Jobs returned by a script as a JSON array."""
    return _decode_records(raw)


def decode_record(raw: bytes | None) -> JobRecord | None:
    """One job returned by a script (nil: None)."""
    return None if raw is None else _decode_record(raw)
