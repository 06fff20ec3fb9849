"""Bare PostgreSQL baseline, no library: plain SQL through psycopg 3 (sync). The producer
INSERTs one job per transaction (a statement trigger NOTIFYs); the worker claims up to 50 jobs
with ``SELECT ... FOR UPDATE SKIP LOCKED LIMIT 50`` inside one UPDATE ... RETURNING, reports
them, and completes them with one UPDATE; when nothing is queued it waits on LISTEN for up to
``env.poll`` seconds and looks again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import record

NAME = "bare"
DIST = None
BACKENDS = ("postgres",)
LOOPS = ("threads",)
ASYNC = False
DEFAULT = True
POLL_PERIOD = None
SETTINGS = "psycopg 3 sync; 1 INSERT per txn (+NOTIFY trigger); SKIP LOCKED claim 50 + UPDATE"
BATCH = 50

SCHEMA = """
CREATE TABLE bare_jobs (id bigserial PRIMARY KEY, state smallint NOT NULL DEFAULT 0,
                        lat smallint NOT NULL);
CREATE INDEX bare_jobs_queued ON bare_jobs (id) WHERE state = 0;
CREATE FUNCTION bare_notify() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_notify('bare_jobs', ''); RETURN NULL; END $$;
CREATE TRIGGER bare_jobs_notify AFTER INSERT ON bare_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION bare_notify();
"""
CLAIM = (
    "UPDATE bare_jobs SET state = 1 WHERE id IN (SELECT id FROM bare_jobs WHERE state = 0 "
    "ORDER BY id FOR UPDATE SKIP LOCKED LIMIT %s) RETURNING id, lat"
)


def _connect(env: Any) -> Any:
    import psycopg

    return psycopg.connect(env.url, autocommit=True)


def setup(env: Any) -> None:
    with _connect(env) as conn:
        conn.execute(SCHEMA)


@contextmanager
def producer(env: Any) -> Iterator[Callable[[int], None]]:
    conn = _connect(env)

    def enqueue(lat: int) -> None:
        conn.execute("INSERT INTO bare_jobs (lat) VALUES (%s)", (lat,), prepare=True)

    try:
        yield enqueue
    finally:
        conn.close()


def serve(env: Any) -> None:
    conn = _connect(env)
    listener = _connect(env)
    listener.execute("LISTEN bare_jobs")
    pipe = record._sync.pipeline(transaction=False)
    while True:
        rows = conn.execute(CLAIM, (BATCH,), prepare=True).fetchall()
        if not rows:
            for _ in listener.notifies(timeout=env.poll, stop_after=1):
                pass
            continue
        record.hit_batch(pipe, [lat for _, lat in rows])
        conn.execute(
            "UPDATE bare_jobs SET state = 2 WHERE id = ANY(%s)",
            ([row[0] for row in rows],),
            prepare=True,
        )
