"""huey: ``RedisHuey`` (its default blocking BRPOP storage) or ``SqliteHuey`` (its defaults:
WAL, fully synced commits), a thread consumer. On SQLite the consumer polls every
``env.poll`` seconds (``initial_delay=max_delay``, no backoff) like every SQLite peer; on Redis it
keeps its defaults."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import record

NAME = "huey"
DIST = "huey"
BACKENDS = ("redis", "sqlite")
LOOPS = ("threads",)
ASYNC = False
DEFAULT = True
POLL_PERIOD = None
SETTINGS = {
    "sqlite": "SqliteHuey defaults (synced commits), 8 thread workers, 10 ms polling, no backoff",
    "redis": "RedisHuey defaults (blocking BRPOP), consumer with 8 thread workers",
}


def _huey(env: Any) -> tuple[Any, Any]:
    from huey import RedisHuey, SqliteHuey

    if env.backend == "sqlite":
        huey = SqliteHuey(env.tag, filename=env.url)
    else:
        huey = RedisHuey(env.tag, url=env.url)

    @huey.task(name="noop")
    def noop(lat: int) -> None:
        record.hit_sync(lat)

    return huey, noop


def setup(env: Any) -> None:
    pass


@contextmanager
def producer(env: Any) -> Iterator[Callable[[int], None]]:
    _, noop = _huey(env)
    yield noop  # calling a huey task enqueues it


def serve(env: Any) -> None:
    logging.getLogger("huey").setLevel(logging.WARNING)
    huey, _ = _huey(env)
    options: dict[str, Any] = {"workers": env.threads, "worker_type": "thread"}
    if env.backend == "sqlite":
        options |= {"initial_delay": env.poll, "max_delay": env.poll, "backoff": 1.0}
    consumer = huey.create_consumer(**options)
    consumer.run()
