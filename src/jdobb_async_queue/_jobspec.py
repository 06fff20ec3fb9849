"""Turning ``enqueue`` arguments into a :class:`JobRecord`, checking each one on the way.

Everything here runs before a backend is called, so bad input raises a typed error and nothing
is stored. ``enqueue``, ``enqueue_many``, workflows and tasks all build their records here.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, TypedDict

from ._codec import checked_copy_within
from ._errors import InvalidJobError
from ._models import JobPriority
from ._records import DEFAULT_MAX_LOST, JobRecord

__all__ = [
    "ENQUEUE_DEFAULTS",
    "ENQUEUE_OPTIONS",
    "EnqueueOptions",
    "build_record",
    "check_progress",
    "check_ttl",
    "enqueue_record",
    "new_job_id",
]


# The enqueue options are declared once, by the keyword-only parameters of ``JobQueue.enqueue``
# (their names, types and defaults, as users and mypy read them). This module sits below
# ``_queue`` and cannot import it, so what it needs of them is generated from that signature
# between the two markers below; tests/test_layers.py fails when the two differ and rewrites
# the block when run with JDOBB_REGENERATE=1.
# -- generated from JobQueue.enqueue: do not edit ------------------------------------------------
class _EnqueueParameters(TypedDict, total=False):
    priority: JobPriority
    ttl: int | None
    metadata: dict[str, Any] | None
    job_id: str | None
    delay: float | timedelta | None
    execute_at: datetime | None
    max_retries: int
    retry_delay: float
    timeout: float | None
    depends_on: Sequence[str] | None
    max_lost: int


#: The defaults of ``JobQueue.enqueue``'s keyword-only parameters.
_ENQUEUE_DEFAULTS: dict[str, Any] = {
    "priority": JobPriority.NORMAL,
    "ttl": None,
    "metadata": None,
    "job_id": None,
    "delay": None,
    "execute_at": None,
    "max_retries": 0,
    "retry_delay": 1.0,
    "timeout": None,
    "depends_on": None,
    "unique_key": None,
    "max_lost": DEFAULT_MAX_LOST,
}
# -- end of generated code -----------------------------------------------------------------------


class EnqueueOptions(_EnqueueParameters, total=False):
    """The options of ``JobQueue.enqueue`` (``**options: Unpack[EnqueueOptions]``), as
    ``Task.with_options``, ``Worker.every`` and ``Worker.cron`` take them."""

    #: A key, or a function of the task's arguments returning one: wider than ``enqueue``'s
    #: ``str | None``, so declared here rather than generated.
    unique_key: str | Callable[..., str] | None


#: The keyword arguments of ``JobQueue.enqueue`` besides ``job_type`` and ``data``.
ENQUEUE_OPTIONS = frozenset(_ENQUEUE_DEFAULTS)
#: Their defaults (read-only).
ENQUEUE_DEFAULTS: Mapping[str, Any] = MappingProxyType(_ENQUEUE_DEFAULTS)


def new_job_id() -> str:
    """A fresh job id (a random UUID, as 32 hex digits)."""
    return uuid.uuid4().hex


def build_record(
    job_type: str,
    data: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    *,
    now: float,
    default_ttl: int | None,
    max_payload: int | None = None,
) -> JobRecord:
    """Check ``enqueue``'s arguments, given as a mapping of options (those left out take
    ``enqueue``'s defaults; no ``ttl``: ``default_ttl``), and return the record to store.

    :raises InvalidJobError: for an unknown option, a bad job type, priority, ttl, delay, retry
        or dependency option
    :raises SerializationError: when ``data`` or ``metadata`` is not JSON-compatible
    :raises PayloadTooLargeError: when either is over ``max_payload`` bytes as JSON
    """
    unknown = options.keys() - ENQUEUE_OPTIONS
    if unknown:
        raise InvalidJobError(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
    ttl = options.get("ttl", default_ttl)  # no ttl: the queue's default; None: kept until purged
    return _record(job_type, data, {**_ENQUEUE_DEFAULTS, **options}, ttl, now, max_payload)


def enqueue_record(
    job_type: str,
    data: Mapping[str, Any] | None,
    parameters: Mapping[str, Any],
    *,
    now: float,
    default_ttl: int | None,
    max_payload: int | None,
) -> JobRecord:
    """:func:`build_record` for one ``JobQueue.enqueue`` call, given its parameters by name
    (its ``locals()``): every option is there (the call itself refused unknown ones), and
    ``ttl=None`` means ``default_ttl``. Saves building a dict of the options on every call.

    :raises InvalidJobError: as :func:`build_record`
    :raises SerializationError: as :func:`build_record`
    :raises PayloadTooLargeError: as :func:`build_record`
    """
    ttl = parameters["ttl"]
    return _record(
        job_type, data, parameters, default_ttl if ttl is None else ttl, now, max_payload
    )


def _record(
    job_type: str,
    data: Mapping[str, Any] | None,
    given: Mapping[str, Any],
    ttl: object,
    now: float,
    max_payload: int | None,
) -> JobRecord:
    if not isinstance(job_type, str) or not job_type:
        raise InvalidJobError(f"job_type must be a non-empty string, not {job_type!r}")
    return JobRecord(
        id=_job_id(given["job_id"]),
        job_type=job_type,
        data=_mapping(data, "data", max_payload),
        priority=_priority(given["priority"]),
        metadata=_mapping(given["metadata"], "metadata", max_payload),
        created_at=now,
        updated_at=now,
        ttl=check_ttl(ttl),
        execute_at=_execute_at(given["delay"], given["execute_at"], now),
        max_retries=_count(given["max_retries"], "max_retries"),
        retry_delay=_seconds(given["retry_delay"], "retry_delay", allow_zero=True),
        timeout=_timeout(given["timeout"]),
        depends_on=_depends_on(given["depends_on"]),
        unique_key=_unique_key(given["unique_key"]),
        max_lost=_count(given["max_lost"], "max_lost"),
        update_seq=1,
    )


def check_progress(progress: float | None) -> float | None:
    """Return ``progress`` if it is None or a number in 0..1.

    :raises InvalidJobError: (a ``ValueError``) otherwise
    """
    if progress is None:
        return None
    if isinstance(progress, bool) or not isinstance(progress, (int, float)):
        raise InvalidJobError(f"progress must be a number between 0 and 1, not {progress!r}")
    if not 0.0 <= progress <= 1.0:  # also refuses NaN
        raise InvalidJobError(f"progress must be between 0 and 1, not {progress!r}")
    return float(progress)


def _job_id(job_id: object) -> str:
    if job_id is None:
        return new_job_id()
    if not isinstance(job_id, str) or not job_id:
        raise InvalidJobError(f"job_id must be a non-empty string, not {job_id!r}")
    return job_id


def _mapping(value: object, what: str, limit: int | None) -> dict[str, Any]:
    if value is None or (type(value) is dict and not value):
        return {}
    if type(value) is not dict and not isinstance(value, Mapping):
        raise InvalidJobError(f"{what} must be a dict, not {type(value).__name__}")
    copied: dict[str, Any] = checked_copy_within(dict(value), what, limit)
    return copied


def _priority(value: object) -> str:
    try:
        return JobPriority(value).value
    except ValueError:
        choices = ", ".join(p.value for p in JobPriority)
        raise InvalidJobError(
            f"priority must be a JobPriority ({choices}), not {value!r}"
        ) from None


#: The largest count or ``ttl`` a job takes: a signed 32-bit integer, which every store holds
#: (68 years of seconds; a count past it is no limit in practice).
MAX_INT = 2**31 - 1


def check_ttl(value: object, what: str = "ttl") -> int | None:
    """Return ``value`` if it is None or a whole number of seconds in 0..:data:`MAX_INT`.

    :raises InvalidJobError: otherwise
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise InvalidJobError(
            f"{what} must be a whole number of seconds from 0 to {MAX_INT}, not {value!r}"
        )
    return value


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise InvalidJobError(f"{what} must be an int from 0 to {MAX_INT}, not {value!r}")
    return value


def _seconds(value: object, what: str, *, allow_zero: bool) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidJobError(f"{what} must be a finite number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidJobError(f"{what} must be {bound}, not {value!r}")
    return float(value)


def _timeout(value: object) -> float | None:
    return None if value is None else _seconds(value, "timeout", allow_zero=False)


def _execute_at(delay: object, execute_at: object, now: float) -> float | None:
    if delay is not None and execute_at is not None:
        raise InvalidJobError("give delay or execute_at, not both")
    if delay is not None:
        seconds = _seconds(delay, "delay", allow_zero=True)
        return now + seconds if seconds > 0 else None
    if execute_at is not None:
        if not isinstance(execute_at, datetime):
            raise InvalidJobError(f"execute_at must be a datetime, not {execute_at!r}")
        return execute_at.timestamp()  # a naive datetime is local time, as timestamp() reads it
    return None


def _depends_on(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidJobError(f"depends_on must be a sequence of job ids, not {value!r}")
    ids = [_dep_id(v) for v in value]
    return list(dict.fromkeys(ids))


def _dep_id(value: object) -> str:
    job_id = getattr(value, "job_id", value)  # a workflow step or a job id
    if not isinstance(job_id, str) or not job_id:
        raise InvalidJobError(f"depends_on entries must be job ids, not {value!r}")
    return job_id


def _unique_key(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidJobError(f"unique_key must be a non-empty string, not {value!r}")
    return value


def as_sequence(value: Sequence[str] | None, what: str) -> list[str] | None:
    """Check a list of job types (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise InvalidJobError(f"{what} must be a list of strings, not {value!r}")
    return list(value)
