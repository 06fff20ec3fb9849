"""Command-line text to values: the queue's address, JSON objects, times.

Every function here raises :class:`typer.BadParameter` for text it cannot take, so the boundary
prints one ``Invalid value for ...`` line and exits with status 2 (a usage error).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import typer

from .._queue import JobQueue
from .boundary import CommandError

__all__ = ["URL_ENV", "NAMESPACE_ENV", "QueueAddress", "parse_json_object", "parse_time"]

#: Environment variables behind ``--url`` and ``--namespace``.
URL_ENV = "JDOBB_QUEUE_URL"
NAMESPACE_ENV = "JDOBB_QUEUE_NAMESPACE"

_URL_HINT = f"'--url' / {URL_ENV}"
_EXAMPLES = "sqlite:///jobs.db or redis://localhost:6379/0"


@dataclass(frozen=True)
class QueueAddress:
    """Where the queue commands find their queue: the global ``--url`` and ``--namespace``."""

    url: str | None
    namespace: str

    def open(self, *, create: bool = False) -> JobQueue:
        """Build the :class:`JobQueue` (no I/O yet: backends connect on first use).

        :param create: whether the command may create a SQLite file that does not exist yet
            (``enqueue`` may; commands that read or change existing jobs may not, so that a
            mistyped path is an error instead of a new, empty queue)
        :raises typer.BadParameter: when no URL was given, it is not a URL, or it is
            ``memory://`` (each command is its own process, so its memory would be empty)
        :raises CommandError: for a ``sqlite://`` file that does not exist, unless ``create``
        :raises ConfigurationError: from :class:`JobQueue` for a URL no backend takes
        """
        url = self.url
        if not url:
            raise typer.BadParameter(
                f"no queue URL: pass --url or set {URL_ENV}", param_hint=_URL_HINT
            )
        if "://" not in url:
            raise typer.BadParameter(f"{url!r} is not a URL: use {_EXAMPLES}", param_hint=_URL_HINT)
        if urlsplit(url).scheme == "memory":
            raise typer.BadParameter(
                f"memory:// lives and dies with one process, so every command would see an empty "
                f"queue: use {_EXAMPLES}",
                param_hint=_URL_HINT,
            )
        if not create:
            _require_sqlite_file(url)
        return JobQueue(backend=url, namespace=self.namespace)


def _require_sqlite_file(url: str) -> None:
    """Refuse a ``sqlite://`` URL whose file does not exist (other URLs pass unchecked).

    A malformed SQLite URL passes too: the backend rejects it with its own message.
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or len(parts.path) < 2:
        return
    path = unquote(parts.path[1:])
    if path == ":memory:" or os.path.exists(path):
        return
    raise CommandError(
        f"no queue at {os.path.abspath(path)}: the file does not exist (check --url; "
        f"'enqueue' and 'worker' create a new queue, other commands only open an existing one)"
    )


def parse_json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """Parse ``text`` as a JSON object (``None`` stays ``None``).

    :param option: the option's name, for the error message
    :raises typer.BadParameter: if ``text`` is not JSON or not an object
    """
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=f"'{option}'") from None
    if not isinstance(value, dict):
        raise typer.BadParameter(
            f"expected a JSON object such as '{{\"key\": 1}}', not {type(value).__name__}",
            param_hint=f"'{option}'",
        )
    return value


def parse_time(text: str | None, option: str) -> datetime | None:
    """Parse an ISO-8601 time (``2024-05-01``, ``2024-05-01T12:00:00+02:00``, ``...Z``).

    A time without an offset is local time, as everywhere in the library.

    :raises typer.BadParameter: if ``text`` is not an ISO-8601 date or time
    """
    if text is None:
        return None
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"  # fromisoformat learned "Z" only in Python 3.11
    try:
        return datetime.fromisoformat(candidate)
    except ValueError:
        raise typer.BadParameter(
            f"expected an ISO-8601 time such as 2024-05-01T12:00:00Z, not {text!r}",
            param_hint=f"'{option}'",
        ) from None
