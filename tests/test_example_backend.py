"""The worked example of ``docs/backends.md``, ``examples/dict_backend.py``, through the whole
shipped contract suite, exactly as a user's own backend would run it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from jdobb_async_queue.backends import QueueBackend
from jdobb_async_queue.testing.contract import *  # noqa: F403


def _load_example() -> type[QueueBackend]:
    # examples/ is a directory of scripts, not a package: load the file by its path.
    path = Path(__file__).resolve().parents[1] / "examples" / "dict_backend.py"
    spec = importlib.util.spec_from_file_location("dict_backend", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    backend: type[QueueBackend] = module.DictBackend
    return backend


DictBackend = _load_example()


@pytest.fixture
def queue_backend() -> QueueBackend:
    """A fresh, empty store for each test."""
    return DictBackend()
