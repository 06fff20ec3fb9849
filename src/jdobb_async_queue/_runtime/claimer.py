"""The claimer actor: claims only as many jobs as there are idle handlers.

Each idle handler sends one credit. The claimer gathers every credit that has piled up and
claims that many jobs in one backend call, so no job ever waits claimed in a buffer. A claim that
found some jobs but fewer than asked is followed by another (the backend may hand out only what
it had at hand, or more may have come meanwhile); once a claim finds nothing, the claimer sleeps
until a wake-up (a new job, a retry, a dependency met), the next due time, or ``poll_interval``,
whichever comes first: never a busy loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._records import JobRecord
from ..backends.base import QueueBackend
from . import backoff
from .backoff import retrying

__all__ = ["Claimer"]


class Claimer:
    """Claims jobs for one worker. ``scope`` lets the supervisor stop it.

    In burst mode (``burst`` given) it never sleeps: once nothing is claimable and no job is
    running it calls ``burst`` and returns.
    """

    def __init__(
        self,
        backend: QueueBackend,
        clock: Callable[[], float],
        job_types: Sequence[str],
        *,
        worker_id: str,
        lease: float,
        poll_interval: float,
        burst: Callable[[], None] | None = None,
        capacity: int = 1,
    ) -> None:
        self._backend = backend
        self._clock = clock
        self._job_types = list(job_types)
        self._worker_id = worker_id
        self._lease = lease
        self._poll_interval = poll_interval
        self._burst = burst
        self._capacity = capacity
        # A burst rides out an outage for a while, then gives up: it must end, not wait forever.
        self._give_up_after = None if burst is None else backoff.BURST_OUTAGE_LIMIT
        self.scope = anyio.CancelScope()

    async def run(
        self,
        credits: MemoryObjectReceiveStream[None],
        jobs: MemoryObjectSendStream[JobRecord],
        wake: MemoryObjectReceiveStream[None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Claim until stopped; closing ``jobs`` on the way out tells handlers to drain."""
        async with credits, jobs, wake:
            task_status.started()
            with self.scope:
                try:
                    await self._loop(credits, jobs, wake)
                except anyio.EndOfStream:
                    if credits.statistics().open_send_streams:
                        raise  # not the handlers' credits: something else ended
                    # every handler has gone (the error that ended them is raised)

    async def _loop(
        self,
        credits: MemoryObjectReceiveStream[None],
        jobs: MemoryObjectSendStream[JobRecord],
        wake: MemoryObjectReceiveStream[None],
    ) -> None:
        idle = 0
        while True:
            if idle == 0:
                await credits.receive()
                idle = 1
            idle += _drain(credits)
            claimed = await self._claim(idle, jobs)
            idle -= claimed
            if idle == 0:
                continue
            if claimed:
                # Let the handlers start what came before claiming the rest.
                await anyio.lowlevel.checkpoint()
                continue
            # The queue has nothing more due right now.
            if self._burst is None:
                await self._sleep(wake)
            elif idle == self._capacity:
                self._burst()  # nothing running, nothing claimable: a burst run is over
                return
            else:
                await credits.receive()  # a job ending may make others claimable
                idle += 1

    async def _claim(self, limit: int, jobs: MemoryObjectSendStream[JobRecord]) -> int:
        claim = partial(
            self._backend.claim_pending_job,
            self._job_types,
            limit=limit,
            worker_id=self._worker_id,
            lease=self._lease,
        )
        claimed = await retrying(
            lambda: self._shielded(claim), "claiming jobs", give_up_after=self._give_up_after
        )
        for record in claimed:
            jobs.send_nowait(record)  # never blocks: one buffer slot per handler
        return len(claimed)

    async def _shielded(self, claim: Callable[..., Awaitable[list[JobRecord]]]) -> list[JobRecord]:
        # Shielded: jobs the backend has marked PROCESSING must reach a handler, not vanish
        # with a claimer cancelled mid-call (they would wait for their lease to expire).
        with anyio.CancelScope(shield=True):
            claimed = await claim(now=self._clock())
        return claimed

    async def _sleep(self, wake: MemoryObjectReceiveStream[None]) -> None:
        now = self._clock()
        due = await retrying(
            partial(self._backend.next_due, self._job_types, now=now),
            "looking for due jobs",
            give_up_after=self._give_up_after,
        )
        timeout = self._poll_interval if due is None else min(self._poll_interval, due - now)
        # A floor of 1 ms: a backend reporting a due time in the past must not make us spin.
        with anyio.move_on_after(max(timeout, 0.001)):
            await wake.receive()


def _drain(stream: MemoryObjectReceiveStream[None]) -> int:
    count = 0
    while True:
        try:
            stream.receive_nowait()
        except anyio.WouldBlock:
            return count
        count += 1
