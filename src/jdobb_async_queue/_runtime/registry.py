"""The registry actor: keeps this worker's entry in the store's worker registry.

It registers the worker when ``run()`` starts, refreshes the entry (heartbeat, running jobs)
every :data:`HEARTBEAT_EVERY` seconds, and removes it on the way out. A worker that dies
without removing itself drops out ``WORKER_TTL`` seconds after its last heartbeat.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

import anyio
from anyio.abc import TaskStatus

from .._errors import BackendUnavailable, JobQueueError
from .._queue import JobQueue
from .._records import WorkerRecord
from .backoff import logger
from .roster import Roster

__all__ = ["HEARTBEAT_EVERY", "keep_registered"]

#: Seconds between two heartbeats (a third of ``WORKER_TTL``: two may be missed).
HEARTBEAT_EVERY = 10.0
#: Longest wait, in seconds, to remove the entry on the way out.
_REMOVE_LIMIT = 2.0


async def keep_registered(
    queue: JobQueue,
    worker_id: str,
    concurrency: int,
    job_types: Sequence[str],
    roster: Roster,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Register, refresh every :data:`HEARTBEAT_EVERY` seconds until cancelled, then remove."""
    backend = queue.backend
    record = WorkerRecord(
        id=worker_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=queue.clock(),
        concurrency=concurrency,
        job_types=list(job_types),
    )
    try:
        while True:
            record.running = roster.job_ids()
            try:
                await backend.register_worker(record, now=queue.clock())
            except BackendUnavailable as exc:
                logger.warning("could not refresh this worker's registry entry: %s", exc)
            task_status.started()
            task_status = anyio.TASK_STATUS_IGNORED
            await anyio.sleep(HEARTBEAT_EVERY)
    finally:
        # Shielded, briefly: a stopping worker should leave the registry at once, but a store
        # that does not answer must not hold up the stop (the entry then times out).
        with anyio.move_on_after(_REMOVE_LIMIT, shield=True):
            try:
                await backend.remove_worker(worker_id)
            except JobQueueError:
                pass  # closed or unreachable: the entry times out
