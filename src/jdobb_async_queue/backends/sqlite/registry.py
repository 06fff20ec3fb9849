"""The worker registry on the file: every process's workers, in the ``workers`` table."""

from __future__ import annotations

import logging

import msgspec

from ..._records import WorkerRecord
from ..base import WORKER_TTL
from . import queries as q
from .tx import Tx

__all__ = ["live_workers", "register_worker", "remove_worker"]

log = logging.getLogger("jdobb_async_queue.backend")

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(WorkerRecord).decode


def register_worker(tx: Tx, worker: WorkerRecord, now: float) -> None:
    """Add or refresh ``worker`` (its heartbeat is ``now``); drop entries that died."""
    tx.conn.execute(q.DROP_DEAD_WORKERS, {"oldest": now - WORKER_TTL})
    record = _encode(msgspec.structs.replace(worker, heartbeat_at=0.0)).decode()
    tx.conn.execute(q.REGISTER_WORKER, {"id": worker.id, "record": record, "now": now})


def remove_worker(tx: Tx, worker_id: str) -> None:
    """Remove one entry (unknown ids are ignored)."""
    tx.conn.execute(q.REMOVE_WORKER, (worker_id,))


def live_workers(tx: Tx, now: float) -> list[WorkerRecord]:
    """The workers whose heartbeat is at most ``WORKER_TTL`` old, oldest first."""
    found: list[WorkerRecord] = []
    for record, heartbeat_at in tx.conn.execute(q.LIVE_WORKERS, (now - WORKER_TTL,)):
        try:
            worker = _decode(record)
        except msgspec.DecodeError:
            log.error("an undecodable worker registry row was skipped: %r", record)
            continue
        worker.heartbeat_at = heartbeat_at
        found.append(worker)
    return sorted(found, key=lambda w: (w.started_at, w.id))
