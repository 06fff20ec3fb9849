"""How an attempt ends: decided once, here, and applied by every backend.

A worker (or a caller of ``JobQueue.complete``/``fail``) holds the claimed record, so it knows
the attempt number, the retries allowed and the backoff; this module turns "the handler
returned", "it raised", "it was handed back" into an :class:`~jdobb_async_queue._records.Outcome`
whose ``kind`` is the transition to apply:

========== ========================================= ==================================
kind       when                                      the backend applies
========== ========================================= ==================================
complete   the handler returned                      COMPLETE, results stored
retry      it failed with retries left               PENDING, due ``delay`` s after the
                                                     store's now (the backoff below)
fail       it failed with none left (or no retry)    FAILED, error stored
release    the worker stopped hard and handed it back PENDING, due at once, the attempt
                                                     not counted
========== ========================================= ==================================

The fifth ending, **lost** (the lease ran out: the worker died or stalled), is noticed by the
store rather than reported, so the backend decides it while reclaiming, with this module's rule
(:func:`lost_ends_job`) and message (:func:`lost_error`). The Redis backend's Lua scripts get
both generated from here, so the rule still lives in one place.

Backends hold no copy of these rules: they apply a decided kind, guarded by the job's status and
fence, and report whether it applied. ``Worker.on_outcome`` labels come from :func:`label`, so
they agree with what was stored by construction.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from ._records import DEFAULT_MAX_LOST, JobRecord, Outcome

__all__ = [
    "BACKOFF_JITTER",
    "DEFAULT_MAX_LOST",
    "MAX_BACKOFF",
    "backoff_delay",
    "complete",
    "decide_failure",
    "dependency_error",
    "label",
    "lost_ends_job",
    "lost_error",
    "release",
]

#: Upper bound of a retry's backoff, in seconds, before jitter.
MAX_BACKOFF = 3600.0
#: A retry's backoff is stretched by up to this fraction, at random.
BACKOFF_JITTER = 0.1


def backoff_delay(retry_delay: float, attempt: int, jitter: float) -> float:
    """Seconds until the retry of a failed attempt ``attempt`` (1-based).

    ``min(retry_delay * 2**(attempt-1), MAX_BACKOFF) * (1 + BACKOFF_JITTER * jitter)``.

    :param retry_delay: the job's base delay
    :param attempt: the attempt that failed (1 for the first)
    :param jitter: a number in ``[0, 1)``
    """
    base = min(retry_delay * 2.0 ** max(attempt - 1, 0), MAX_BACKOFF)
    return base * (1.0 + BACKOFF_JITTER * jitter)


def complete(record: JobRecord, results: dict[str, Any] | None) -> Outcome:
    """The attempt of ``record`` returned ``results`` (already checked to be JSON)."""
    return Outcome(job_id=record.id, kind="complete", fence=record.fence, results=results)


def storable(text: str) -> str:
    """``text`` as every store can keep it: lone surrogates (``surrogateescape``'d bytes in a
    path or an OS message) become ``\\udcxx`` escapes instead of failing to encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def decide_failure(
    record: JobRecord, error: str, *, retry: bool = True, jitter: float | None = None
) -> Outcome:
    """The attempt of ``record`` failed with ``error``: retried after its backoff while
    ``attempts <= max_retries`` (and ``retry``), else FAILED.

    :param jitter: in ``[0, 1)``; default: a random one (not for cryptography)
    """
    error = storable(error)
    if retry and record.attempts <= record.max_retries:
        share = random.random() if jitter is None else jitter
        delay = backoff_delay(record.retry_delay, record.attempts, share)
        return Outcome(job_id=record.id, kind="retry", fence=record.fence, error=error, delay=delay)
    return Outcome(job_id=record.id, kind="fail", fence=record.fence, error=error)


def release(record: JobRecord) -> Outcome:
    """Hand ``record`` back (a hard stop): PENDING, due at once, the attempt not counted."""
    return Outcome(job_id=record.id, kind="release", fence=record.fence)


def lost_ends_job(lost: int, max_lost: int) -> bool:
    """Whether a job whose lease has now run out ``lost`` times (this one included) is FAILED
    rather than sent back to PENDING."""
    return lost > max_lost


def lost_error(lost: int) -> str:
    """The error of a job FAILED because its lease ran out ``lost`` times."""
    return f"lost {lost} times: its worker died or stalled past the lease each time"


def dependency_error(dep_id: str, dep_status: str) -> str:
    """The error a job gets when its dependency ``dep_id`` ended FAILED or CANCELLED (or was
    deleted while the job waited on it: ``dep_status`` is then ``"deleted"``)."""
    return f"dependency {dep_id} {dep_status}"


OutcomeLabel = Literal["complete", "failed", "retrying", "lost", "released"]

_LABELS: dict[str, OutcomeLabel] = {
    "complete": "complete",
    "retry": "retrying",
    "fail": "failed",
    "release": "released",
}


def label(outcome: Outcome | None) -> OutcomeLabel:
    """The ``Worker.on_outcome`` status of a decided outcome (``None``: the job was taken away,
    so the attempt was lost)."""
    return "lost" if outcome is None else _LABELS[outcome.kind]
