"""Bare SQLite baseline, no library: the standard library's sqlite3 on one job table (WAL,
``synchronous=NORMAL``). The producer INSERTs one job per transaction; the worker claims up to
50 jobs in one transaction (UPDATE ... RETURNING), reports them, and completes them in a
second one; it looks again every ``env.poll`` seconds when nothing is queued."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import record

NAME = "bare"
DIST = None
BACKENDS = ("sqlite",)
LOOPS = ("threads",)
ASYNC = False
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "stdlib sqlite3, WAL, synchronous=NORMAL; 1 INSERT per txn; claim+complete 50/txn"
BATCH = 50

CLAIM = (
    "UPDATE jobs SET state = 1 WHERE id IN "
    "(SELECT id FROM jobs WHERE state = 0 ORDER BY id LIMIT ?) RETURNING id, lat"
)


def _connect(env: Any) -> sqlite3.Connection:
    conn = sqlite3.connect(env.url, isolation_level=None, timeout=5)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def setup(env: Any) -> None:
    conn = _connect(env)
    conn.execute(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, state INTEGER NOT NULL DEFAULT 0, "
        "lat INTEGER NOT NULL)"
    )
    conn.execute("CREATE INDEX jobs_state ON jobs (state, id)")
    conn.close()


@contextmanager
def producer(env: Any) -> Iterator[Callable[[int], None]]:
    conn = _connect(env)

    def enqueue(lat: int) -> None:
        conn.execute("INSERT INTO jobs (lat) VALUES (?)", (lat,))  # autocommit: one txn

    try:
        yield enqueue
    finally:
        conn.close()


def serve(env: Any) -> None:
    conn = _connect(env)
    pipe = record._sync.pipeline(transaction=False)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(CLAIM, (BATCH,)).fetchall()
        conn.execute("COMMIT")
        if not rows:
            time.sleep(env.poll)
            continue
        record.hit_batch(pipe, [lat for _, lat in rows])
        ids = [row[0] for row in rows]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"UPDATE jobs SET state = 2 WHERE id IN ({','.join('?' * len(ids))})", ids)
        conn.execute("COMMIT")
