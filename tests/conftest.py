"""Fixtures shared by every test: both event loops, and every storage backend.

Every async test runs under asyncio and trio (``anyio_backend``). ``backend_name`` runs a test
on each storage backend; ``make_queue`` opens queues on it (sharing the test's store), and
``queue`` is one such queue, closed at the end.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jdobb_async_queue import JobQueue

from ._pg_server import DEFAULT_PG_URL, PostgresServer, answers
from ._redis_server import RedisServer, external_url

BACKENDS = ["memory", "sqlite-file", "sqlite-memory", "redis", "postgres"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server for the whole session: ``REDIS_URL``, or one the tests start."""
    url = external_url()
    if url is not None:
        yield url
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session: ``PG_URL`` (default the local one on
    127.0.0.1:5432), or, when none answers there, a cluster the tests start."""
    url = os.environ.get("PG_URL", DEFAULT_PG_URL)
    if answers(url):
        yield url
        return
    server = PostgresServer().start()
    try:
        yield server.url
    finally:
        server.close()


def _available(name: str) -> bool:
    module = {"sqlite": "jdobb_async_queue.backends.sqlite", "redis": "jdobb_async_queue.backends.redis"}
    key = name.split("-")[0]
    return key not in module or importlib.util.find_spec(module[key]) is not None


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if not _available(name):
        pytest.skip(f"the {name} backend is not built yet")
    return name


QueueFactory = Callable[..., JobQueue]


@pytest.fixture
async def make_queue(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[QueueFactory]:
    """Open queues on the test's backend; all of them share one store (except sqlite-memory,
    where each queue is its own database). Every queue is closed and, for Redis, the test's
    namespace deleted at the end."""
    opened: list[JobQueue] = []
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    redis = request.getfixturevalue("redis_url") if backend_name == "redis" else None
    postgres = request.getfixturevalue("pg_url") if backend_name == "postgres" else None

    def factory(**kwargs: Any) -> JobQueue:
        if backend_name == "memory":
            if opened:
                kwargs.setdefault("backend", opened[0].backend)
            q = JobQueue(**{"backend": "memory", **kwargs})
        elif backend_name == "sqlite-file":
            q = JobQueue(backend="sqlite", url=f"sqlite:///{tmp_path / 'jobs.db'}", **kwargs)
        elif backend_name == "sqlite-memory":
            q = JobQueue(backend="sqlite", url="sqlite:///:memory:", **kwargs)
        elif backend_name == "postgres":
            q = JobQueue(backend="postgres", url=postgres, namespace=namespace, **kwargs)
        else:
            q = JobQueue(backend="redis", url=redis, namespace=namespace, **kwargs)
        opened.append(q)
        return q

    yield factory
    if (redis is not None or postgres is not None) and opened:
        await _drop_namespace(opened[0])
    for q in opened:
        await q.close()


async def _drop_namespace(queue: JobQueue) -> None:
    drop = getattr(queue.backend, "drop_namespace", None)
    if drop is not None:
        await drop()


@pytest.fixture
async def queue(make_queue: QueueFactory) -> JobQueue:
    return make_queue()
