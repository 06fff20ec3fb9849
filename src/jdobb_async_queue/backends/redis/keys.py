"""Every Redis key and channel name of the Redis backend, in one place.

All names of one namespace start with ``jdobb:{<namespace>}:``. The braces are a Redis Cluster
*hash tag*: only the part between them is hashed, so every key of a namespace lives in one slot
and the Lua scripts may touch any of them atomically.

==============================  =====  ==========================================================
key (after the prefix)          type   holds
==============================  =====  ==========================================================
``job:<id>``                    hash   one job: ``spec`` (its immutable fields, JSON) and the
                                       fields transitions change (status, attempts, fence, ...)
``deps:<id>``                   set    reverse dependency edges: ``<seq>|<dependent id>``
``ready:<job_type>``            zset   claimable jobs of one type, score ``rank * 1e15 + seq``
``types``                       set    job types whose ``ready:`` zset is not empty
``scheduled``                   zset   PENDING jobs not yet due, score ``execute_at``, member
                                       ``<rank><seq, 15 digits><id>`` (ties in claim order)
``waiting``                     zset   PENDING jobs waiting on dependencies, score as ``ready:``
``leases``                      zset   PROCESSING jobs, score ``lease_expires_at``
``status:<status>``             zset   every job by status, score: the sequence number of its
                                       last update (``list_jobs`` order, ``stats`` counts)
``expiry:<status>``             zset   terminal jobs with a ttl, score ``expires_at``
``unique``                      hash   unique key -> id of the live job holding it
``seq``                         str    counter: enqueue order and update order
``quiet``                       str    set while a "jobs" notice is out and no claimer has
                                       found the queue empty since (saves redundant notices)
``claim:<call token>``          str    the ids one claim call took, so that call retried after a
                                       lost reply returns the same jobs (expires in 60 s); one
                                       key per call, so claimers sharing a backend never clash
``corrupt:<id>``                hash   a job whose record could not be decoded, set aside
``park:<worker id>``            hash   a parked worker (idle handlers, listening for hand-offs):
                                       ``credit`` (jobs it may still be handed), ``lease``,
                                       ``types`` (JSON); expires with the park
``parked:<job_type>``           zset   parked workers taking that type, score: when the park
                                       lapses unless the worker claims again
``handed:<worker id>``          set    ``<fence>|<id>`` of jobs handed to that worker whose
                                       arrival it has not confirmed yet (its next claim does)
``workers``                     hash   the worker registry: worker id -> its record (JSON)
``heartbeats``                  zset   worker id, score: the store's time of its last heartbeat
==============================  =====  ==========================================================

Channels (pub/sub, not keys): ``notices`` ("jobs", "cancel <fence> <id>"), ``updates:<id>`` (the
job's :class:`~jdobb_async_queue._records.UpdateRecord` as JSON) and ``handoff:<worker id>`` (jobs
claimed for that parked worker by the call that made them claimable, as a JSON array of
:class:`~jdobb_async_queue._records.JobRecord`).

The Lua scripts get the same names from :func:`lua_header`, generated from the tables below, so
a name is spelled in this module only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeyLayout", "lua_header"]

ROOT = "jdobb"

#: Keys without a variable part: Lua constant name -> key suffix.
FIXED_KEYS: dict[str, str] = {
    "K_TYPES": "types",
    "K_SCHEDULED": "scheduled",
    "K_WAITING": "waiting",
    "K_LEASES": "leases",
    "K_UNIQUE": "unique",
    "K_SEQ": "seq",
    "K_QUIET": "quiet",
    "K_WORKERS": "workers",
    "K_HEARTBEATS": "heartbeats",
    "CH_NOTICES": "notices",
}

#: Keys and channels with a variable part: Lua function name -> key prefix (suffix + the part).
FAMILIES: dict[str, str] = {
    "K_JOB": "job:",
    "K_DEPS": "deps:",
    "K_READY": "ready:",
    "K_STATUS": "status:",
    "K_EXPIRY": "expiry:",
    "K_CLAIM": "claim:",
    "K_CORRUPT": "corrupt:",
    "K_PARK": "park:",
    "K_PARKED": "parked:",
    "K_HANDED": "handed:",
    "CH_UPDATES": "updates:",
    "CH_HANDOFF": "handoff:",
}

_GLOB_SPECIALS = "\\*?[]"


@dataclass(frozen=True)
class KeyLayout:
    """The names of one namespace's keys and channels, as Python sees them.

    :param namespace: the queue's namespace (any string)
    """

    namespace: str

    @property
    def prefix(self) -> str:
        """``jdobb:{<namespace>}:``, the start of every key of the namespace."""
        return f"{ROOT}:{{{self.namespace}}}:"

    @property
    def match_all(self) -> str:
        """A ``SCAN MATCH`` pattern for every key of this namespace (glob characters escaped)."""
        escaped = "".join("\\" + c if c in _GLOB_SPECIALS else c for c in self.prefix)
        return escaped + "*"

    @property
    def notices(self) -> bytes:
        """The channel of worker notices."""
        return (self.prefix + FIXED_KEYS["CH_NOTICES"]).encode()

    def updates(self, job_id: str) -> bytes:
        """The channel of one job's updates."""
        return (self.prefix + FAMILIES["CH_UPDATES"] + job_id).encode()

    def handoff(self, worker_id: str) -> bytes:
        """The channel on which a parked worker is handed jobs."""
        return (self.prefix + FAMILIES["CH_HANDOFF"] + worker_id).encode()

    def claim(self, token: str) -> str:
        """The key remembering what one claim call took."""
        return self.prefix + FAMILIES["K_CLAIM"] + token

    def job(self, job_id: str) -> str:
        """The hash of one job."""
        return self.prefix + FAMILIES["K_JOB"] + job_id

    def corrupt(self, job_id: str) -> str:
        """Where a job whose record could not be decoded is set aside."""
        return self.prefix + FAMILIES["K_CORRUPT"] + job_id

    def scheduled(self) -> str:
        """The zset of scheduled jobs (``next_due`` reads it directly)."""
        return self.prefix + FIXED_KEYS["K_SCHEDULED"]


def lua_header() -> str:
    """Lua definitions of every name above, relative to ``KEYS[1]`` (the namespace prefix);
    those that depend on the call end in ``-- per call`` (see ``lua/lib.lua``)."""
    lines = ["local P = KEYS[1] -- per call"]
    lines += [f"local {name} = P .. '{suffix}' -- per call" for name, suffix in FIXED_KEYS.items()]
    lines += [
        f"local function {name}(x) return P .. '{prefix}' .. x end"
        for name, prefix in FAMILIES.items()
    ]
    return "\n".join(lines)
