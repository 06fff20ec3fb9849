"""RQ: ``Queue.enqueue`` and a ``SimpleWorker`` (RQ's fastest worker class: it runs each job in
the worker process instead of forking a child per job, which its default ``Worker`` does)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import record

NAME = "rq"
DIST = "rq"
BACKENDS = ("redis",)
LOOPS = ("threads",)
ASYNC = False
DEFAULT = False
POLL_PERIOD = None
SETTINGS = "SimpleWorker (no fork per job), one job at a time"


def noop(lat: int) -> None:
    """The job RQ imports by name (``_peers.rq_lib.noop``)."""
    record.hit_sync(lat)


def _queue(env: Any) -> Any:
    import redis
    from rq import Queue

    return Queue(env.tag, connection=redis.Redis.from_url(env.url))


def setup(env: Any) -> None:
    pass


@contextmanager
def producer(env: Any) -> Iterator[Callable[[int], None]]:
    queue = _queue(env)

    def enqueue(lat: int) -> None:
        queue.enqueue(noop, lat)

    yield enqueue


def serve(env: Any) -> None:
    import logging

    from rq import SimpleWorker

    logging.getLogger("rq.worker").setLevel(logging.WARNING)
    queue = _queue(env)
    SimpleWorker([queue], connection=queue.connection).work(logging_level="WARNING")
