"""Bare Redis baseline, no library: a plain list. The producer RPUSHes one job per call; the
worker pops up to 50 at once (LPOP with a count), BLPOP when the list is empty, and reports the
batch with one pipelined round trip on the control server (still one command per job)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import record

NAME = "bare"
DIST = None
BACKENDS = ("redis",)
LOOPS = ("threads",)
ASYNC = False
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "RPUSH per job; worker LPOP 50 / BLPOP, redis-py + hiredis, one thread"
BATCH = 50


def _key(env: Any) -> str:
    return f"{env.tag}:list"


def setup(env: Any) -> None:
    pass


@contextmanager
def producer(env: Any) -> Iterator[Callable[[int], None]]:
    client = record.sync_client(env.url)
    key = _key(env)

    def enqueue(lat: int) -> None:
        client.rpush(key, b"1" if lat else b"0")

    try:
        yield enqueue
    finally:
        client.close()


def serve(env: Any) -> None:
    client = record.sync_client(env.url)
    key = _key(env)
    pipe = record._sync.pipeline(transaction=False)
    while True:
        batch = client.lpop(key, BATCH)
        if not batch:
            popped = client.blpop([key], timeout=1)
            if popped is None:
                continue
            batch = [popped[1]]
        record.hit_batch(pipe, [item == b"1" for item in batch])
