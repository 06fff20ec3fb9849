"""The claimer actor: claims only as many jobs as there are idle handlers.

Idle handlers wait in the :class:`~.dispatch.Dispatch`. The claimer counts every one that
waits and claims that many jobs in one backend call, so no job ever waits claimed in a buffer.
A claim that found some jobs but fewer than asked is followed by another (the backend may hand
out only what it had at hand, or more may have come meanwhile); once a claim finds nothing, the
claimer sleeps until a wake-up (a new job, a retry, a dependency met), the next due time, or
``poll_interval``, whichever comes first: never a busy loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from .._records import JobRecord
from ..backends.base import QueueBackend
from . import backoff
from .backoff import retrying
from .dispatch import Dispatch

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
        release: Callable[[list[JobRecord]], Awaitable[None]],
    ) -> None:
        """:param release: hands claimed jobs back (on a hard stop, those no handler took)"""
        self._backend = backend
        self._clock = clock
        self._job_types = list(job_types)
        self._worker_id = worker_id
        self._lease = lease
        self._poll_interval = poll_interval
        self._burst = burst
        self._capacity = capacity
        self._release = release
        # A burst rides out an outage for a while, then gives up: it must end, not wait forever.
        self._give_up_after = None if burst is None else backoff.BURST_OUTAGE_LIMIT
        self.scope = anyio.CancelScope()

    async def run(
        self,
        dispatch: Dispatch,
        wake: MemoryObjectReceiveStream[None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Claim until stopped; closing ``dispatch`` on the way out tells handlers to drain."""
        async with wake:
            task_status.started()
            try:
                with self.scope:
                    await self._loop(dispatch, wake)
            finally:
                dispatch.close()
                if dispatch.abandoned:  # a hard stop: what came after the handlers left
                    await self._release(dispatch.take_all())

    async def _loop(self, dispatch: Dispatch, wake: MemoryObjectReceiveStream[None]) -> None:
        while True:
            # Claims are shielded, and a claimer whose handlers keep becoming idle never waits:
            # a stop must still end it here.
            await anyio.lowlevel.checkpoint_if_cancelled()
            idle = await dispatch.idle_handlers()
            if not idle:
                return  # every handler has gone (the error that ended them is raised)
            claimed = await self._claim(idle, dispatch)
            if claimed == idle:
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
                await dispatch.idle_handlers(idle)  # a job ending may make others claimable

    async def _claim(self, limit: int, dispatch: Dispatch) -> int:
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
            dispatch.give(record)
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
