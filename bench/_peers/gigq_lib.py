"""GigQ: ``JobQueue.submit(Job(...))`` and a ``gigq.Worker`` polling every ``env.poll`` seconds
with ``concurrency=env.threads`` threads, other settings its defaults (GigQ keeps SQLite's
default, fully synced commits)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import record

NAME = "gigq"
DIST = "gigq"
BACKENDS = ("sqlite",)
LOOPS = ("threads",)
ASYNC = False
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "Worker(polling_interval=0.01, concurrency=8)"


def noop(lat: int) -> None:
    """The job GigQ imports by name (``_peers.gigq_lib.noop``)."""
    record.hit_sync(lat)


def setup(env: Any) -> None:
    from gigq import JobQueue

    JobQueue(env.url).close()  # creates the tables


@contextmanager
def producer(env: Any) -> Iterator[Callable[[int], None]]:
    from gigq import Job, JobQueue

    queue = JobQueue(env.url, initialize=False)

    def enqueue(lat: int) -> None:
        queue.submit(Job(name="noop", function=noop, params={"lat": lat}))

    try:
        yield enqueue
    finally:
        queue.close()


def serve(env: Any) -> None:
    from gigq import Worker

    logging.getLogger("gigq").setLevel(logging.WARNING)
    Worker(env.url, polling_interval=env.poll, concurrency=env.threads).start()
