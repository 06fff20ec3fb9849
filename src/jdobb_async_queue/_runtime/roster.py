"""The roster: which jobs this worker is running, with the cancel scope of each.

Handlers add and remove their job; the supervisor reads it to renew leases and cancels a scope
when a job is cancelled elsewhere. It is the one structure the actors share instead of passing
messages: every access is a plain synchronous dict operation (no await in between, so it is
atomic under both event loops), and routing "job started / job ended" through a stream would put
two more hops on every job's hot path for no gain in safety.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from .._records import Lease

__all__ = ["Roster", "RunningJob"]


@dataclass(eq=False)
class RunningJob:
    """One job a handler is running."""

    job_id: str
    fence: int
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    #: Set when the job was taken away (cancelled, or the lease was lost): report nothing.
    lost: bool = False


class Roster:
    """The jobs running in one worker."""

    def __init__(self) -> None:
        self._running: dict[str, RunningJob] = {}

    def add(self, job_id: str, fence: int) -> RunningJob:
        """Register a job as running and return its entry."""
        entry = RunningJob(job_id, fence)
        self._running[job_id] = entry
        return entry

    def remove(self, entry: RunningJob) -> None:
        """Forget a job (its handler is done with it)."""
        if self._running.get(entry.job_id) is entry:
            del self._running[entry.job_id]

    def take_away(self, job_id: str, fence: int | None = None) -> None:
        """Cancel a running job's handler: the job is no longer ours to finish.

        :param fence: only if the running claim has this fence (None: whichever runs)
        """
        entry = self._running.get(job_id)
        if entry is not None and (fence is None or entry.fence == fence):
            entry.lost = True
            entry.scope.cancel()

    def job_ids(self) -> list[str]:
        """The ids of the running jobs."""
        return list(self._running)

    def leases(self) -> list[Lease]:
        """The leases this worker must keep renewing."""
        return [Lease(job_id=e.job_id, fence=e.fence) for e in self._running.values()]

    def __len__(self) -> int:
        return len(self._running)
