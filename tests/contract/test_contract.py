"""Every built-in backend through the shipped contract suite, exactly as a user's backend runs
it (``jdobb_async_queue.testing.contract``): the suite and this repository cannot drift."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jdobb_async_queue.backends import QueueBackend, open_backend
from jdobb_async_queue.testing.contract import *  # noqa: F403


@pytest.fixture
async def queue_backend(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[QueueBackend]:
    """A fresh store on the backend under test: a new file, database or Redis namespace."""
    namespace = f"contract-{uuid.uuid4().hex[:12]}"
    if backend_name == "memory":
        backend = open_backend("memory", None, namespace)
    elif backend_name == "sqlite-file":
        backend = open_backend("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}", namespace)
    elif backend_name == "sqlite-memory":
        backend = open_backend("sqlite", "sqlite:///:memory:", namespace)
    elif backend_name == "postgres":
        backend = open_backend("postgres", str(request.getfixturevalue("pg_url")), namespace)
    else:
        backend = open_backend("redis", str(request.getfixturevalue("redis_url")), namespace)
    yield backend
    drop = getattr(backend, "drop_namespace", None)
    if drop is not None:
        await drop()  # works on the closed backend: on a connection of its own
    await backend.aclose()
