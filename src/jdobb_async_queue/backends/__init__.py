"""Storage backends behind one contract, :class:`~jdobb_async_queue.backends.base.QueueBackend`.

``open_backend`` turns the ``backend=`` / ``url=`` arguments of :class:`JobQueue` into an instance.
The SQLite and Redis modules are imported only when asked for.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .._errors import ConfigurationError, MissingDependencyError
from .base import QueueBackend
from .memory import MemoryBackend

__all__ = ["BACKEND_NAMES", "MemoryBackend", "QueueBackend", "open_backend"]

#: The backend names ``JobQueue(backend=...)`` accepts, with the URL schemes each takes.
BACKEND_NAMES: dict[str, tuple[str, ...]] = {
    "memory": ("memory",),
    "sqlite": ("sqlite",),
    "redis": ("redis", "rediss", "unix"),
}


def open_backend(backend: QueueBackend | str, url: str | None, namespace: str) -> QueueBackend:
    """Return the backend that ``JobQueue(backend=..., url=..., namespace=...)`` asks for.

    ``backend`` is an instance (used as is), a name (``"memory"``, ``"sqlite"``, ``"redis"``)
    or a URL whose scheme names the backend (``"sqlite:///jobs.db"``).

    :raises ConfigurationError: for an unknown name, or a URL the backend cannot take
    :raises MissingDependencyError: when the backend's extra is not installed
    """
    if isinstance(backend, QueueBackend):
        return backend
    if not isinstance(backend, str):
        raise ConfigurationError(
            f"backend must be a QueueBackend or one of {_names()}, not {type(backend).__name__}"
        )
    if "://" in backend and url is None:
        url, backend = backend, _scheme_backend(backend)
    if backend not in BACKEND_NAMES:
        raise ConfigurationError(f"unknown backend {backend!r}: use one of {_names()}")
    if url is not None:
        _check_url(backend, url)
    if backend == "memory":
        return MemoryBackend()
    if backend == "sqlite":
        return _open_sqlite(url)
    return _open_redis(url or "redis://localhost:6379/0", namespace)


def _names() -> str:
    return ", ".join(repr(n) for n in BACKEND_NAMES) + " or a QueueBackend instance"


def _scheme_backend(url: str) -> str:
    scheme = urlsplit(url).scheme
    for name, schemes in BACKEND_NAMES.items():
        if scheme in schemes:
            return name
    raise ConfigurationError(
        f"cannot tell the backend from URL {url!r}: use sqlite:///path.db, redis://host:port "
        "or memory://"
    )


def _check_url(backend: str, url: str) -> None:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"malformed URL {url!r} for the {backend!r} backend: {_forms(backend)}"
        )
    scheme = urlsplit(url).scheme
    if scheme not in BACKEND_NAMES[backend]:
        raise ConfigurationError(
            f"URL scheme {scheme!r} does not fit the {backend!r} backend: {_forms(backend)}"
        )


def _forms(backend: str) -> str:
    return {
        "memory": "the memory backend takes no URL (or memory://)",
        "sqlite": "use sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite:///:memory:",
        "redis": "use redis://[user:password@]host[:port][/db], rediss://... or unix:///path.sock",
    }[backend]


def _open_sqlite(url: str | None) -> QueueBackend:
    if url is None:
        raise ConfigurationError(f"the 'sqlite' backend needs a url: {_forms('sqlite')}")
    from .sqlite import SQLiteBackend

    return SQLiteBackend(url)


def _open_redis(url: str, namespace: str) -> QueueBackend:
    try:
        import hiredis  # noqa: F401
    except ImportError:
        raise MissingDependencyError("redis", "redis", "hiredis") from None
    from .redis import RedisBackend

    return RedisBackend(url, namespace=namespace)
