"""The reporter actor: stores the outcomes of finished attempts, many per backend call.

Handlers hand each outcome over without waiting for the backend, and go on to their next job.
The reporter writes whatever has piled up with one ``finish_many`` call (one transaction or one
pipeline on the built-in backends). It is not cancelled on stop: it ends when every handler has
closed its end of the stream, after writing the last outcome, so no result is ever dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._errors import BackendUnavailable
from .._records import Outcome
from ..backends.base import QueueBackend
from .backoff import logger, retrying

if TYPE_CHECKING:
    from .._queue import JobQueue

__all__ = ["hand_over", "note_refused", "run_reporter", "store_outcome"]

#: Outcomes written per backend call, at most.
BATCH = 256
#: Longest wait, in seconds, for a write that must finish even though we are being cancelled.
SHIELD_LIMIT = 10.0


async def run_reporter(
    backend: QueueBackend,
    clock: Callable[[], float],
    outcomes: MemoryObjectReceiveStream[Outcome],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Write outcomes until every sender has closed its end."""
    async with outcomes:
        task_status.started()
        batch: list[Outcome] = []
        try:
            async for first in outcomes:
                batch = [first, *_pending(outcomes, BATCH - 1)]
                await _store(backend, clock, batch)
                batch = []
        except anyio.get_cancelled_exc_class():
            # run() itself was cancelled: store the batch in flight and what handlers already
            # handed over, or finished jobs would wait for their leases and run again.
            # Shielded, but bounded: a backend that no longer answers must not hang the stop.
            with anyio.move_on_after(SHIELD_LIMIT, shield=True):
                rest = [*batch, *_pending(outcomes, None)]
                if rest:
                    stored = await backend.finish_many(rest, now=clock())
                    note_refused(rest, stored)
            raise


#: How long the reporter keeps retrying one batch through an outage before giving up on it;
#: its jobs then run again once their leases run out (delivery is at least once).
GIVE_UP_AFTER = 60.0


async def _store(backend: QueueBackend, clock: Callable[[], float], batch: list[Outcome]) -> None:
    async def attempt() -> list[bool]:
        return await backend.finish_many(batch, now=clock())

    try:
        stored = await retrying(attempt, "storing job outcomes", give_up_after=GIVE_UP_AFTER)
    except BackendUnavailable as exc:
        ids = ", ".join(o.job_id for o in batch)
        logger.error("gave up storing outcomes of %s (they will run again): %s", ids, exc)
    else:
        note_refused(batch, stored)


def note_refused(outcomes: list[Outcome], stored: list[bool]) -> None:
    """Log each outcome the store refused: its job was no longer this attempt's (cancelled,
    or its lease ran out and it was reclaimed, before the worker learned of it), so nothing
    changed. An ``on_outcome`` callback has counted it already."""
    if all(stored):  # the usual case, on every batch of completions: no Python loop
        return
    for outcome, kept in zip(outcomes, stored, strict=True):
        if not kept:
            logger.warning(
                "the %s outcome of job %s was not stored: the job is no longer this attempt's "
                "(cancelled, or reclaimed after its lease ran out)",
                outcome.kind,
                outcome.job_id,
            )


def _pending(outcomes: MemoryObjectReceiveStream[Outcome], limit: int | None) -> list[Outcome]:
    batch: list[Outcome] = []
    while limit is None or len(batch) < limit:
        try:
            batch.append(outcomes.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            break
    return batch


#: Longest wait, in seconds, to hand an outcome to a reporter that is riding out an outage: it
#: takes a new batch at the latest once it gave up on the one in flight.
HAND_OVER_LIMIT = GIVE_UP_AFTER + SHIELD_LIMIT


async def hand_over(outcomes: MemoryObjectSendStream[Outcome], outcome: Outcome) -> None:
    """Give ``outcome`` to the reporter; never lost to a cancellation of the caller."""
    try:
        outcomes.send_nowait(outcome)
    except anyio.WouldBlock:
        # Shielded: a hard stop may be cancelling us, and the outcome must still be stored.
        # Bounded: past the limit the reporter is stuck, and the job's lease brings it back.
        with anyio.move_on_after(HAND_OVER_LIMIT, shield=True) as waited:
            await outcomes.send(outcome)
        if waited.cancelled_caught:
            logger.error(
                "gave up handing over the outcome of %s (it will run again)", outcome.job_id
            )


async def store_outcome(queue: JobQueue, outcome: Outcome) -> None:
    """Store ``outcome`` at once (burst mode and ``process_one``), riding out an outage.

    :raises BackendUnavailable: when the store stayed unreachable for ``SHIELD_LIMIT`` seconds
        (the job's lease then brings it back: nothing is lost)
    """

    async def attempt() -> bool:
        return await queue.backend.finish(outcome, now=queue.clock())

    # Shielded, within a bound: the caller may be cancelled, and the outcome (or the hand-back)
    # must land unless the backend stays unreachable; then the lease brings the job back.
    stored = False
    with anyio.move_on_after(SHIELD_LIMIT, shield=True) as waited:
        stored = await retrying(attempt, "storing a job outcome", give_up_after=SHIELD_LIMIT)
    if waited.cancelled_caught:
        raise BackendUnavailable(f"storing the outcome of {outcome.job_id} timed out")
    note_refused([outcome], [stored])
