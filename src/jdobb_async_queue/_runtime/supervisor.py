"""The supervisor actor: starts the crew, keeps leases, listens, and stops gracefully.

Lifecycle of one ``Worker.run()``::

    services: listener (wake-ups, cancellations)  +  lease keeper (renew, reclaim)
      crew:   N handler actors  +  the claimer
    stop:     cancel the claimer (it closes the job stream), let handlers finish what they hold
              until the drain deadline, then cancel them (their jobs are handed back)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._context import HandlerFunc
from .._errors import BackendUnavailable
from .._queue import JobQueue
from .._records import Outcome
from ..backends.base import Notice, QueueBackend
from . import backoff
from .backoff import FIRST_DELAY, MAX_DELAY, logger
from .claimer import Claimer
from .dispatch import Dispatch
from .handler import JobRunner, Middleware, OutcomeHook, run_handler
from .periodic import Schedule, keep_schedules
from .registry import keep_registered
from .reporter import hand_over, run_reporter, store_outcome
from .roster import Roster

__all__ = ["CrewSettings", "supervise"]


@dataclass(frozen=True)
class CrewSettings:
    """How one worker runs."""

    job_types: Sequence[str]
    worker_id: str
    max_concurrent: int
    poll_interval: float
    lease: float
    drain_timeout: float
    burst: bool = False
    #: ``Worker.on_outcome`` callbacks.
    hooks: tuple[OutcomeHook, ...] = ()
    #: ``Worker.middleware`` around each attempt.
    middleware: tuple[Middleware, ...] = ()
    #: ``Worker.every`` schedules (not kept in a burst).
    schedules: tuple[Schedule, ...] = ()


async def supervise(
    queue: JobQueue,
    handlers: Mapping[str, HandlerFunc],
    settings: CrewSettings,
    stop: anyio.Event,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run a worker's actors until ``stop`` is set, then drain and return."""
    roster = Roster()
    wake_tx, wake_rx = anyio.create_memory_object_stream[None](1)
    outcomes_tx, outcomes_rx = anyio.create_memory_object_stream[Outcome](settings.max_concurrent)
    async with anyio.create_task_group() as services:
        await services.start(_listen, queue.backend, roster, wake_tx)
        await services.start(_keep_leases, queue, roster, settings.lease, wake_tx.clone())
        await services.start(
            keep_registered,
            queue,
            settings.worker_id,
            settings.max_concurrent,
            settings.job_types,
            roster,
        )
        if settings.schedules and not settings.burst:
            await services.start(keep_schedules, queue, settings.schedules)
        async with anyio.create_task_group() as reporting:
            await reporting.start(run_reporter, queue.backend, queue.clock, outcomes_rx)
            async with outcomes_tx, anyio.create_task_group() as crew:
                report = partial(hand_over, outcomes_tx)
                if settings.burst:
                    # Outcomes stored before the handler asks for more work, so the claimer
                    # never ends a burst while a finished job's dependents are still unseen.
                    report = partial(store_outcome, queue)
                runner = JobRunner(
                    queue,
                    handlers,
                    roster,
                    report,
                    settings.hooks,
                    settings.middleware,
                    give_up_after=backoff.BURST_OUTAGE_LIMIT if settings.burst else None,
                )
                claimer = await _start_crew(crew, queue, runner, settings, wake_rx, stop)
                task_status.started()
                await stop.wait()
                claimer.scope.cancel()
                crew.cancel_scope.deadline = anyio.current_time() + settings.drain_timeout
            # The crew is done; the reporter ends once it has stored the last outcome.
        services.cancel_scope.cancel()


async def _start_crew(
    crew: TaskGroup,
    queue: JobQueue,
    runner: JobRunner,
    settings: CrewSettings,
    wake_rx: MemoryObjectReceiveStream[None],
    stop: anyio.Event,
) -> Claimer:
    n = settings.max_concurrent
    dispatch = Dispatch()
    for _ in range(n):
        await crew.start(run_handler, runner, dispatch)
    claimer = Claimer(
        queue.backend,
        queue.clock,
        settings.job_types,
        worker_id=settings.worker_id,
        lease=settings.lease,
        poll_interval=settings.poll_interval,
        burst=stop.set if settings.burst else None,
        capacity=n,
        release=runner.release,
    )
    await crew.start(claimer.run, dispatch, wake_rx)
    return claimer


async def _listen(
    backend: QueueBackend,
    roster: Roster,
    wake: MemoryObjectSendStream[None],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Turn the backend's notices into claimer wake-ups and handler cancellations.

    Reports itself started once the first subscription is open (or the backend is down), so no
    job the worker runs can be cancelled before the worker can hear of it.
    """
    started = False
    delay = FIRST_DELAY
    async with wake:
        while True:
            try:
                async with backend.listen() as notices:
                    delay = FIRST_DELAY  # listening again: the next failure starts afresh
                    if not started:
                        started = True
                        task_status.started()
                    await _relay(notices, roster, wake)
            except BackendUnavailable as exc:
                logger.warning("lost the backend's notices, listening again: %s", exc)
            if not started:
                started = True
                task_status.started()
            _poke(wake)  # something may have happened while we were not listening
            await anyio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)


async def _relay(
    notices: AsyncIterator[Notice], roster: Roster, wake: MemoryObjectSendStream[None]
) -> None:
    async for notice in notices:
        if notice.kind == "jobs":
            _poke(wake)
        elif notice.job_id is not None:
            roster.take_away(notice.job_id, notice.fence)


async def _keep_leases(
    queue: JobQueue,
    roster: Roster,
    lease: float,
    wake: MemoryObjectSendStream[None],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Renew this worker's leases and recover jobs whose worker died, every third of a lease."""
    backend, clock = queue.backend, queue.clock
    async with wake:
        task_status.started()
        while True:
            try:
                if await backend.reclaim_expired(now=clock()):
                    _poke(wake)
                await anyio.sleep(lease / 3)
                await _renew(backend, clock, roster, lease)
            except BackendUnavailable as exc:
                # Try again soon: our leases run out if the outage lasts longer than they do.
                logger.warning("lease upkeep failed, retrying: %s", exc)
                await anyio.sleep(min(lease / 10, 1.0))


async def _renew(
    backend: QueueBackend, clock: Callable[[], float], roster: Roster, lease: float
) -> None:
    leases = roster.leases()
    if not leases:
        return
    held = await backend.renew_many(leases, duration=lease, now=clock())
    for item, ok in zip(leases, held, strict=True):
        if not ok:
            roster.take_away(item.job_id, item.fence)


def _poke(wake: MemoryObjectSendStream[None]) -> None:
    try:
        wake.send_nowait(None)
    except anyio.WouldBlock:
        pass  # a wake-up is already pending: one is enough
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the claimer has stopped
