"""Pytest fixtures for testing code that uses jdobb-async-queue: a queue and a worker per test.

Installing the package registers this plugin with pytest (entry point ``pytest11``), so the
fixtures are there without any import. Where plugins are not loaded automatically
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``), name it: ``pytest -p jdobb_async_queue.pytest_plugin``,
or ``pytest_plugins = ["jdobb_async_queue.pytest_plugin"]`` in the top ``conftest.py``.

Fixtures:

``job_queue``
    A :class:`~jdobb_async_queue.JobQueue` on the memory backend, closed when the test ends.
``job_worker``
    A :class:`~jdobb_async_queue.Worker` on ``job_queue``, not started: register handlers on
    it, enqueue, then drive it with ``await job_worker.process_one()`` or
    ``await job_worker.run(burst=True)``.
``job_queue_options`` / ``job_worker_options``
    The keyword arguments the two are built with (default: none, and a short
    ``poll_interval`` for the worker); override them in a ``conftest.py`` or a test module,
    for example to pass ``clock=MockClock()``.

``job_queue`` is an async fixture run by anyio's pytest plugin (installed with anyio), on the
event loop that the ``anyio_backend`` fixture names: ``"asyncio"`` unless you override it. A
test that uses ``job_queue`` or ``job_worker`` is run by that plugin as well, so it needs no
marker; other async tests need ``@pytest.mark.anyio``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

# The shipped contract suite (``jdobb_async_queue.testing.contract``) asserts with plain
# ``assert``: have pytest rewrite them so failures show the values, as in one's own tests.
pytest.register_assert_rewrite("jdobb_async_queue.testing.contract")

if TYPE_CHECKING:
    from ._queue import JobQueue
    from ._worker import Worker

__all__ = ["job_queue", "job_queue_options", "job_worker", "job_worker_options"]


@pytest.fixture
def job_queue_options() -> dict[str, Any]:
    """Keyword arguments for the ``job_queue`` fixture's :class:`JobQueue` (override it)."""
    return {}


@pytest.fixture
def job_worker_options() -> dict[str, Any]:
    """Keyword arguments for the ``job_worker`` fixture's :class:`Worker` (override it)."""
    return {"poll_interval": 0.01}


@pytest.fixture
async def job_queue(
    anyio_backend: Any, job_queue_options: dict[str, Any]
) -> AsyncIterator[JobQueue]:
    """A memory :class:`JobQueue` for one test, closed at its end."""
    from ._queue import JobQueue

    async with JobQueue(**{"backend": "memory", **job_queue_options}) as queue:
        yield queue


@pytest.fixture
def job_worker(job_queue: JobQueue, job_worker_options: dict[str, Any]) -> Worker:
    """A :class:`Worker` on ``job_queue``, not started (handlers are registered by the test)."""
    from ._worker import Worker

    return Worker(job_queue, **job_worker_options)
