"""Configuration errors, independent of any storage backend (no backend fixture here)."""

from __future__ import annotations

from typing import Any

import pytest

from jdobb_async_queue import ConfigurationError, InvalidJobError, JobQueue, Worker
from jdobb_async_queue.backends import MemoryBackend


@pytest.mark.parametrize("name", ["mysql", "Memory", "", "mem"])
def test_unknown_backend_name_names_the_accepted_ones(name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        JobQueue(backend=name)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    for accepted in ("memory", "sqlite", "redis"):
        assert accepted in message


@pytest.mark.parametrize("backend", [42, None, object()], ids=repr)
def test_backend_of_the_wrong_type(backend: Any) -> None:
    with pytest.raises(ConfigurationError, match="memory"):
        JobQueue(backend=backend)


@pytest.mark.parametrize(
    ("backend", "url", "hint"),
    [
        ("sqlite", "jobs.db", "sqlite:///"),
        ("sqlite", "/tmp/jobs.db", "sqlite:///"),
        ("redis", "localhost:6379", "redis://"),
        ("redis", "", "redis://"),
    ],
)
def test_malformed_url_shows_the_accepted_forms(backend: str, url: str, hint: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        JobQueue(backend=backend, url=url)
    assert hint in str(info.value)
    assert repr(url) in str(info.value)


@pytest.mark.parametrize(
    ("backend", "url"),
    [
        ("sqlite", "redis://localhost:6379"),
        ("redis", "sqlite:///jobs.db"),
        ("memory", "redis://localhost:6379"),
    ],
)
def test_url_scheme_must_fit_the_backend(backend: str, url: str) -> None:
    with pytest.raises(ConfigurationError, match=backend):
        JobQueue(backend=backend, url=url)


@pytest.mark.parametrize("url", ["mysql://db/jobs", "http://example.com"])
def test_url_with_an_unknown_scheme(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        JobQueue(backend=url)
    message = str(info.value)
    assert "sqlite:///" in message
    assert "redis://" in message


def test_sqlite_needs_a_url() -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        JobQueue(backend="sqlite")


def test_memory_backend_by_name_url_or_instance() -> None:
    assert JobQueue().backend.name == "memory"
    assert JobQueue(backend="memory").backend.name == "memory"
    assert JobQueue(backend="memory://").backend.name == "memory"
    instance = MemoryBackend()
    assert JobQueue(backend=instance).backend is instance


@pytest.mark.parametrize("ttl", [-1, 1.5, "60"])
def test_bad_default_ttl(ttl: Any) -> None:
    with pytest.raises(InvalidJobError):
        JobQueue(default_ttl=ttl)


@pytest.mark.parametrize(
    "options",
    [
        {"poll_interval": 0},
        {"poll_interval": -1},
        {"max_concurrent": 0},
        {"max_concurrent": 1.5},
        {"lease": 0},
        {"drain_timeout": -1},
    ],
    ids=repr,
)
def test_bad_worker_settings(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Worker(JobQueue(), **options)


def test_handler_must_be_async() -> None:
    worker = Worker(JobQueue())

    def sync_handler(ctx: Any) -> None:
        return None

    with pytest.raises(ConfigurationError):
        worker.register_handler("t", sync_handler)  # type: ignore[arg-type]


def test_job_type_gets_one_handler() -> None:
    worker = Worker(JobQueue())

    async def handle(ctx: Any) -> None:
        return None

    worker.register_handler("t", handle)
    with pytest.raises(ConfigurationError):
        worker.register_handler("t", handle)
