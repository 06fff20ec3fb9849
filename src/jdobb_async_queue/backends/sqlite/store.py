"""The SQLite store: settings from the URL, one connection, the schema, batched transactions.

Everything here is synchronous and runs in the backend's database thread (:mod:`.thread`), one
batch at a time. A batch is one transaction: ``BEGIN IMMEDIATE`` when any request in it writes
(taking the write lock up front, so a transaction never has to upgrade and fail with
``SQLITE_BUSY`` half-way), a plain ``BEGIN`` for reads only. When several requests
write, each runs inside its own SAVEPOINT: one that raises is rolled back alone and gets its own
error. A lone writing request needs none: if it raises, the transaction is rolled back.

sqlite3 exceptions are translated here, at the boundary: callers see
:class:`~jdobb_async_queue.BackendUnavailable` or :class:`~jdobb_async_queue.ConfigurationError`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..._errors import BackendUnavailable, ConfigurationError, JobQueueError, SchemaVersionError
from ..._records import UpdateRecord
from . import queries as q
from . import reads
from .doorbell import Ringer, wake_directory
from .tx import Batch, Tx

__all__ = [
    "SCHEMA_VERSION",
    "BatchReport",
    "Op",
    "SchemaVersionError",
    "Served",
    "Settings",
    "Store",
]

#: The schema this code reads and writes (kept in ``PRAGMA user_version``).
SCHEMA_VERSION = 3
#: Script that brings a file from version ``n - 1`` to ``n``.
_MIGRATIONS = {1: "schema_v1.sql", 2: "schema_v2.sql", 3: "schema_v3.sql"}
_SYNCHRONOUS = ("normal", "full", "extra")
#: RETURNING came with SQLite 3.35 (2021).
MIN_SQLITE = (3, 35, 0)
_FORMS = "use sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite:///:memory:"

#: One request's work inside a transaction.
Op = Callable[[Tx], Any]


@dataclass(frozen=True)
class Settings:
    """What a ``sqlite://`` URL asks for.

    :ivar path: an absolute file path, or ``":memory:"``
    :ivar busy_timeout: milliseconds to wait for another connection's write lock
    :ivar synchronous: ``PRAGMA synchronous`` (``normal``, ``full`` or ``extra``)
    :ivar poll_interval: seconds between looks for other processes' commits, while someone
        listens or subscribes and no doorbell rings (see :mod:`.doorbell`)
    """

    path: str
    busy_timeout: int = 5000
    synchronous: str = "normal"
    poll_interval: float = 0.1

    @property
    def in_memory(self) -> bool:
        """Whether the database is a private in-memory one."""
        return self.path == ":memory:"

    @classmethod
    def from_url(cls, url: str) -> Settings:
        """Parse ``sqlite:///relative.db``, ``sqlite:////abs.db``, ``sqlite:///:memory:``, with
        query options ``busy_timeout`` (ms), ``synchronous`` and ``poll_interval`` (s).

        A relative path is resolved against the current directory now.

        :raises ConfigurationError: for anything else
        """
        parts = urlsplit(url)
        if parts.scheme != "sqlite" or parts.netloc or len(parts.path) < 2:
            raise ConfigurationError(f"malformed SQLite URL {url!r}: {_FORMS}")
        path = unquote(parts.path[1:])
        if path != ":memory:":
            path = os.path.abspath(path)
        return cls(path, **_options(url, parts.query))


def _options(url: str, query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        try:
            options[name] = _OPTIONS[name](value)
        except KeyError:
            known = ", ".join(_OPTIONS)
            raise ConfigurationError(
                f"unknown option {name!r} in SQLite URL {url!r}: use {known}"
            ) from None
        except ValueError as exc:
            raise ConfigurationError(f"bad {name} in SQLite URL {url!r}: {exc}") from None
    return options


def _milliseconds(value: str) -> int:
    ms = int(value)
    if ms < 0:
        raise ValueError("must be a whole number of milliseconds >= 0")
    return ms


def _synchronous(value: str) -> str:
    if value.lower() not in _SYNCHRONOUS:
        raise ValueError(f"must be one of {', '.join(_SYNCHRONOUS)}")
    return value.lower()


def _seconds(value: str) -> float:
    seconds = float(value)
    if not 0 < seconds < 3600:
        raise ValueError("must be a number of seconds > 0")
    return seconds


_OPTIONS: dict[str, Callable[[str], Any]] = {
    "busy_timeout": _milliseconds,
    "synchronous": _synchronous,
    "poll_interval": _seconds,
}


@dataclass
class Served:
    """What one request got: its result or its error, and its effects (``tx``)."""

    tx: Tx | None
    result: Any = None
    error: Exception | None = None


@dataclass
class BatchReport:
    """The outcome of one committed batch."""

    served: list[Served]
    #: Another connection committed since this one last looked.
    foreign: bool = False
    #: Rows (``queries.WATCH``) of the watched jobs, read when ``foreign``.
    watched_rows: list[tuple[Any, ...]] = field(default_factory=list)
    #: Custom updates other processes sent to the watched jobs, read when ``foreign``.
    messages: list[UpdateRecord] = field(default_factory=list)
    #: The batch's one writing request failed: it was rolled back, not committed.
    undo: bool = False


class Store:
    """One connection to one database, opened on first use, serving batches."""

    def __init__(self, settings: Settings, origin: str) -> None:
        self.settings = settings
        self.origin = origin  # who we are in the messages table
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._data_version: int | None = None
        self._last_message = 0
        self._touched: int | None = None
        # The backend runs one batch at a time already; the lock guards close() against it.
        self._lock = threading.Lock()
        #: Rings the other processes' doorbells after each commit that changed something.
        self.ringer = None if settings.in_memory else Ringer(wake_directory(settings.path))

    def run(
        self,
        requests: Sequence[tuple[Op, bool]],
        watched: frozenset[str],
        watch_ids: Sequence[str],
    ) -> BatchReport:
        """Run ``(op, writes)`` requests in one transaction and commit.

        :param watched: job ids whose updates the ops should build
        :param watch_ids: job ids to read back if another connection committed meanwhile
        :raises BackendUnavailable: if the batch as a whole failed (nothing was committed)
        :raises ConfigurationError: if the file cannot be used as a queue
        """
        with self._lock:
            conn = self._connection()
            writes = any(w for _, w in requests)
            try:
                conn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            # Restored if the batch fails, so what it saw of other processes is seen again.
            seen = (self._data_version, self._last_message, self._touched)
            changes = conn.total_changes
            try:
                report = self._serve(conn, requests, watched, watch_ids)
                if report.undo:
                    _rollback(conn)
                else:
                    conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                self._data_version, self._last_message, self._touched = seen
                if isinstance(exc, sqlite3.Error):
                    raise self._translate(exc) from exc
                raise
            if self.ringer is not None and conn.total_changes != changes and not report.undo:
                self.ringer.ring()  # other processes' waiting backends: look now
            return report

    def close(self) -> None:
        """Close the connection; later batches raise :class:`BackendUnavailable`."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self.ringer is not None:
                self.ringer.close()

    # -- batches ---------------------------------------------------------------------------------

    def _serve(
        self,
        conn: sqlite3.Connection,
        requests: Sequence[tuple[Op, bool]],
        watched: frozenset[str],
        watch_ids: Sequence[str],
    ) -> BatchReport:
        report = BatchReport(served=[], foreign=self._foreign_commit(conn))
        if report.foreign and watch_ids:
            report.watched_rows = reads.watch(conn, watch_ids)
        if report.foreign:
            self._last_message, report.messages = reads.messages_since(
                conn, self._last_message, self.origin, watched
            )
        # Our last `touched` still holds unless another connection has written since.
        batch = Batch(conn, watched, touched=None if report.foreign else self._touched)
        # A lone writing request needs no SAVEPOINT: if it fails, the whole transaction is
        # rolled back instead of committed (two statements fewer on the single-call path).
        alone = sum(1 for _, writes in requests if writes) == 1
        report.served = [self._apply(batch, op, writes, alone) for op, writes in requests]
        report.undo = batch.undo
        if batch.counts and not batch.undo:
            moved = [(n, status, lane) for (status, lane), n in batch.counts.items() if n]
            conn.executemany(q.APPLY_COUNTS, moved)
        self._touched = batch.touched  # if the batch rolls back, this only leaves a gap
        return report

    def _apply(self, batch: Batch, op: Op, writes: bool, alone: bool) -> Served:
        tx = Tx(batch)
        if writes and not alone:
            batch.conn.execute("SAVEPOINT request")
        try:
            result = op(tx)
        except Exception as exc:
            if writes and alone:
                batch.undo = True
            elif writes:
                _undo(batch.conn, exc)
            return Served(None, error=self._error_of(exc))
        if writes:
            if not alone:
                batch.conn.execute("RELEASE request")
            batch.counts.update(tx.counts)
        return Served(tx, result)

    def _error_of(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.Error):
            return self._translate(exc)
        return exc  # a JobQueueError the op raised on purpose (or a bug, left as it is)

    def _foreign_commit(self, conn: sqlite3.Connection) -> bool:
        """Whether another connection committed since we last looked (``PRAGMA data_version``
        does not change for this connection's own commits)."""
        version = conn.execute(q.DATA_VERSION).fetchone()[0]
        changed = self._data_version is not None and version != self._data_version
        self._data_version = version
        return changed

    # -- opening ---------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise BackendUnavailable(f"the SQLite backend on {self.settings.path} is closed")
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        s = self.settings
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise ConfigurationError(
                f"the SQLite backend needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; "
                f"this Python's sqlite3 module uses {sqlite3.sqlite_version}"
            )
        try:
            conn = sqlite3.connect(
                s.path,
                timeout=s.busy_timeout / 1000,
                isolation_level=None,  # we issue BEGIN and COMMIT ourselves
                check_same_thread=False,  # opened and closed by the database thread, used by it
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        try:
            self._configure(conn)
            _migrate(conn, s.path)
            self._data_version = conn.execute(q.DATA_VERSION).fetchone()[0]
            self._last_message = conn.execute(q.LAST_MESSAGE).fetchone()[0]
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {self.settings.busy_timeout}")
        if not self.settings.in_memory:
            # WAL: readers never block the writer, and a commit is one append to the log.
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute(f"PRAGMA synchronous = {self.settings.synchronous.upper()}")
        # Statement journals (for statements that may fail half-way, inside savepoints) in
        # memory, not in temporary files: on disk they made some writes three times as slow.
        conn.execute("PRAGMA temp_store = MEMORY")

    def _translate(self, exc: sqlite3.Error) -> JobQueueError:
        return translate(exc, self.settings.path, self.settings.busy_timeout)


def translate(exc: sqlite3.Error, path: str, busy_timeout: int) -> JobQueueError:
    """The library's error for a sqlite3 one, chained to it (``__cause__``)."""
    error = _translated(exc, path, busy_timeout)
    error.__cause__ = exc
    return error


def _translated(exc: sqlite3.Error, path: str, busy_timeout: int) -> JobQueueError:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(exc)
    if primary in (5, 6) or "locked" in text:  # SQLITE_BUSY, SQLITE_LOCKED
        return BackendUnavailable(
            f"the SQLite database {path} is locked by another connection "
            f"(still busy after {busy_timeout} ms): {text}"
        )
    if primary == 14 or "unable to open" in text:  # SQLITE_CANTOPEN
        return BackendUnavailable(
            f"cannot open the SQLite database {path} (does its directory exist, and may this "
            f"process write there?): {text}"
        )
    if primary == 26 or "not a database" in text:  # SQLITE_NOTADB
        return ConfigurationError(f"{path} is not a SQLite database: {text}")
    return BackendUnavailable(f"SQLite error on {path}: {text}")


def _undo(conn: sqlite3.Connection, error: Exception) -> None:
    """Roll back one request, leaving the rest of its batch as it was."""
    try:
        conn.execute("ROLLBACK TO request")
        conn.execute("RELEASE request")
    except sqlite3.Error:
        # SQLite already rolled the whole transaction back (disk full, I/O error...): the
        # batch fails, with the request's own error rather than "no such savepoint".
        raise error from None


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the original error is the one worth reporting


# -- schema --------------------------------------------------------------------------------------


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the file to :data:`SCHEMA_VERSION` in one transaction, or refuse a newer one."""
    if _version(conn, path) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn, path)  # again, under the write lock: another process may
        if version == 0 and _has_tables(conn):  # have migrated it meanwhile
            raise ConfigurationError(
                f"{path} holds tables but no jdobb-async-queue schema: use another file"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _script(_MIGRATIONS[target]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _version(conn: sqlite3.Connection, path: str) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(path, version, SCHEMA_VERSION)
    return version


def _has_tables(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' LIMIT 1"
    )
    return found.fetchone() is not None


@cache
def _script(name: str) -> tuple[str, ...]:
    """The statements of a ``.sql`` file beside this module, read once.

    Split here rather than run with ``executescript``, which would commit the open transaction
    first and so make a migration non-atomic.
    """
    text = resources.files(__name__.rpartition(".")[0]).joinpath(name).read_text(encoding="utf-8")
    statements: list[str] = []
    pending = ""
    for line in text.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return tuple(statements)
