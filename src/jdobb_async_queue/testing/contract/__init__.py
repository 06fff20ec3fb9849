"""The backend contract suite, shipped with the package: hold your own backend to exactly what
the built-in ones pass.

In a test module of your project::

    import pytest
    from jdobb_async_queue.testing.contract import *  # noqa: F403

    @pytest.fixture
    async def queue_backend():
        backend = MyBackend(...)          # a fresh, empty store for each test
        yield backend
        await backend.drop_everything()   # your own clean-up (the suite has closed it by now)

Every test of the suite is then collected in that module and runs on your backend under
asyncio and trio (the ``anyio`` pytest plugin, which this package's test extra installs; set
``anyio_backend`` yourself to run only one). That includes the Hypothesis state machine, which
drives random sequences of operations against your backend and a reference model; it empties
the store between examples through the contract itself (cancel, then purge).

The suite closes the backend (``aclose``) at the end of each test, before your fixture's own
clean-up runs. It needs ``pytest``, ``anyio`` and ``hypothesis``; trio for the trio half.

This package's own ``tests/contract/`` runs every built-in backend through this very module.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import pytest

from ... import JobQueue
from ...backends import QueueBackend
from .. import MockClock
from . import (
    test_broadcast,
    test_bulk,
    test_dependencies,
    test_edges,
    test_leases,
    test_lifecycle,
    test_listing,
    test_retention,
    test_retries,
    test_scheduling,
    test_state_machine,
    test_unique,
    test_validation,
    test_worker,
    test_workflow,
)

#: The modules of the suite, one per part of the contract.
MODULES: tuple[ModuleType, ...] = (
    test_lifecycle,
    test_broadcast,
    test_bulk,
    test_dependencies,
    test_edges,
    test_leases,
    test_listing,
    test_retention,
    test_retries,
    test_scheduling,
    test_unique,
    test_validation,
    test_worker,
    test_workflow,
    test_state_machine,
)

QueueFactory = Callable[..., JobQueue]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test of the suite on both event loops."""
    return str(request.param)


@pytest.fixture
async def make_queue(queue_backend: QueueBackend) -> AsyncIterator[QueueFactory]:
    """Open queues on the test's backend (``JobQueue(backend=queue_backend, **options)``); all
    of them share its store. The backend is closed at the end."""

    def factory(**options: Any) -> JobQueue:
        return JobQueue(backend=queue_backend, **options)

    try:
        yield factory
    finally:
        await queue_backend.aclose()


@pytest.fixture
def queue(make_queue: QueueFactory) -> JobQueue:
    """One queue on the test's backend."""
    return make_queue()


@pytest.fixture
def clock() -> MockClock:
    """A clock that moves only when told to."""
    return MockClock()


@pytest.fixture
def timed(make_queue: QueueFactory, clock: MockClock) -> JobQueue:
    """A queue on the test's backend driven by ``clock``."""
    return make_queue(clock=clock)


FIXTURES = ("anyio_backend", "make_queue", "queue", "clock", "timed")


def _tests() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for module in MODULES:
        for name, member in vars(module).items():
            if name.startswith("test_") and callable(member):
                if name in found:
                    raise RuntimeError(f"two contract tests are named {name}")
                if inspect.iscoroutinefunction(member):
                    member = pytest.mark.anyio(member)
                found[name] = member
            elif getattr(member, "_pytestfixturefunction", None) or _is_fixture(member):
                found.setdefault(name, member)  # a module's own fixture (e.g. ``bad``)
    return found


def _is_fixture(member: object) -> bool:
    return type(member).__name__ == "FixtureFunctionDefinition"


_TESTS = _tests()
globals().update(_TESTS)

__all__ = [*FIXTURES, *_TESTS]
