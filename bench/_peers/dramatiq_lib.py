"""dramatiq: its ``RedisBroker`` and a ``dramatiq.Worker`` with ``env.threads`` threads (its
default is 8), every other setting its default (it long-polls an empty queue with backoff up to
its ``worker_timeout``, 1 s)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import record

NAME = "dramatiq"
DIST = "dramatiq"
BACKENDS = ("redis",)
LOOPS = ("threads",)
ASYNC = False
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "RedisBroker, Worker(worker_threads=8), max_retries=0"


def _actor(env: Any) -> tuple[Any, Any]:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=env.url, namespace=env.tag)
    dramatiq.set_broker(broker)

    @dramatiq.actor(actor_name="noop", queue_name="bench", max_retries=0)
    def noop(lat: int) -> None:
        record.hit_sync(lat)

    return broker, noop


def setup(env: Any) -> None:
    pass


@contextmanager
def producer(env: Any) -> Iterator[Callable[[int], None]]:
    broker, noop = _actor(env)
    try:
        yield noop.send
    finally:
        broker.close()


def serve(env: Any) -> None:
    import dramatiq

    broker, _ = _actor(env)
    worker = dramatiq.Worker(broker, worker_threads=env.threads)
    worker.start()
    threading.Event().wait()  # until the process is terminated
