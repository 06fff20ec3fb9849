"""One exception hierarchy under :class:`JobQueueError`.

Categories: configuration (bad backend name, URL, missing extra), serialization (values that are
not JSON), conflict (duplicate id, unknown dependency), lookup (unknown job), backend unavailable
(a server or file that cannot be reached). Messages are built here; the data stays in attributes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "BackendUnavailable",
    "ConfigurationError",
    "DuplicateJobError",
    "InvalidJobError",
    "JobCancelled",
    "JobFailed",
    "JobNotFoundError",
    "JobQueueError",
    "MissingDependencyError",
    "PayloadTooLargeError",
    "QueueClosedError",
    "SchemaVersionError",
    "SerializationError",
    "UnknownDependencyError",
    "exception_leaves",
]


class JobQueueError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigurationError(JobQueueError, ValueError):
    """A queue, worker or backend was configured with something it cannot use."""


class SchemaVersionError(ConfigurationError):
    """The database file was written by a newer version of this library.

    :param path: the file
    :param found: its schema version
    :param supported: the newest version this code understands
    """

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"the SQLite database {path} has schema version {found}, newer than {supported}, "
            "the newest this version of jdobb-async-queue knows: upgrade the library"
        )


class MissingDependencyError(ConfigurationError, ImportError):
    """A backend (or a feature) needs an optional dependency that is not installed.

    :param backend: the backend that needs it (or the feature, with ``feature=True``)
    :param extra: the ``pip install jdobb-async-queue[extra]`` that installs it
    :param module: the module that could not be imported
    """

    def __init__(self, backend: str, extra: str, module: str, *, feature: bool = False) -> None:
        self.backend = backend
        self.extra = extra
        self.module = module
        what = backend if feature else f"the {backend!r} backend"
        super().__init__(
            f"{what} needs the {module!r} module: pip install 'jdobb-async-queue[{extra}]'"
        )


class InvalidJobError(JobQueueError, ValueError):
    """An argument describing a job is invalid (a negative delay, progress outside 0..1, ...)."""


class SerializationError(InvalidJobError, TypeError):
    """A payload, result or metadata value is not JSON-compatible.

    :param what: which argument held the value (``"data"``, ``"results"``, ...)
    """

    def __init__(self, what: str, detail: str) -> None:
        self.what = what
        self.detail = detail
        super().__init__(
            f"{what} must be JSON-compatible (dicts with str keys, lists, str, int, finite float, "
            f"bool, None): {detail}"
        )


class DuplicateJobError(JobQueueError):
    """A job with this id already exists; nothing was stored.

    :param job_id: the id that is taken
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"a job with id {job_id!r} already exists")


class UnknownDependencyError(JobQueueError, LookupError):
    """A job names a dependency that does not exist; nothing was stored.

    :param job_ids: the unknown ids
    """

    def __init__(self, job_ids: Iterable[str]) -> None:
        self.job_ids = sorted(job_ids)
        super().__init__(f"unknown dependency job id(s): {', '.join(self.job_ids)}")


class JobNotFoundError(JobQueueError, LookupError):
    """No job with this id exists (never did, was purged, or its ttl expired).

    :param job_id: the id that was looked up
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}")


class BackendUnavailable(JobQueueError, ConnectionError):
    """The backend's server or file cannot be used right now (connection refused, locked, ...)."""


class QueueClosedError(JobQueueError):
    """The queue (or its backend) was closed: no call goes through it any more.

    Raised at once by every call after ``close()``; never retried as an outage, so a worker
    whose queue is closed stops instead of waiting for the store to come back.

    :param what: what was closed (names the backend)
    """

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is closed")
        self.what = what


class PayloadTooLargeError(InvalidJobError):
    """A job's data, metadata or results encode to more bytes than the queue accepts
    (``JobQueue(max_payload_bytes=...)``); nothing is stored.

    :param what: which part (``"data"``, ``"metadata"``, ``"results"``)
    :param size: its size in bytes, as JSON
    :param limit: the queue's limit
    """

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes as JSON, over the limit of {limit} bytes")
        self.what = what
        self.size = size
        self.limit = limit


class JobFailed(JobQueueError):
    """Raised by ``Task.wait`` when the job ended FAILED.

    :param job_id: the job
    :param error: the job's error text
    """

    def __init__(self, job_id: str, error: str | None) -> None:
        self.job_id = job_id
        self.error = error
        super().__init__(f"job {job_id} failed: {error}")


class JobCancelled(JobQueueError):
    """Raised by ``Task.wait`` when the job ended CANCELLED.

    :param job_id: the job
    :param error: the cancellation reason, if any
    """

    def __init__(self, job_id: str, error: str | None) -> None:
        self.job_id = job_id
        self.error = error
        super().__init__(f"job {job_id} was cancelled: {error}")


def exception_leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and its nested groups, depth first."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(exception_leaves(exc))
        else:
            found.append(exc)
    return found
