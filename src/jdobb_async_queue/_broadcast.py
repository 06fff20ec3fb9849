"""Broadcaster: live updates of a job, pushed by the backend as they happen."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ._codec import checked_copy
from ._errors import InvalidJobError, JobNotFoundError
from ._jobspec import check_progress
from ._models import TERMINAL_STATUSES, JobUpdate
from ._records import UpdateRecord, record_update, to_update

if TYPE_CHECKING:
    from ._queue import JobQueue

__all__ = ["Broadcaster"]


class Broadcaster:
    """Subscribe to a job's updates, or send custom ones.

    :param queue: the queue whose jobs to follow
    """

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue

    async def subscribe(self, job_id: str) -> AsyncGenerator[JobUpdate, None]:
        """Yield the job's updates until it is COMPLETE, FAILED or CANCELLED.

        The first update is the job's state when you subscribe; if that is already final, it is
        the only one. Updates come in the order they were stored, each once: they are ordered
        and de-duplicated by the job's update sequence number, never by timestamps, so clocks
        that disagree between hosts cannot drop or repeat one. A slow reader may miss
        intermediate progress updates (each subscriber has a bounded buffer, so a worker never
        waits for it), never the final one.

        :raises JobNotFoundError: if there is no job with this id (never was, purged, expired),
            and also *during* the iteration if the job is deleted while you follow it (purged,
            expired, or gone from a Redis server that lost its data): the subscription ends
            with this error rather than waiting forever
        """
        backend = self._queue.backend
        async with backend.subscribe(job_id) as updates:
            record = await backend.get(job_id, now=self._queue.clock())
            if record is None:
                raise JobNotFoundError(job_id)
            yield to_update(record_update(record))
            if record.status in TERMINAL_STATUSES:
                return
            seen = record.update_seq
            async for update in updates:
                if update.gone:
                    raise JobNotFoundError(job_id)
                if update.data is None:
                    if update.update_seq <= seen:
                        continue  # already reflected in what we yielded
                    seen = update.update_seq
                yield to_update(update)
                if update.status in TERMINAL_STATUSES:
                    return

    async def send(
        self,
        job_id: str,
        *,
        progress: float | None = None,
        message: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> bool:
        """Send a custom update to the job's subscribers (nothing is stored).

        :raises InvalidJobError: for progress outside 0..1
        :raises SerializationError: if ``data`` is not JSON-compatible
        :return: ``False`` if the job is unknown or already finished
        """
        checked = check_progress(progress)
        if data is not None and not isinstance(data, dict):
            raise InvalidJobError(f"data must be a dict or None, not {type(data).__name__}")
        payload = {} if data is None else checked_copy(data, "data")
        backend = self._queue.backend
        now = self._queue.clock()
        record = await backend.get(job_id, now=now)
        if record is None or record.status in TERMINAL_STATUSES:
            return False
        await backend.publish(
            UpdateRecord(
                job_id=job_id,
                status=record.status,
                progress=record.progress if checked is None else checked,
                message=record.message if message is None else message,
                timestamp=now,
                data=payload,
                update_seq=record.update_seq,
            )
        )
        return True
