"""The public names: every one in ``__all__`` exists, is documented, and nothing public is
missing from it (anyio's test_all_attributes, trio's test_exports)."""

from __future__ import annotations

import inspect

import jdobb_async_queue
from jdobb_async_queue import sync, testing


def test_every_name_in_all_exists_and_is_documented() -> None:
    for module in (jdobb_async_queue, sync, testing):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__doc__, f"{module.__name__}.{name} has no docstring"


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, obj in vars(jdobb_async_queue).items()
        if not name.startswith("_") and not inspect.ismodule(obj) and name != "annotations"
    }
    assert public == set(jdobb_async_queue.__all__)


def test_the_reference_imports_work() -> None:
    from jdobb_async_queue import (  # noqa: F401
        Broadcaster,
        Job,
        JobContext,
        JobPriority,
        JobQueue,
        JobStatus,
        JobUpdate,
        QueueBackend,
        Worker,
    )

    assert JobPriority.HIGH.weight == 10
    assert JobPriority.NORMAL.weight == 5
    assert JobPriority.LOW.weight == 1
    statuses = ["pending", "processing", "complete", "failed", "cancelled"]
    assert [s.value for s in JobStatus] == statuses


def test_library_code_uses_anyio_only() -> None:
    import pathlib

    root = pathlib.Path(jdobb_async_queue.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        for banned in ("import asyncio", "import trio", "from asyncio", "from trio"):
            assert banned not in text, f"{path.name} uses {banned!r}: library code is anyio-only"
