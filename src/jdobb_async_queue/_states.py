"""The job state machine: one table of allowed transitions and one function that applies it.

::

    PENDING ──claim──▶ PROCESSING ──complete──▶ COMPLETE
       │                  │ ├──fail (no retries left)──▶ FAILED
       │                  │ ├──retry_later (retries left, timeout) ──▶ PENDING (not before backoff)
       │                  │ └──release (lease expired, worker stopped) ──▶ PENDING (due at once)
       └──cancel──────────┴──cancel──▶ CANCELLED
    FAILED / CANCELLED ──retry (explicit)──▶ PENDING

Every backend applies exactly this table: the memory backend calls :func:`transition`; SQL and
Lua backends build their guards (``WHERE status IN (...)``) from :func:`sources`, so the table
stays the one place where a transition is allowed or refused. A refused transition changes
nothing; the public API reports it as ``False`` / ``None``.
"""

from __future__ import annotations

from enum import Enum

from ._models import JobStatus

__all__ = ["Event", "TRANSITIONS", "sources", "transition"]


class Event(str, Enum):
    """What can happen to a job."""

    CLAIM = "claim"
    COMPLETE = "complete"
    FAIL = "fail"
    RETRY_LATER = "retry_later"
    RELEASE = "release"
    CANCEL = "cancel"
    RETRY = "retry"


_P, _R = JobStatus.PENDING, JobStatus.PROCESSING
_C, _F, _X = JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED

#: (state, event) -> next state. Anything not listed is refused.
TRANSITIONS: dict[tuple[JobStatus, Event], JobStatus] = {
    (_P, Event.CLAIM): _R,
    (_P, Event.CANCEL): _X,
    (_R, Event.COMPLETE): _C,
    (_R, Event.FAIL): _F,
    (_R, Event.RETRY_LATER): _P,
    (_R, Event.RELEASE): _P,
    (_R, Event.CANCEL): _X,
    (_F, Event.RETRY): _P,
    (_X, Event.RETRY): _P,
}


def transition(state: JobStatus, event: Event) -> JobStatus | None:
    """Return the state ``event`` leads to from ``state``, or ``None`` if it is not allowed.

    :param state: the job's current status
    :param event: what is happening to it
    :return: the next status, or ``None`` when the table refuses the transition
    """
    return TRANSITIONS.get((state, event))


def sources(event: Event) -> frozenset[JobStatus]:
    """Return every state from which ``event`` is allowed (for SQL/Lua guards)."""
    return _SOURCES[event]


_SOURCES: dict[Event, frozenset[JobStatus]] = {
    event: frozenset(s for (s, e) in TRANSITIONS if e is event) for event in Event
}
