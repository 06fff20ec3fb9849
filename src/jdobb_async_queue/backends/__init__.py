"""Storage backends behind one public contract, :class:`QueueBackend`.

Everything a backend receives or returns, and every helper a backend author needs, is
importable from here: the records (:class:`JobRecord`, :class:`Outcome`, :class:`Lease`,
:class:`ProgressUpdate`, :class:`UpdateRecord`, :class:`WorkerRecord`, :class:`Notice`), what
the one declaration of a job's fields says of them (:data:`FIELD_NAMES`, :data:`GIVEN_FIELDS`,
:data:`JSON_FIELDS`, :data:`UPDATE_FIELDS`, :func:`column_list`, :func:`update_of_values`; see
``jdobb_async_queue._records``), the state machine (:class:`Event`, :func:`sources`,
:func:`transition`), the decisions a store applies itself (:func:`lost_ends_job`,
:func:`lost_error`, :func:`dependency_error`), and the errors a backend raises. See
``docs/backends.md`` for a worked example and for running the shipped contract suite
(``jdobb_async_queue.testing.contract``) against your own backend.

A backend receives records the queue has checked: :class:`JobQueue` validates a job's payloads
(JSON that survives a round trip) once, on the way in, and no built-in backend checks them again.
A record built by hand and handed straight to a backend is not checked at all (SQLite, for one,
stores a NaN as ``null``).

``open_backend`` turns the ``backend=`` / ``url=`` arguments of :class:`JobQueue` into an instance.
The SQLite, Redis and PostgreSQL modules are imported only when asked for.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .._errors import BackendUnavailable as BackendUnavailable
from .._errors import ConfigurationError, MissingDependencyError
from .._errors import DuplicateJobError as DuplicateJobError
from .._errors import QueueClosedError as QueueClosedError
from .._errors import UnknownDependencyError as UnknownDependencyError
from .._models import QueueStats as QueueStats
from .._policy import dependency_error as dependency_error
from .._policy import lost_ends_job as lost_ends_job
from .._policy import lost_error as lost_error
from .._records import DEFAULT_MAX_LOST as DEFAULT_MAX_LOST
from .._records import FIELD_NAMES as FIELD_NAMES
from .._records import GIVEN_FIELDS as GIVEN_FIELDS
from .._records import JSON_FIELDS as JSON_FIELDS
from .._records import PRIORITY_RANK as PRIORITY_RANK
from .._records import UPDATE_FIELDS as UPDATE_FIELDS
from .._records import JobRecord as JobRecord
from .._records import Lease as Lease
from .._records import Outcome as Outcome
from .._records import ProgressUpdate as ProgressUpdate
from .._records import UpdateRecord as UpdateRecord
from .._records import WorkerRecord as WorkerRecord
from .._records import column_list as column_list
from .._records import gone_update as gone_update
from .._records import record_update as record_update
from .._records import update_of_values as update_of_values
from .._states import Event as Event
from .._states import sources as sources
from .._states import transition as transition
from .base import WORKER_TTL as WORKER_TTL
from .base import Notice as Notice
from .base import QueueBackend
from .memory import MemoryBackend

__all__ = [
    "BACKEND_NAMES",
    "BackendUnavailable",
    "DEFAULT_MAX_LOST",
    "DuplicateJobError",
    "Event",
    "FIELD_NAMES",
    "GIVEN_FIELDS",
    "JSON_FIELDS",
    "JobRecord",
    "Lease",
    "MemoryBackend",
    "Notice",
    "Outcome",
    "PRIORITY_RANK",
    "ProgressUpdate",
    "QueueBackend",
    "QueueClosedError",
    "QueueStats",
    "UPDATE_FIELDS",
    "UnknownDependencyError",
    "UpdateRecord",
    "WORKER_TTL",
    "WorkerRecord",
    "column_list",
    "dependency_error",
    "gone_update",
    "lost_ends_job",
    "lost_error",
    "open_backend",
    "record_update",
    "redact_url",
    "sources",
    "transition",
    "update_of_values",
]

#: The backend names ``JobQueue(backend=...)`` accepts, with the URL schemes each takes.
BACKEND_NAMES: dict[str, tuple[str, ...]] = {
    "memory": ("memory",),
    "sqlite": ("sqlite",),
    "redis": ("redis", "rediss", "unix"),
    "postgres": ("postgresql", "postgres"),
}


#: ``user:password@`` in a URL (with or without its scheme): the password goes.
_PASSWORD = re.compile(r"([^/@:\s'\"]*:)[^@\s/'\"]*@")


def redact_url(text: str) -> str:
    """``text`` (a URL, or a message quoting one) with every URL's password replaced by
    ``***``: what a backend may put in a message, a log line or a repr."""
    return _PASSWORD.sub(r"\1***@", text)


def open_backend(backend: QueueBackend | str, url: str | None, namespace: str) -> QueueBackend:
    """Return the backend that ``JobQueue(backend=..., url=..., namespace=...)`` asks for.

    ``backend`` is an instance (used as is), a name (``"memory"``, ``"sqlite"``, ``"redis"``,
    ``"postgres"``)
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
    if backend == "postgres":
        return _open_postgres(url or "postgresql://", namespace)
    return _open_redis(url or "redis://localhost:6379/0", namespace)


def _names() -> str:
    return ", ".join(repr(n) for n in BACKEND_NAMES) + " or a QueueBackend instance"


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme
    except ValueError as exc:  # an unbalanced [ in the host, ...
        raise ConfigurationError(f"malformed URL {redact_url(url)!r}: {exc}") from None


def _scheme_backend(url: str) -> str:
    scheme = _scheme(url)
    for name, schemes in BACKEND_NAMES.items():
        if scheme in schemes:
            return name
    raise ConfigurationError(
        f"cannot tell the backend from URL {redact_url(url)!r}: use sqlite:///path.db, "
        "redis://host:port, postgresql://host/dbname or memory://"
    )


def _check_url(backend: str, url: str) -> None:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"malformed URL {redact_url(str(url))!r} for the {backend!r} backend: {_forms(backend)}"
        )
    scheme = _scheme(url)
    if scheme not in BACKEND_NAMES[backend]:
        raise ConfigurationError(
            f"URL scheme {scheme!r} does not fit the {backend!r} backend: {_forms(backend)}"
        )


def _forms(backend: str) -> str:
    return {
        "memory": "the memory backend takes no URL (or memory://)",
        "sqlite": "use sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite:///:memory:",
        "redis": "use redis://[user:password@]host[:port][/db], rediss://... or unix:///path.sock",
        "postgres": "use postgresql://[user[:password]@][host][:port][/dbname] (or postgres://)",
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


def _open_postgres(url: str, namespace: str) -> QueueBackend:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise MissingDependencyError("postgres", "postgres", "psycopg") from None
    from .postgres import PostgresBackend

    return PostgresBackend(url, namespace=namespace)
